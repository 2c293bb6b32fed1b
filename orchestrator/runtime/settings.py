"""Where the engine finds its store, its broker and its workflows.

Precedence, lowest to highest: defaults → the YAML file (``--config``) →
``GREENLANG_*`` environment variables → command-line flags. The YAML file holds the
seed's messaging keys (``broker_type``, ``redis:`` …) at the top level, plus:

```yaml
store: sqlite:///sagaflow.sqlite     # or postgresql://user@host:5432/db
workflows: workflows                 # the directory of workflows/*.py
```

Environment: ``GREENLANG_STORE`` and ``GREENLANG_WORKFLOWS`` for those two, and the
seed's ``GREENLANG_BROKER_TYPE``, ``GREENLANG_REDIS_HOST`` … for messaging.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from brokers import ConfigError as BrokerConfigError
from brokers import MessagingConfig
from orchestrator.errors import ConfigError

DEFAULT_STORE = "sqlite:///sagaflow.sqlite"
DEFAULT_WORKFLOWS = "workflows"


@dataclass(frozen=True, slots=True)
class Settings:
    store: str
    """The event store's URL."""
    workflows: Path
    """The directory of ``*.py`` workflow definitions."""
    messaging: MessagingConfig
    """The broker to use (the in-memory broker by default)."""


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
    )
