"""Every error the ``brokers`` package raises.

Tree::

    BrokerError
    ├── MessageValidationError      payload/headers not a JSON object, NaN, bad key
    │   └── MessageTooLargeError    encoded message over the broker's size limit
    ├── BrokerConnectionError       the server cannot be reached (retryable)
    │   └── CircuitOpenError        the circuit breaker is open: failing fast
    ├── BrokerNotConnectedError     an operation before ``connect()``
    ├── DeadLetterError             a dead letter that cannot be reprocessed
    └── ConfigError                 configuration rejected; names the key

Driver exceptions (redis-py) never leak: they are mapped here with ``raise … from exc``.
``retryable`` says, as data, whether trying the same call again later may succeed.
"""

from __future__ import annotations


class BrokerError(Exception):
    """Base of every error raised by :mod:`brokers`."""

    retryable: bool = False


class MessageValidationError(BrokerError, ValueError):
    """A payload or header that cannot travel: not a JSON object, NaN, non-str key."""


class MessageTooLargeError(MessageValidationError):
    """The encoded message is over the broker's size limit."""

    def __init__(self, topic: str, size: int, limit: int) -> None:
        self.topic = topic
        self.size = size
        self.limit = limit
        super().__init__(
            f"message for topic {topic!r} is {size} bytes encoded, "
            f"over the broker's limit of {limit} bytes"
        )


class BrokerConnectionError(BrokerError, ConnectionError):
    """The broker's server could not be reached or dropped the connection."""

    retryable = True


class CircuitOpenError(BrokerConnectionError):
    """The circuit breaker is open after repeated failures; the call was not attempted."""

    def __init__(self, name: str, failures: int, retry_in: float) -> None:
        self.name = name
        self.failures = failures
        self.retry_in = retry_in
        super().__init__(
            f"circuit {name!r} is open after {failures} consecutive failures; "
            f"failing fast, next probe in {retry_in:.2f}s"
        )


class BrokerNotConnectedError(BrokerError, RuntimeError):
    """An operation was attempted before ``connect()`` or after ``disconnect()``."""


class DeadLetterError(BrokerError):
    """A dead letter that cannot be reprocessed (e.g. a malformed entry)."""


class ConfigError(BrokerError, ValueError):
    """Configuration rejected; the message names each offending key."""
