"""The public names of the package, pinned: a change here is a change of the API."""

import eventstore


def test_exported_names() -> None:
    assert eventstore.__all__ == [
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
    for name in eventstore.__all__:
        assert getattr(eventstore, name) is not None
