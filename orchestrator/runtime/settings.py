"""Where the engine finds its store, its broker and its workflows.

Precedence, lowest to highest: defaults → the YAML file (``--config``) →
``GREENLANG_*`` environment variables → command-line flags. The YAML file holds the
seed's messaging keys (``broker_type``, ``redis:`` …) at the top level, plus:

```yaml
store: sqlite:///sagaflow.sqlite     # or postgresql://user@host:5432/db
workflows: workflows                 # the directory of workflows/*.py
engine:                              # optional; every key has a default
  sweep_interval: 5                  # seconds between sweeps of the owned sagas
  reissue_after: 60                  # schedule-to-close backstop, seconds (null: off)
audit:                               # optional: signed checkpoints (docs/CHAIN.md)
  signing_key_file: /etc/sagaflow/checkpoint.key   # ed25519 PEM (orchestrator keygen)
  checkpoint_every: 1000             # records between checkpoints
  checkpoint_interval: 60            # seconds a record may wait unsigned
  public_key_files: [checkpoint.pub] # what `orchestrator verify` checks signatures with
metrics:                             # optional: where `orchestrator run` serves /metrics
  host: 127.0.0.1                    # the address it binds (0.0.0.0: every interface)
  port: 9464                         # 0: any free port (printed at start)
metrics_enabled: true                # the seed's key: false serves and times nothing
ui:                                  # optional: the dashboard (orchestrator run / ui)
  enabled: true                      # false: `orchestrator run` serves no dashboard
  host: 127.0.0.1                    # the address it binds (0.0.0.0: every interface)
  port: 8484                         # 0: any free port (printed at start)
  token: null                        # what actions ask for; null: one printed at start
tracing:                             # optional: OpenTelemetry spans (the [otel] extra)
  enabled: false                     # true: a span per saga, step attempt, compensation
  exporter: otlp                     # otlp (OTLP/HTTP) or console (JSON lines, stderr)
  endpoint: null                     # OTLP traces URL; null: OTEL_EXPORTER_OTLP_* or
                                     #   http://localhost:4318/v1/traces
  service_name: sagaflow             # the service.name resource attribute
```

Environment: ``GREENLANG_STORE`` and ``GREENLANG_WORKFLOWS`` for those two,
``GREENLANG_ENGINE_<KEY>`` (``GREENLANG_ENGINE_REISSUE_AFTER=30``) for the engine's,
``GREENLANG_AUDIT_<KEY>`` for the audit section's, ``GREENLANG_METRICS_HOST`` and
``GREENLANG_METRICS_PORT`` for the metrics section's, ``GREENLANG_TRACING_<KEY>`` and
``GREENLANG_UI_<KEY>`` for the tracing and ui sections', ``GREENLANG_AUDIT_SIGNING_KEY`` for the
signing key's PEM text itself (instead of a file: for secret stores that inject it), and
the seed's ``GREENLANG_BROKER_TYPE``, ``GREENLANG_REDIS_HOST`` … for messaging.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from brokers import ConfigError as BrokerConfigError
from brokers import MessagingConfig
from eventstore import CheckpointSigner, PublicKeys, SigningKeyError
from orchestrator.errors import ConfigError

DEFAULT_STORE = "sqlite:///sagaflow.sqlite"
DEFAULT_WORKFLOWS = "workflows"


class EngineSettings(BaseModel):
    """The engine's tunables a deployment may set (``engine:``); see ``EngineOptions``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sweep_interval: float = Field(5.0, gt=0)
    reissue_after: float | None = Field(60.0, gt=0)
    republish_delay: float = Field(1.0, gt=0)
    max_in_flight: int = Field(512, ge=1)
    cache_size: int = Field(10_000, ge=1)
    intake_poll_interval: float = Field(0.2, gt=0)

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``EngineOptions``."""
        return self.model_dump()


class AuditSettings(BaseModel):
    """Signed checkpoints (``audit:``): the engine's signing key, and verify's public keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    signing_key_file: Path | None = None
    """The ed25519 private key (PEM) ``orchestrator run`` signs checkpoints with."""
    checkpoint_every: int = Field(1000, ge=1)
    checkpoint_interval: float = Field(60.0, gt=0)
    public_key_files: tuple[Path, ...] = ()
    """Public keys (PEM) ``orchestrator verify`` checks checkpoint signatures against."""

    def signer(self) -> CheckpointSigner | None:
        """The signing key: ``GREENLANG_AUDIT_SIGNING_KEY`` (PEM text), else the file;
        None when neither is given."""
        try:
            pem = os.environ.get(_SIGNING_KEY_ENV)
            if pem:
                return CheckpointSigner.from_pem(pem.encode(), _SIGNING_KEY_ENV)
            if self.signing_key_file is not None:
                return CheckpointSigner.from_file(self.signing_key_file)
        except SigningKeyError as exc:
            raise ConfigError(str(exc)) from None
        return None

    def store_options(self) -> dict[str, Any]:
        """``EventStore.open`` keywords for a store that signs (empty without a key)."""
        signer = self.signer()
        if signer is None:
            return {}
        return {
            "signer": signer,
            "checkpoint_every": self.checkpoint_every,
            "checkpoint_interval": self.checkpoint_interval,
        }

    def public_keys(self, extra: tuple[str, ...] = ()) -> PublicKeys | None:
        """The configured public keys and ``extra`` ones; None when there are none."""
        paths: list[str | Path] = [*self.public_key_files, *extra]
        if not paths:
            return None
        try:
            return PublicKeys.from_files(paths)
        except SigningKeyError as exc:
            raise ConfigError(str(exc)) from None


