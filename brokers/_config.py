"""Messaging configuration (pydantic-settings).

Precedence, lowest to highest: built-in defaults → the YAML file → ``GREENLANG_*``
environment variables (nested keys with one ``_``: ``GREENLANG_REDIS_PORT`` sets
``redis.port``, ``GREENLANG_REDIS_MAX_CONNECTIONS`` sets ``redis.max_connections``).
Command-line flags, when a CLI adds them, go on top by passing overrides to the
constructor of a subclass; they are not read here.

Unknown keys are rejected, so a typo is an error naming the key, not a silent default.
``broker_type: kafka`` reads the ``kafka:`` section (``GREENLANG_KAFKA_BOOTSTRAP_SERVERS``,
``GREENLANG_KAFKA_SECURITY_PROTOCOL``, ``GREENLANG_KAFKA_SASL_PASSWORD``, …). The
``consumer:`` section (``GREENLANG_CONSUMER_VISIBILITY_TIMEOUT``, …) applies to every
broker type: visibility timeout, block time, and group membership (partitions, lease
time to live).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from brokers._base import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_PRIORITY_LEVELS,
    MAX_PRIORITY_LEVELS,
    Broker,
)
from brokers._circuit import CircuitBreakerPolicy
from brokers._errors import ConfigError
from brokers._options import ConsumerOptions


class RedisConfig(BaseModel):
    """The ``redis:`` section; ``to_dict()`` is ``RedisStreamsBroker``'s keyword arguments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = None
    host: str = "localhost"
    port: Annotated[int, Field(ge=1, le=65535)] = 6379
    password: SecretStr | None = None
    db: Annotated[int, Field(ge=0)] = 0
    ssl: bool = False
    max_connections: Annotated[int, Field(ge=1)] = 50
    max_stream_length: Annotated[int, Field(ge=1)] = 100_000
    message_ttl_days: Annotated[float, Field(gt=0)] = 7
    dlq_ttl_days: Annotated[float, Field(gt=0)] = 30
    max_retries: Annotated[int, Field(ge=0)] = 3
    max_message_bytes: Annotated[int, Field(ge=1)] = DEFAULT_MAX_MESSAGE_BYTES

    def to_dict(self) -> dict[str, Any]:
        """Keyword arguments for ``RedisStreamsBroker(**config.redis.to_dict())``."""
        out: dict[str, Any] = {
            "max_connections": self.max_connections,
            "max_stream_length": self.max_stream_length,
            "message_ttl_days": self.message_ttl_days,
            "dlq_ttl_days": self.dlq_ttl_days,
            "max_retries": self.max_retries,
            "max_message_bytes": self.max_message_bytes,
        }
        if self.url is not None:
            out["redis_url"] = self.url
        else:
            out.update(
                host=self.host,
                port=self.port,
                password=None if self.password is None else self.password.get_secret_value(),
                db=self.db,
                ssl=self.ssl,
            )
        return out


KAFKA_MAX_MESSAGE_BYTES = 10 * 1024 * 1024
KAFKA_RETENTION_DAYS = 30.0
"""How long Kafka topics keep messages, and how long a message lives there: the seed's
Kafka retention (``message_ttl_days`` of a Kafka broker, unless set)."""


