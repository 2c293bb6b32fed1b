"""brokers: the transport of the saga engine.

At-least-once messaging with consumer groups, retries with backoff, a dead-letter
queue, TTLs and provenance hashes, over an in-process broker (the embedded default)
Redis Streams or Apache Kafka. See ``docs/brokers.md``.
"""

from typing import TYPE_CHECKING

from brokers._base import Broker
from brokers._circuit import CircuitBreaker, CircuitBreakerPolicy, CircuitState
from brokers._config import KafkaConfig, MessagingConfig, RedisConfig
from brokers._dead_letters import DiscardedDeadLetter
from brokers._errors import (
    BrokerConnectionError,
    BrokerError,
    BrokerNotConnectedError,
    CircuitOpenError,
    ConfigError,
    DeadLetterError,
    MessageTooLargeError,
    MessageValidationError,
)
from brokers._membership import Assignment, OnAssigned
from brokers._memory import InMemoryBroker
from brokers._message import DeadLetterMessage, Delivery, Headers, Message
from brokers._options import ConsumerOptions
from brokers._patterns import PubSubPattern, RequestReplyPattern, WorkQueuePattern
from brokers._redelivery import RedeliveryPolicy

if TYPE_CHECKING:
    from brokers._redis import RedisStreamsBroker
    from brokers.kafka import KafkaBroker


def __getattr__(name: str) -> object:
    # The server brokers are imported on first use: redis-py takes longer to import
    # than the rest of the package, and KafkaBroker needs aiokafka (the `kafka` extra),
    # so the embedded default works without it.
    if name == "RedisStreamsBroker":
        from brokers._redis import RedisStreamsBroker

        return RedisStreamsBroker
    if name == "KafkaBroker":
        try:
            from brokers.kafka import KafkaBroker
        except ImportError as exc:
            raise ImportError(
                f"KafkaBroker needs aiokafka: pip install 'sagaflow[kafka]' ({exc})"
            ) from exc
        return KafkaBroker
    raise AttributeError(f"module 'brokers' has no attribute {name!r}")


__all__ = [
    "Assignment",
    "Broker",
    "BrokerConnectionError",
    "BrokerError",
    "BrokerNotConnectedError",
    "CircuitBreaker",
    "CircuitBreakerPolicy",
    "CircuitOpenError",
    "CircuitState",
    "ConfigError",
    "ConsumerOptions",
    "DeadLetterError",
    "DeadLetterMessage",
    "Delivery",
    "DiscardedDeadLetter",
    "Headers",
    "InMemoryBroker",
    "KafkaBroker",
    "KafkaConfig",
    "Message",
    "MessageTooLargeError",
    "MessageValidationError",
    "MessagingConfig",
    "OnAssigned",
    "PubSubPattern",
    "RedeliveryPolicy",
    "RedisConfig",
    "RedisStreamsBroker",
    "RequestReplyPattern",
    "WorkQueuePattern",
]
