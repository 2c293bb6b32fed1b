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
```

Environment: ``GREENLANG_STORE`` and ``GREENLANG_WORKFLOWS`` for those two,
``GREENLANG_ENGINE_<KEY>`` (``GREENLANG_ENGINE_REISSUE_AFTER=30``) for the engine's, and
the seed's ``GREENLANG_BROKER_TYPE``, ``GREENLANG_REDIS_HOST`` … for messaging.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from brokers import ConfigError as BrokerConfigError
from brokers import MessagingConfig
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
    engine = _engine_settings(data.pop("engine", None), config_file)
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
    )


def _engine_settings(section: Any, config_file: str | Path | None) -> EngineSettings:
    values: dict[str, Any] = {}
    if section is not None:
        if not isinstance(section, dict):
            raise ConfigError(f"config key 'engine' must be a mapping, got {section!r}")
        values.update(section)
    for name in EngineSettings.model_fields:
        env = os.environ.get(f"GREENLANG_ENGINE_{name.upper()}")
        if env is not None:
            values[name] = None if env.lower() in ("null", "none", "") else env
    try:
        return EngineSettings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"engine.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{config_file or 'GREENLANG_ENGINE_*'}: {problems}") from None
