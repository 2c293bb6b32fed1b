"""The public names of the package, pinned: a change here is a change of the API."""

import eventstore


def test_exported_names() -> None:
    assert eventstore.__all__ == [
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
    for name in eventstore.__all__:
        assert getattr(eventstore, name) is not None
