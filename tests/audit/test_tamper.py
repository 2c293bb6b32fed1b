"""Tampering with a real store (a SQLite file, a real PostgreSQL): every kind of change a
forger with write access can make is either detected, naming the first affected record
and why, or is one of the documented limits, and nothing else.

The forger has the database's credentials but not the signing key: ``tamper`` drops the
triggers (immutability and append-only), then edits rows with raw SQL, recomputing
hashes with eventstore's own functions where that helps them.

"First affected": the first record, in commit order, at which the stored rows stop being
what was written: the changed record itself; for a record deleted or moved away, the
one now following its predecessor; for a forged insertion, the genuine record it
displaced. ``Detected`` pins its position, stream, version and the verifier's reason.

The documented limits (docs/CHAIN.md) are ``Limit``: every chain intact, the store
shorter (records cut off the end), longer (records forged at the very end) or ending on
another head (history rewritten and re-chained to the end). With a signing key they
shrink: a checkpoint after a rewrite no longer matches ("checkpoint mismatch"), or its
signature is the forger's ("bad signature"); records forged at the end are unsigned
(``sealed=True``, after a clean close); cutting records off the end is caught against a
noted head (``against=``) and, when it cuts a checkpoint off, by ``sealed``.

Each kind is in a table whose test ids say the outcome; ``test_the_tallies`` pins how
many of each there are. Hypothesis then draws the record, the change and the auditor.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.audit.tampering import (
    AGAINST,
    BYTE_COLUMNS,
    BYTES,
    FIELD_VALUES,
    KEYS,
    KINDS,
    NOTED,
    PLAIN,
    SEALED,
    SIGNATURES,
    SIGNED,
    UNREADABLE,
    Audit,
    Change,
    postgres_url,
    scenario,
    sqlite_url,
)
from tests.servers import PostgresServer

# -- every kind, once: the tables ------------------------------------------------------


def _case(outcome: str, change: Change, audit: Audit = PLAIN) -> Any:
    what = "-".join(str(part) for part in change).replace(" ", "_")
    return pytest.param(change, audit, outcome, id=f"{outcome}:{what}:{audit}")


EDITS: list[tuple[str, Change]] = [
    # Edit a field of a record (each column) ...
    *(("detected", ("field", "b2", name)) for name in FIELD_VALUES),
    ("detected", ("position", "b2", "past the end")),
    ("detected", ("position", "last", "past the end")),
    ("detected", ("position", "b2", "0")),  # read first: no position of the store's
    # ... or a byte of one.
    ("detected", ("byte", "a3", "data", 5, "#")),
    ("detected", ("byte", "c1", "stream_id", 0, "#")),
    ("detected", ("byte", "a4", "prev_hash", 63, "0")),
    ("detected", ("byte", "c2", "hash", 0, "f")),
    ("detected", ("byte", "b1", "log_hash", 17, "0")),
    ("detected", ("byte", "a2", "recorded_at", 3, "Z")),
    # Delete a record: the first of the store (and of its stream), the first of a
    # stream, one in the middle of a stream, the last of a stream but not of the store.
    ("detected", ("delete", "a1")),
    ("detected", ("delete", "b1")),
    ("detected", ("delete", "a3")),
    ("detected", ("delete", "c2")),
    # A forged record, its stream hash and log hash recomputed, inserted before a
    # genuine one: in the middle of the log (positions shifted), or at the end of the
    # log (the stream's later versions shifted).
    ("detected", ("insert", "a3", "middle of the log")),
    ("detected", ("insert", "a1", "middle of the log")),
    ("detected", ("insert", "b2", "end of the log")),
    # Swap two records: within a stream, across streams (positions traded; data traded).
    ("detected", ("swap positions", "a2", "a4")),
    ("detected", ("swap positions", "a2", "b1")),  # b1 fits there: only the log tells
    ("detected", ("swap positions", "c1", "b3")),
    ("detected", ("swap data", "a1", "a4")),
    ("detected", ("swap data", "b1", "c2")),
]

WITHOUT_A_KEY = [
    *(_case(outcome, change) for outcome, change in EDITS),
    # The last record moved to position 0: read first, and named.
    _case("detected", ("position", "last", "0")),
    # Records cut off the end.
    _case("limit", ("delete", "last")),
    _case("limit", ("truncate", 1)),
    _case("limit", ("truncate", 3)),
    # Records forged at the very end, with correct hashes.
    _case("limit", ("append", "a")),
    _case("limit", ("append", "new")),
    # History rewritten and re-chained to the end: the chains cannot tell ...
    _case("limit", ("rechain", "a2", "edit", "left")),
    _case("limit", ("rechain", "b2", "insert", "left")),
    _case("limit", ("rechain", "a3", "delete", "left")),
    # ... unless what was written is text no writer would store.
    *(_case("detected", ("rechain", "a4", how, "left")) for how in UNREADABLE),
]

WITH_A_KEY = [
    # What is detected without a key is detected with one, at the same record.
    *(_case(outcome, change, SEALED) for outcome, change in EDITS),
    _case("detected", ("field", "K2", "data"), SEALED),
    _case("detected", ("field", "K1", "log_hash"), SEALED),
    _case("detected", ("delete", "K1"), SEALED),
    _case("detected", ("swap positions", "a3", "K1"), SEALED),
    _case("detected", ("swap data", "K1", "K2"), SEALED),
    # Rewriting history before a checkpoint: caught at the first checkpoint after it.
    _case("detected", ("rechain", "a2", "edit", "left"), SEALED),
    _case("detected", ("rechain", "a2", "edit", "left"), PLAIN),  # even without the key
    _case("detected", ("rechain", "a5", "whitespace", "own key"), SEALED),
    _case("detected", ("rechain", "a4", "edit", "left"), SEALED),
    _case("detected", ("rechain", "b2", "insert", "left"), SEALED),
    _case("detected", ("rechain", "a3", "delete", "left"), SEALED),
    _case("detected", ("rechain", "a5", "delete", "left"), SEALED),
    # ... and the checkpoints rewritten too: their signatures are not the key's.
    _case("detected", ("rechain", "a2", "edit", "own key"), SEALED),
    _case("detected", ("rechain", "a2", "edit", "old signature"), KEYS),
    _case("detected", ("rechain", "b2", "insert", "own key"), KEYS),
    _case("detected", ("rechain", "a3", "delete", "old signature"), SEALED),
    _case("limit", ("rechain", "a2", "edit", "own key"), PLAIN),  # undetectable without it
    _case("detected", ("rechain", "a2", "edit", "own key"), NOTED),  # but for a noted head
    # Records forged at the very end: unsigned, once the store was closed cleanly.
    _case("detected", ("append", "a"), SEALED),
    _case("detected", ("append", "new"), SEALED),
    _case("detected", ("append", "K"), SEALED),
    _case("limit", ("append", "a"), KEYS),
    _case("limit", ("append", "a"), AGAINST),  # the noted head is still there
    # Records cut off the end (or the last moved to position 0): a checkpoint cut off
    # leaves records unsigned ...
    _case("detected", ("delete", "last"), SEALED),
    _case("detected", ("truncate", 1), SEALED),
    _case("detected", ("truncate", 2), SEALED),
    _case("detected", ("position", "last", "0"), SEALED),
    _case("limit", ("truncate", 1), KEYS),
    # ... a cut of the records after a checkpoint leaves a sealed store, that only a
    # noted head shows.
    _case("limit", ("truncate", 3), SEALED),
    _case("detected", ("truncate", 3), AGAINST),
    _case("detected", ("truncate", 1), AGAINST),
]


def test_the_tally_without_a_key() -> None:
    """How many kinds of tampering the suite covers without a key, and how many of them
    are documented limits: a change in coverage, or in what the verifier tells, shows."""
    assert Counter(case.values[2] for case in WITHOUT_A_KEY) == {"detected": 35, "limit": 8}
    assert {case.values[0][0] for case in WITHOUT_A_KEY} == KINDS


def test_the_tally_with_a_key() -> None:
    """The same kinds (and more) on a signed store, verified with the public key."""
    assert Counter(case.values[2] for case in WITH_A_KEY) == {"detected": 57, "limit": 5}
    assert {case.values[0][0] for case in WITH_A_KEY} == KINDS


@pytest.mark.parametrize("change, audit, outcome", WITHOUT_A_KEY)
def test_every_kind_without_a_key_sqlite(
    change: Change, audit: Audit, outcome: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    expected = asyncio.run(scenario(sqlite_url(tmp_path_factory), change, audit, signed=False))
    assert expected.outcome == outcome


@pytest.mark.parametrize("change, audit, outcome", WITH_A_KEY)
def test_every_kind_with_a_key_sqlite(
    change: Change, audit: Audit, outcome: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    expected = asyncio.run(scenario(sqlite_url(tmp_path_factory), change, audit, signed=True))
    assert expected.outcome == outcome


@pytest.mark.postgres
@pytest.mark.parametrize("change, audit, outcome", WITHOUT_A_KEY)
def test_every_kind_without_a_key_postgres(
    change: Change, audit: Audit, outcome: str, postgres_server: PostgresServer
) -> None:
    expected = asyncio.run(scenario(postgres_url(postgres_server), change, audit, signed=False))
    assert expected.outcome == outcome


@pytest.mark.postgres
@pytest.mark.parametrize("change, audit, outcome", WITH_A_KEY)
def test_every_kind_with_a_key_postgres(
    change: Change, audit: Audit, outcome: str, postgres_server: PostgresServer
) -> None:
    expected = asyncio.run(scenario(postgres_url(postgres_server), change, audit, signed=True))
    assert expected.outcome == outcome


# -- any record, any change, any auditor: hypothesis -----------------------------------

_record = st.integers(0, len(SIGNED) - 1)
changes = st.one_of(
    st.tuples(st.just("field"), _record, st.sampled_from(list(FIELD_VALUES))),
    st.tuples(st.just("position"), _record, st.sampled_from(["0", "past the end"])),
    st.tuples(
        st.just("byte"),
        _record,
        st.sampled_from(BYTE_COLUMNS),
        st.integers(0, 200),
        st.sampled_from(BYTES),
    ),
    st.tuples(st.just("delete"), _record),
    st.tuples(st.just("insert"), _record, st.sampled_from(["middle of the log", "end of the log"])),
    st.tuples(st.just("append"), st.sampled_from(["a", "b", "c", "K", "new"])),
    st.tuples(
        st.just("rechain"),
        _record,
        st.sampled_from(["edit", "insert", "delete", *UNREADABLE]),
        st.sampled_from(SIGNATURES),
    ),
    st.tuples(st.just("swap positions"), _record, st.integers(0, 20)),
    st.tuples(st.just("swap data"), _record, st.integers(0, 20)),
    st.tuples(st.just("truncate"), st.integers(1, 4)),
)
auditors = st.sampled_from([PLAIN, NOTED, KEYS, SEALED, AGAINST])


def _examples(n: int) -> settings:
    return settings(
        max_examples=n, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )


@_examples(50)
@given(change=changes)
def test_any_tampering_of_a_sqlite_file(
    change: Change, tmp_path_factory: pytest.TempPathFactory
) -> None:
    asyncio.run(scenario(sqlite_url(tmp_path_factory), change, PLAIN, signed=False))


@_examples(50)
@given(change=changes, audit=auditors)
def test_any_tampering_of_a_signed_sqlite_file(
    change: Change, audit: Audit, tmp_path_factory: pytest.TempPathFactory
) -> None:
    asyncio.run(scenario(sqlite_url(tmp_path_factory), change, audit, signed=True))


@pytest.mark.postgres
@_examples(10)
@given(change=changes)
def test_any_tampering_of_postgresql(change: Change, postgres_server: PostgresServer) -> None:
    asyncio.run(scenario(postgres_url(postgres_server), change, PLAIN, signed=False))


@pytest.mark.postgres
@_examples(10)
@given(change=changes, audit=auditors)
def test_any_tampering_of_a_signed_postgresql(
    change: Change, audit: Audit, postgres_server: PostgresServer
) -> None:
    asyncio.run(scenario(postgres_url(postgres_server), change, audit, signed=True))