_SIGNING_KEY_ENV = "GREENLANG_AUDIT_SIGNING_KEY"


class MetricsSettings(BaseModel):
    """Where ``orchestrator run`` serves Prometheus metrics (``metrics:``), when the
    seed's ``metrics_enabled`` key is true (the default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    """The address ``/metrics`` binds to: loopback unless opened on purpose."""
    port: int = Field(9464, ge=0, le=65535)
    """Its port; 0 takes any free one (the start line says which)."""
    probe_interval: float = Field(5.0, gt=0)
    """Seconds a scrape reuses the consumer lag and dead-letter depth read before."""


class UiSettings(BaseModel):
    """Where the dashboard is served (``ui:``): by ``orchestrator run`` unless disabled,
    and by ``orchestrator ui``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    """Whether ``orchestrator run`` serves it (``orchestrator ui`` always does)."""
    host: str = "127.0.0.1"
    """The address it binds: loopback unless opened on purpose."""
    port: int = Field(8484, ge=0, le=65535)
    """Its port; 0 takes any free one (the start line says which)."""
    live_interval: float = Field(1.0, gt=0)
    """Seconds between a page's refreshes."""
    token: str | None = Field(None, min_length=16)
    """What every action that changes state asks for (start, resume, reprocess,
    discard); ``None``: ``orchestrator run`` makes one at start and prints it."""


class TracingSettings(BaseModel):
    """Where ``orchestrator run`` sends OpenTelemetry spans (``tracing:``); off unless
    ``enabled``, and then it needs the ``[otel]`` extra."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    """Open a span per saga, step attempt and compensation, and send the
    ``traceparent`` with every command and reply."""
    exporter: Literal["otlp", "console"] = "otlp"
    """``otlp``: OTLP over HTTP, batched; ``console``: one JSON line per span on
    stderr, as each ends."""
    endpoint: str | None = None
    """The OTLP traces URL; ``None``: the ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` /
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` variables, else ``http://localhost:4318/v1/traces``."""
    service_name: str = Field("sagaflow", min_length=1)
    """The ``service.name`` of the spans' resource."""


@dataclass(frozen=True, slots=True)
class Settings:
    store: str
    """The event store's URL."""
    workflows: Path
    """The directory of ``*.py`` workflow definitions."""
    messaging: MessagingConfig
    """The broker to use (the in-memory broker by default)."""
    engine: EngineSettings = field(default_factory=EngineSettings)
    """The engine's tunables."""
    audit: AuditSettings = field(default_factory=AuditSettings)
    """Signed checkpoints."""
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    """Where ``/metrics`` is served."""
    tracing: TracingSettings = field(default_factory=TracingSettings)
    """Where spans go, if anywhere."""
    ui: UiSettings = field(default_factory=UiSettings)
    """Where the dashboard is served."""


def load_settings(
    config_file: str | Path | None = None,
    *,
    store: str | None = None,
    workflows: str | Path | None = None,
) -> Settings:
    data: dict[str, Any] = {}
    if config_file is not None:
        path = Path(config_file)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config {path} must be a mapping of keys")
        data = dict(loaded or {})
    file_store = data.pop("store", None)
    file_workflows = data.pop("workflows", None)
    engine = _section("engine", EngineSettings, data.pop("engine", None), config_file)
    audit = _section("audit", AuditSettings, data.pop("audit", None), config_file)
    metrics = _section("metrics", MetricsSettings, data.pop("metrics", None), config_file)
    tracing = _section("tracing", TracingSettings, data.pop("tracing", None), config_file)
    ui = _section("ui", UiSettings, data.pop("ui", None), config_file)
    for key, value in (("store", file_store), ("workflows", file_workflows)):
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"config key {key!r} must be a string, got {value!r}")
    try:
        messaging = MessagingConfig.load(data, source=f"{config_file or 'defaults'} / GREENLANG_*")
    except BrokerConfigError as exc:
        raise ConfigError(str(exc)) from exc
    return Settings(
        store=store or os.environ.get("GREENLANG_STORE") or file_store or DEFAULT_STORE,
        workflows=Path(
            workflows
            or os.environ.get("GREENLANG_WORKFLOWS")
            or file_workflows
            or DEFAULT_WORKFLOWS
        ),
        messaging=messaging,
        engine=engine,
        audit=audit,
        metrics=metrics,
        tracing=tracing,
        ui=ui,
    )


M = TypeVar("M", bound=BaseModel)


def _section(name: str, model: type[M], section: Any, config_file: str | Path | None) -> M:
    """The ``name:`` section of the file, overridden by ``GREENLANG_<NAME>_<KEY>``."""
    values: dict[str, Any] = {}
    if section is not None:
        if not isinstance(section, dict):
            raise ConfigError(f"config key {name!r} must be a mapping, got {section!r}")
        values.update(section)
    prefix = f"GREENLANG_{name.upper()}_"
    for key, info in model.model_fields.items():
        env = os.environ.get(prefix + key.upper())
        if env is None:
            continue
        if env.lower() in ("null", "none", ""):
            values[key] = None
        elif info.annotation is not None and "tuple" in str(info.annotation):
            values[key] = tuple(part for part in env.split(os.pathsep) if part)
        else:
            values[key] = env
    try:
        return model(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{name}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{config_file or prefix + '*'}: {problems}") from None
