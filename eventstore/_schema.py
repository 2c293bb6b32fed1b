"""The tables, as SQLAlchemy Core sees them for queries (and the streams() query).

The DDL that creates them lives in ``_migrations.py``, version by version; this module
must describe what the latest migration leaves.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Text,
    func,
    select,
)

metadata = MetaData()

records = Table(
    "records",
    metadata,
    Column(
        "position",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("stream_id", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("type", String(200), nullable=False),
    Column("data", Text, nullable=False),
    Column("metadata", Text, nullable=False),
    Column("recorded_at", String(32), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("log_hash", String(64), nullable=False),
)

schema_versions = Table(
    "eventstore_schema",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False),
    Column("applied_at", String(32), nullable=False),
)


def stream_heads(prefix: str, after: str, limit: int) -> Select[Any]:
    """``(stream_id, version, type)`` of each stream's last record, by id, after
    ``after``; only ids starting with ``prefix`` (taken literally, not as a pattern)."""
    heads = (
        select(records.c.stream_id, func.max(records.c.version).label("version"))
        .where(records.c.stream_id > after)
        .group_by(records.c.stream_id)
    )
    if prefix:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        heads = heads.where(records.c.stream_id.like(escaped + "%", escape="\\"))
    latest = heads.subquery()
    return (
        select(records.c.stream_id, records.c.version, records.c.type)
        .join(
            latest,
            (records.c.stream_id == latest.c.stream_id) & (records.c.version == latest.c.version),
        )
        .order_by(records.c.stream_id)
        .limit(limit)
    )
