"""Immutable, SHA-256 hash-chained streams of records on SQLite or PostgreSQL."""

from ._canonical import LOG_GENESIS, canonical_json, genesis_hash, log_link
from ._checkpoints import CHECKPOINT_STREAM, CHECKPOINT_TYPE, CheckpointSigner, PublicKeys
from ._errors import (
    ConcurrencyError,
    CorruptRecordError,
    EventStoreError,
    InvalidRecordError,
    ReadOnlyError,
    SchemaError,
    SchemaOutdatedError,
    SchemaTooNewError,
    SigningKeyError,
    StorageError,
    StoreClosedError,
    StoreUnavailableError,
)
from ._migrations import LATEST_VERSION as SCHEMA_VERSION
from ._port import EventLog, StoreHealth
from ._records import (
    ANY,
    NO_STREAM,
    AppendResult,
    ExpectedVersion,
    NewRecord,
    Record,
    StoredRecord,
    StreamInfo,
)
from ._store import EventStore
from ._validation import Limits
from ._verify import (
    BrokenRecord,
    ChainHead,
    ChainVerifier,
    LogNeighbours,
    NotedHead,
    VerifyReport,
    record_hash,
    verify_records,
)
from ._writer import WriterStats

__all__ = [
    "ANY",
    "CHECKPOINT_STREAM",
    "CHECKPOINT_TYPE",
    "LOG_GENESIS",
    "NO_STREAM",
    "SCHEMA_VERSION",
    "AppendResult",
    "BrokenRecord",
    "ChainHead",
    "ChainVerifier",
    "CheckpointSigner",
    "ConcurrencyError",
    "CorruptRecordError",
    "EventLog",
    "EventStore",
    "EventStoreError",
    "ExpectedVersion",
    "InvalidRecordError",
    "Limits",
    "LogNeighbours",
    "NewRecord",
    "NotedHead",
    "PublicKeys",
    "ReadOnlyError",
    "Record",
    "SchemaError",
    "SchemaOutdatedError",
    "SchemaTooNewError",
    "SigningKeyError",
    "StorageError",
    "StoreClosedError",
    "StoreHealth",
    "StoreUnavailableError",
    "StoredRecord",
    "StreamInfo",
    "VerifyReport",
    "WriterStats",
    "canonical_json",
    "genesis_hash",
    "log_link",
    "record_hash",
    "verify_records",
]
