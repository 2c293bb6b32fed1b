"""Immutable, SHA-256 hash-chained streams of records on SQLite or PostgreSQL."""

from ._canonical import canonical_json, genesis_hash
from ._errors import (
    ConcurrencyError,
    EventStoreError,
    InvalidRecordError,
    SchemaError,
    SchemaOutdatedError,
    SchemaTooNewError,
    StorageError,
    StoreClosedError,
    StoreUnavailableError,
)
from ._migrations import LATEST_VERSION as SCHEMA_VERSION
from ._port import EventLog, StoreHealth
from ._records import ANY, NO_STREAM, AppendResult, ExpectedVersion, NewRecord, Record, StreamInfo
from ._store import EventStore
from ._validation import Limits
from ._verify import (
    BrokenRecord,
    ChainHead,
    ChainVerifier,
    VerifyReport,
    record_hash,
    verify_records,
)
from ._writer import WriterStats

__all__ = [
    "ANY",
    "NO_STREAM",
    "SCHEMA_VERSION",
    "AppendResult",
    "BrokenRecord",
    "ChainHead",
    "ChainVerifier",
    "ConcurrencyError",
    "EventLog",
    "EventStore",
    "EventStoreError",
    "ExpectedVersion",
    "InvalidRecordError",
    "Limits",
    "NewRecord",
    "Record",
    "SchemaError",
    "SchemaOutdatedError",
    "SchemaTooNewError",
    "StorageError",
    "StoreClosedError",
    "StoreHealth",
    "StoreUnavailableError",
    "StreamInfo",
    "VerifyReport",
    "WriterStats",
    "canonical_json",
    "genesis_hash",
    "record_hash",
    "verify_records",
]
