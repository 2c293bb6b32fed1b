"""MessagingConfig: the seed's YAML and GREENLANG_* variables, defaults → YAML → env."""

from __future__ import annotations

from pathlib import Path

import pytest

from brokers import ConfigError, InMemoryBroker, MessagingConfig, RedisStreamsBroker

SEED_YAML = """\
# config/messaging.yaml
broker_type: redis

redis:
  host: localhost
  port: 6379
  max_connections: 50
  max_stream_length: 100000
  message_ttl_days: 7
  dlq_ttl_days: 30
  max_retries: 3

metrics_enabled: true
circuit_breaker_enabled: true
log_level: INFO
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("GREENLANG_"):
            monkeypatch.delenv(key)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "messaging.yaml"
    path.write_text(text)
    return path


def test_seed_yaml_loads_and_feeds_the_redis_broker(tmp_path: Path) -> None:
    config = MessagingConfig.from_yaml(write(tmp_path, SEED_YAML))
    assert config.broker_type == "redis"
    assert config.redis.port == 6379 and config.redis.max_stream_length == 100_000
    kwargs = config.redis.to_dict()
    assert kwargs["host"] == "localhost" and kwargs["max_retries"] == 3
    broker = RedisStreamsBroker(**kwargs)
    assert broker.retry_policy.max_retries == 3
    assert broker.max_stream_length == 100_000
    assert isinstance(config.create_broker(), RedisStreamsBroker)


def test_env_variables_of_the_seed_including_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENLANG_BROKER_TYPE", "redis")
    monkeypatch.setenv("GREENLANG_REDIS_HOST", "redis.internal")
    monkeypatch.setenv("GREENLANG_REDIS_PORT", "6380")
    monkeypatch.setenv("GREENLANG_REDIS_PASSWORD", "s3cret")
    monkeypatch.setenv("GREENLANG_REDIS_MAX_CONNECTIONS", "7")
    monkeypatch.setenv("GREENLANG_LOG_LEVEL", "DEBUG")
    config = MessagingConfig.from_env()
    assert config.broker_type == "redis"
    assert config.redis.host == "redis.internal" and config.redis.port == 6380
    assert config.redis.max_connections == 7
    assert config.log_level == "DEBUG"
    assert config.redis.to_dict()["password"] == "s3cret"
    assert "s3cret" not in repr(config)


def test_environment_overrides_yaml_which_overrides_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENLANG_REDIS_PORT", "7000")
    config = MessagingConfig.from_yaml(write(tmp_path, SEED_YAML))
    assert config.redis.port == 7000  # env beats YAML
    assert config.redis.host == "localhost"  # YAML kept where env is silent
    assert config.redis.db == 0  # default where both are silent


def test_defaults_are_the_embedded_broker() -> None:
    config = MessagingConfig.from_env()
    assert config.broker_type == "memory"
    assert isinstance(config.create_broker(), InMemoryBroker)


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("redis:\n  port: not-a-port\n", "redis.port"),
        ("redis:\n  port: 70000\n", "redis.port"),
        ("redis:\n  max_retries: -1\n", "redis.max_retries"),
        ("broker_type: rabbit\n", "broker_type"),
        ("redis:\n  hots: typo\n", "redis.hots"),
        ("log_level: LOUD\n", "log_level"),
    ],
)
def test_invalid_value_is_rejected_naming_the_key(tmp_path: Path, yaml_text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        MessagingConfig.from_yaml(write(tmp_path, yaml_text))
    assert f"{key}:" in str(info.value)


def test_invalid_environment_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENLANG_REDIS_PORT", "abc")
    with pytest.raises(ConfigError, match=r"redis\.port"):
        MessagingConfig.from_env()


def test_unreadable_or_non_mapping_yaml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        MessagingConfig.from_yaml(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        MessagingConfig.from_yaml(write(tmp_path, "- a\n- b\n"))


def test_url_form_is_passed_as_redis_url(tmp_path: Path) -> None:
    config = MessagingConfig.from_yaml(write(tmp_path, "redis:\n  url: redis://h:1/2\n"))
    assert config.redis.to_dict()["redis_url"] == "redis://h:1/2"
