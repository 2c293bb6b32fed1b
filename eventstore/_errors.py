"""Errors raised by the event store.

Tree::

    EventStoreError
    ├── ConcurrencyError        the stream's version is not the one the writer expected
    ├── InvalidRecordError      bad input, refused before anything is written (ValueError)
    ├── SchemaError             the database schema does not match the code
    │   ├── SchemaTooNewError   written by a newer release; refused
    │   └── SchemaOutdatedError older; upgrade with ``orchestrator migrate`` / ``migrate()``
    ├── CorruptRecordError      a stored record cannot be read back (names it)
    ├── ReadOnlyError           a write to a store opened read-only
    ├── SigningKeyError         a checkpoint signing or public key cannot be loaded
    ├── StoreClosedError        the store was closed
    └── StorageError            the database failed (driver error attached as __cause__)
        └── StoreUnavailableError  the database cannot be reached (server down, starting
                                up or shutting down, connection lost): wait and retry

``StoreUnavailableError`` is the one to pause and retry on; the store itself reconnects
on the next operation. An append that raised it may have been written if the connection
died during its COMMIT (the message says which): re-read the stream and decide again; a
retry at the same expected version can never write it twice.
"""

from __future__ import annotations


class EventStoreError(Exception):
    """Base of every error the event store raises."""


class ConcurrencyError(EventStoreError):
    """An append's expected version did not match the stream's actual version."""

    def __init__(self, stream_id: str, expected: int | str, actual: int) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"stream {stream_id!r}: expected version {expected}, actual version {actual}"
        )


class InvalidRecordError(EventStoreError, ValueError):
    """An append was refused before anything was written, because its input is invalid."""


class SchemaError(EventStoreError):
    """The database schema is not the one this code knows."""


class SchemaTooNewError(SchemaError):
    """The database was written by a newer release of the code."""


class SchemaOutdatedError(SchemaError):
    """The database schema is older than the code; it must be migrated explicitly."""


class CorruptRecordError(EventStoreError):
    """A stored record cannot be read back: its data or metadata is not a JSON object.

    The store never writes such a record; someone changed the database. ``verify``
    names it too, as the first broken record.
    """

    def __init__(self, position: object, stream_id: object, version: object, reason: str):
        self.position = position
        self.stream_id = stream_id
        self.version = version
        self.reason = reason
        super().__init__(
            f"stream {stream_id!r} version {version} (position {position}) cannot be read: "
            f"{reason}; run `orchestrator verify` for the chain report"
        )


class ReadOnlyError(EventStoreError):
    """A write was asked of a store opened with ``read_only=True``."""


class SigningKeyError(EventStoreError):
    """A checkpoint signing key or public key cannot be read or is not ed25519."""


class StoreClosedError(EventStoreError):
    """The store has been closed."""


class StorageError(EventStoreError):
    """The database failed; nothing of the failed append was written (but see
    ``StoreUnavailableError``: a connection lost during COMMIT leaves that unknown)."""


class StoreUnavailableError(StorageError):
    """The database could not be reached: an outage, not a fault of the caller's input.

    ``operation`` names what failed (``"append to 'order-1'"``, ``"read_all"``, …); the
    driver's error is ``__cause__``. The next operation reconnects by itself.
    """

    def __init__(self, operation: str, cause: BaseException, outcome: str = "") -> None:
        self.operation = operation
        detail = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
        super().__init__(
            f"{operation} failed: the database is unavailable ({detail})"
            + (f"; {outcome}" if outcome else "")
        )
        self.__cause__ = cause