class KafkaConfig(BaseModel):
    """The ``kafka:`` section; ``to_dict()`` is ``KafkaBroker``'s keyword arguments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bootstrap_servers: Annotated[list[str], NoDecode, Field(min_length=1)] = ["localhost:9092"]
    """``host:port`` list; a comma-separated string is accepted (the environment's form)."""
    topic_prefix: str = ""
    partitions: Annotated[int, Field(ge=1)] = 4
    replication_factor: Annotated[int, Field(ge=1)] = 1
    client_id: str = "sagaflow"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    linger_ms: Annotated[int, Field(ge=0)] = 5
    session_timeout: Annotated[float, Field(ge=1)] = 10.0
    """Seconds the group waits for a silent member before its partitions move (a dead
    engine's sagas, a dead worker's commands); Kafka servers refuse less than their
    ``group.min.session.timeout.ms`` (6 s by default)."""
    heartbeat_interval: Annotated[float, Field(gt=0)] | None = None
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = None
    message_ttl_days: Annotated[float, Field(gt=0)] = KAFKA_RETENTION_DAYS
    dlq_ttl_days: Annotated[float, Field(gt=0)] = 30
    max_retries: Annotated[int, Field(ge=0)] = 3
    max_message_bytes: Annotated[int, Field(ge=1, le=KAFKA_MAX_MESSAGE_BYTES)] = (
        KAFKA_MAX_MESSAGE_BYTES
    )

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaConfig:
        if self.security_protocol.startswith("SASL") and (
            self.sasl_mechanism is None or self.sasl_username is None
        ):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_mechanism and "
                "sasl_username (and sasl_password)"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Keyword arguments for ``KafkaBroker(**config.kafka.to_dict())``."""
        out = self.model_dump(exclude={"sasl_password"})
        out["sasl_password"] = (
            None if self.sasl_password is None else self.sasl_password.get_secret_value()
        )
        return out


class ConsumerConfig(BaseModel):
    """The ``consumer:`` section, for every broker type: how consumers wait, when an
    unacknowledged message is handed to another member, and group membership."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    visibility_timeout: Annotated[float, Field(gt=0)] = 30.0
    block_time: Annotated[float, Field(gt=0)] = 1.0
    membership_partitions: Annotated[int, Field(ge=1)] = 16
    membership_ttl: Annotated[float, Field(gt=0)] = 10.0

    def options(self) -> ConsumerOptions:
        return ConsumerOptions(**self.model_dump())


class MessagingConfig(BaseSettings):
    """The whole messaging configuration (the seed's YAML keys)."""

    model_config = SettingsConfigDict(
        env_prefix="GREENLANG_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="forbid",
        frozen=True,
    )

    broker_type: Literal["memory", "redis", "kafka"] = "memory"
    redis: RedisConfig = RedisConfig()
    kafka: KafkaConfig = KafkaConfig()
    consumer: ConsumerConfig = ConsumerConfig()
    priority_levels: Annotated[int, Field(ge=1, le=MAX_PRIORITY_LEVELS)] = DEFAULT_PRIORITY_LEVELS
    """Priority lanes of every topic (:attr:`Broker.priority_levels`); every process using
    a topic must use the same number."""
    metrics_enabled: bool = True
    circuit_breaker_enabled: bool = True
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file's values (passed in as init kwargs).
        return (env_settings, init_settings)

    @classmethod
    def load(cls, values: dict[str, Any] | None = None, *, source: str = "defaults") -> Any:
        try:
            return cls(**(values or {}))
        except ValidationError as exc:
            raise ConfigError(_describe(exc, source)) from exc

    @classmethod
    def from_yaml(cls, path: str | Path) -> MessagingConfig:
        """Defaults, then the YAML file, then ``GREENLANG_*`` environment variables."""
        file = Path(path)
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read messaging config {file}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"messaging config {file} is not valid YAML: {exc}") from exc
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"messaging config {file} must be a mapping of keys")
        config: MessagingConfig = cls.load(data, source=f"{file} / GREENLANG_* environment")
        return config

    @classmethod
    def from_env(cls) -> MessagingConfig:
        """Defaults, then ``GREENLANG_*`` environment variables."""
        config: MessagingConfig = cls.load(source="GREENLANG_* environment")
        return config

    def create_broker(self, **overrides: Any) -> Broker:
        """The broker ``broker_type`` names, configured from this object
        (``circuit_breaker_enabled: false``: a breaker that never opens)."""
        overrides = {
            "consumer_options": self.consumer.options(),
            "circuit": CircuitBreakerPolicy(enabled=self.circuit_breaker_enabled),
            "priority_levels": self.priority_levels,
            **overrides,
        }
        if self.broker_type == "redis":
            from brokers._redis import RedisStreamsBroker

            return RedisStreamsBroker(**{**self.redis.to_dict(), **overrides})
        if self.broker_type == "kafka":
            from brokers.kafka import KafkaBroker

            return KafkaBroker(**{**self.kafka.to_dict(), **overrides})
        from brokers._memory import InMemoryBroker

        options = self.redis.to_dict()
        return InMemoryBroker(
            **{
                "max_stream_length": options["max_stream_length"],
                "message_ttl_days": options["message_ttl_days"],
                "dlq_ttl_days": options["dlq_ttl_days"],
                "max_retries": options["max_retries"],
                **overrides,
            }
        )


def _describe(exc: ValidationError, source: str) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(root)"
        given = error.get("input")
        shown = "" if isinstance(given, dict) else f" (got {given!r})"
        lines.append(f"  {key}: {error['msg']}{shown}")
    return f"invalid messaging configuration from {source}:\n" + "\n".join(lines)
