"""The verifier's reads: rows exactly as stored, a page at a time; for one stream, each
row with its neighbours in commit order, so its store-wide links are checked both ways."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ._records import StoredRecord
from ._verify import ChainVerifier, LogNeighbours, VerifyReport

Fetch = Callable[[str, tuple[Any, ...]], Awaitable[Sequence[Sequence[Any]]]]
"""Runs a ``%s``-templated read and returns its rows as tuples."""

_FIELDS = StoredRecord._fields


def _columns(alias: str, log_chain: bool) -> str:
    names = [f"{alias}.{name}" for name in _FIELDS[:-1]]
    return ", ".join([*names, f"{alias}.log_hash" if log_chain else "''"])


def _whole_store_sql(log_chain: bool) -> str:
    return (
        f"SELECT {_columns('r', log_chain)} FROM records r WHERE r.position > %s "
        "ORDER BY r.position LIMIT %s"
    )


def _stream_sql(log_chain: bool) -> str:
    if not log_chain:
        return (
            f"SELECT {_columns('r', False)} FROM records r "
            "WHERE r.stream_id = %s AND r.version > %s ORDER BY r.version LIMIT %s"
        )
    return (
        f"SELECT {_columns('r', True)}, p.log_hash, {_columns('n', True)}, "
        "(SELECT MAX(position) FROM records) FROM records r "
        "LEFT JOIN records p ON p.position = r.position - 1 "
        "LEFT JOIN records n ON n.position = r.position + 1 "
        "WHERE r.stream_id = %s AND r.version > %s ORDER BY r.version LIMIT %s"
    )


async def verify_rows(
    fetch: Fetch,
    verifier: ChainVerifier,
    *,
    stream_id: str | None,
    log_chain: bool,
    page_size: int,
) -> VerifyReport:
    """Feed ``verifier`` the whole store in commit order, or one stream in version order
    (with its neighbours when the store has a log chain), a page at a time."""
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, not {page_size}")
    width = len(_FIELDS)
    # A position over the whole store (from the lowest a database can hold, so that a
    # row moved to position 0 or below is read, and named), a version in one stream.
    after: Any = -(2**63) if stream_id is None else 0
    while True:
        if stream_id is None:
            page = await fetch(_whole_store_sql(log_chain), (after, page_size))
        else:
            page = await fetch(_stream_sql(log_chain), (stream_id, after, page_size))
        for raw in page:
            row = StoredRecord(*raw[:width])
            neighbours = None
            if stream_id is not None and log_chain:
                following = StoredRecord(*raw[width + 1 : 2 * width + 1])
                neighbours = LogNeighbours(
                    raw[width], None if following.position is None else following, raw[-1]
                )
            if not verifier.feed(row, neighbours):
                return verifier.report()
        if len(page) < page_size:
            return verifier.finish()
        last = StoredRecord(*page[-1][:width])
        after = last.position if stream_id is None else last.version
