"""Re-computes the hash chains and names the first record that does not match.

The verifier reads records as stored (``StoredRecord``: data and metadata as their
text), so nothing a forger writes into the database can stop it from naming the record:
an unreadable row is a finding, never a traceback. docs/CHAIN.md specifies every check
and the precedence of the reasons; the order of ``_check``'s steps is that precedence.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from ._canonical import (
    LOG_GENESIS,
    body_json,
    canonical_json,
    chain_hash,
    genesis_hash,
    log_link,
    text_problem,
)
from ._checkpoints import CHECKPOINT_STREAM, CHECKPOINT_TYPE, PublicKeys
from ._records import Record, StoredRecord

Problem = Literal[
    "unreadable record",
    "position not increasing",
    "missing version",
    "broken link",
    "hash mismatch",
    "missing position",
    "log hash mismatch",
    "non-canonical text",
    "checkpoint mismatch",
    "bad signature",
    "head mismatch",
    "head missing",
    "unsigned record",
]
"""Every reason, in order of precedence: a record is named for the first that applies."""

_TEXT_FIELDS = ("stream_id", "kind", "type", "recorded_at", "prev_hash", "hash")
_RECORDED_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", re.ASCII)
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class BrokenRecord:
    """The first record at which the chain stops verifying, and why."""

    stream_id: str
    version: int
    position: int
    reason: Problem
    expected: str
    """What the chain says should be there (a hash, a version, a position)."""
    found: str
    """What the record holds."""

    def describe(self) -> str:
        return (
            f"stream {self.stream_id!r} version {self.version} (position {self.position}): "
            f"{self.reason}: expected {self.expected}, found {self.found}"
        )


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last record a verification accepted, where the chain ends.

    Note it down (``orchestrator verify --heads FILE``): the chain cannot show that
    records were cut off its end, but a later verification against it can.
    """

    position: int
    stream_id: str
    version: int
    hash: str
    log_hash: str = ""
    """The store-wide chain's hash at ``position`` ("" for one stream or an old store)."""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of a verification over one stream or the whole store."""

    records_checked: int
    streams_checked: int
    first_broken: BrokenRecord | None = None
    last_position: int = 0
    stream_heads: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    head: ChainHead | None = None
    """The last record verified (before ``first_broken``, if any); None when none was."""
    log_chain: bool = False
    """Whether the store-wide chain was checked (not for an export, nor a store of
    schema version 2, which has none)."""
    checkpoints: int = 0
    """Checkpoint records accepted."""
    signatures_checked: bool = False
    """Whether their signatures were checked against public keys."""
    signed_through: int = 0
    """Position of the last checkpoint accepted (0: none): every record up to it is
    covered by its signature (when ``signatures_checked``)."""
    unsigned: int = 0
    """Records accepted after that checkpoint: covered by no signature yet."""

    @property
    def ok(self) -> bool:
        return self.first_broken is None


class NotedHead(NamedTuple):
    """A head kept by an auditor (``verify --heads``), to prove later that the store
    still holds it unchanged (``verify --against``)."""

    position: int
    log_hash: str
    hash: str


class LogNeighbours(NamedTuple):
    """For a record verified apart from the whole store (one stream): its neighbours in
    commit order, so that its store-wide links are checked both ways."""

    prev_log_hash: str | None
    """The log hash at ``position - 1`` (None: no record there)."""
    next: StoredRecord | None
    """The record at ``position + 1`` (None: none there)."""
    last_position: int | None = None
    """The store's last position: no record after this one is a gap unless it is the end."""


def _hash_of(row: StoredRecord) -> str:
    body = body_json(
        data_json=row.data,
        kind_json=canonical_json(row.kind),
        metadata_json=row.metadata,
        prev_hash=row.prev_hash,
        recorded_at=row.recorded_at,
        stream_id_json=canonical_json(row.stream_id),
        type_json=canonical_json(row.type),
        version=row.version,
    )
    return chain_hash(row.prev_hash, body)


def stored(record: Record) -> StoredRecord:
    """A parsed record as it would be stored: data and metadata as canonical text."""
    return StoredRecord(
        *record[:5],
        canonical_json(record.data),
        canonical_json(record.metadata),
        *record[7:],
    )


def record_hash(record: Record | StoredRecord) -> str:
    """The hash ``record`` should carry, recomputed from its fields and ``prev_hash``:
    over the stored text of a ``StoredRecord``, over the canonical text of a ``Record``."""
    return _hash_of(record if isinstance(record, StoredRecord) else stored(record))


def _shape_problem(row: StoredRecord) -> str | None:
    for name in ("position", "version"):
        value = getattr(row, name)
        if type(value) is not int or value < 1:
            return f"{name} is {value!r}, not a positive integer"
    for name in _TEXT_FIELDS:
        if not isinstance(getattr(row, name), str):
            return f"{name} is {getattr(row, name)!r}, not text"
    for name in ("data", "metadata"):
        if not isinstance(getattr(row, name), str):
            return f"{name} is {type(getattr(row, name)).__name__}, not text"
    # Both go into the hashed body as they are: only the forms the writer makes, so that
    # no text can pass for more JSON than it is.
    if not _RECORDED_AT.fullmatch(row.recorded_at):
        return f"recorded_at is {row.recorded_at!r}, not YYYY-MM-DDTHH:MM:SS.ffffffZ"
    if not _HEX64.fullmatch(row.prev_hash):
        return f"prev_hash is {row.prev_hash!r}, not 64 lowercase hex digits"
    return None


def _as_int(value: Any) -> int:
    return value if type(value) is int else 0


class ChainVerifier:
    """Feed records in position order (any mix of streams); stops at the first break.

    ``contiguous=True`` is for a pass over the *whole* store from its first record: the
    store assigns positions 1, 2, 3 … with no gap, so a gap means a record was deleted
    or moved away, and the store-wide chain (``log_chain``) is followed record to record.
    One stream alone is fed with ``LogNeighbours`` instead, when the store has them.
    ``keys``: check every checkpoint's signature. ``sealed``: every record must be
    covered by a checkpoint (a store shut down cleanly); without ``keys`` that only
    means a well-formed one, which anyone can write. ``against``: the store must
    still hold this noted head.
    """

    def __init__(
        self,
        *,
        contiguous: bool = False,
        log_chain: bool = False,
        keys: PublicKeys | None = None,
        sealed: bool = False,
        against: NotedHead | None = None,
    ) -> None:
        self._contiguous = contiguous
        self._log_chain = log_chain
        self._keys = keys if keys else None
        self._sealed = sealed
        self._against = against
        self._heads: dict[str, tuple[int, str]] = {}
        self._last_position = 0
        self._log_hash = LOG_GENESIS
        self._last: StoredRecord | None = None
        self._count = 0
        self._checkpoints = 0
        self._signed_through = 0
        self._first_unsigned: StoredRecord | None = None
        self._unsigned = 0
        self.first_broken: BrokenRecord | None = None

    def feed(self, row: StoredRecord | Record, neighbours: LogNeighbours | None = None) -> bool:
        """Check one record; False once the chain is broken."""
        if self.first_broken is not None:
            return False
        if isinstance(row, Record):
            try:
                row = stored(row)
            except (ValueError, TypeError) as exc:  # an edited export: NaN, a set …
                self._count += 1
                self.first_broken = BrokenRecord(
                    row.stream_id,
                    row.version,
                    row.position,
                    "unreadable record",
                    "data and metadata as JSON objects",
                    str(exc),
                )
                return False
        self._count += 1
        problem = self._check(row, neighbours)
        if problem is not None:
            self.first_broken = problem
            return False
        self._heads[row.stream_id] = (row.version, row.hash)
        self._last_position = row.position
        if self._log_chain:
            self._log_hash = row.log_hash
        self._last = row
        if row.stream_id == CHECKPOINT_STREAM and row.type == CHECKPOINT_TYPE:
            self._checkpoints += 1
            self._signed_through, self._first_unsigned, self._unsigned = row.position, None, 0
        else:
            self._unsigned += 1
            if self._first_unsigned is None:
                self._first_unsigned = row
        return True

    def _check(self, row: StoredRecord, neighbours: LogNeighbours | None) -> BrokenRecord | None:
        def broken(reason: Problem, expected: object, found: object) -> BrokenRecord:
            return _broken(row, reason, expected, found)

        shape = _shape_problem(row)
        if shape is not None:
            return broken("unreadable record", "every field present, of its type", shape)
        if row.position <= self._last_position:
            return broken("position not increasing", f"> {self._last_position}", row.position)
        version, prev = self._heads.get(row.stream_id, (0, genesis_hash(row.stream_id)))
        if row.version != version + 1:
            return broken("missing version", version + 1, row.version)
        if row.prev_hash != prev:
            return broken("broken link", prev, row.prev_hash)
        expected_hash = _hash_of(row)
        if row.hash != expected_hash:
            return broken("hash mismatch", expected_hash, row.hash)
        # After the stream's own checks, so that a record they condemn is named for them;
        # a gap alone (a stream's last record deleted) is named here.
        if self._contiguous and row.position != self._last_position + 1:
            return broken("missing position", self._last_position + 1, row.position)
        prev_log = self._log_hash
        if neighbours is not None:
            if row.position > 1 and neighbours.prev_log_hash is None:
                return broken("missing position", row.position - 1, "no record there")
            prev_log = LOG_GENESIS if row.position == 1 else str(neighbours.prev_log_hash)
        if self._log_chain:
            expected_log = log_link(prev_log, row.hash, row.position)
            if row.log_hash != expected_log:
                return broken("log hash mismatch", expected_log, row.log_hash)
        for name in ("data", "metadata"):
            text = text_problem(getattr(row, name), name)
            if text is not None:
                return broken(text[0], f"{name} as canonical JSON text of an object", text[1])
        if row.stream_id == CHECKPOINT_STREAM and row.type == CHECKPOINT_TYPE:
            problem = self._checkpoint_problem(row, prev_log)
            if problem is not None:
                return problem
        noted = self._against
        if noted is not None and row.position == noted.position:
            found = row.log_hash if self._log_chain else row.hash
            wanted = noted.log_hash if self._log_chain else noted.hash
            if found != wanted:
                return broken("head mismatch", wanted, found)
        # Last: the record itself is sound, but the next one in the log (of another
        # stream) is gone, or does not link to it, as when this record was re-linked.
        after = None if neighbours is None else neighbours.next
        end = None if neighbours is None else neighbours.last_position
        if after is None and type(end) is int and row.position < end:
            return broken("missing position", row.position + 1, "no record there")
        if (
            self._log_chain
            and after is not None
            and after.log_hash != log_link(row.log_hash, after.hash, after.position)
        ):
            expected = log_link(row.log_hash, after.hash, after.position)
            return _broken(after, "log hash mismatch", expected, after.log_hash)
        return None

    def _checkpoint_problem(self, row: StoredRecord, prev_log: str) -> BrokenRecord | None:
        data = json.loads(row.data)
        position, log_hash = data.get("position"), data.get("log_hash")
        if type(position) is not int or not all(
            isinstance(data.get(k), str) for k in ("key_id", "log_hash", "signature", "signed_at")
        ):
            return _broken(row, "unreadable record", "a checkpoint's fields", row.data[:120])
        if self._log_chain and (position, log_hash) != (row.position - 1, prev_log):
            head = f"position {row.position - 1} log hash {prev_log}"
            return _broken(
                row, "checkpoint mismatch", head, f"position {position} log hash {log_hash}"
            )
        if self._keys is not None:
            problem = self._keys.problem(data)
            if problem is not None:
                return _broken(row, "bad signature", f"a signature by {self._keys.ids}", problem)
        return None

    def finish(self) -> VerifyReport:
        """The report, once every record was fed: the checks that need the whole store
        (a noted head past its end, records a clean shutdown would have signed)."""
        if self.first_broken is None:
            noted = self._against
            if noted is not None and self._last_position < noted.position:
                end = self._last
                self.first_broken = BrokenRecord(
                    "" if end is None else end.stream_id,
                    0 if end is None else end.version,
                    self._last_position,
                    "head missing",
                    f"a record at position {noted.position}",
                    f"the store ends at position {self._last_position}",
                )
            elif self._sealed and self._first_unsigned is not None:
                self.first_broken = _broken(
                    self._first_unsigned,
                    "unsigned record",
                    "a checkpoint after it (--sealed)",
                    f"{self._unsigned} record(s) after the last checkpoint",
                )
        return self.report()

    def report(self) -> VerifyReport:
        last = self._last
        broken = self.first_broken
        return VerifyReport(
            records_checked=self._count,
            streams_checked=len(self._heads)
            + (1 if broken and broken.stream_id and broken.stream_id not in self._heads else 0),
            first_broken=broken,
            last_position=self._last_position,
            stream_heads={s: v for s, (v, _) in self._heads.items()},
            head=None
            if last is None
            else ChainHead(
                last.position,
                last.stream_id,
                last.version,
                last.hash,
                last.log_hash if self._log_chain else "",
            ),
            log_chain=self._log_chain,
            checkpoints=self._checkpoints,
            signatures_checked=self._keys is not None,
            signed_through=self._signed_through,
            unsigned=self._unsigned,
        )


def _broken(row: StoredRecord, reason: Problem, expected: object, found: object) -> BrokenRecord:
    stream = row.stream_id if isinstance(row.stream_id, str) else repr(row.stream_id)
    return BrokenRecord(
        stream, _as_int(row.version), _as_int(row.position), reason, str(expected), str(found)
    )


def verify_records(records: Iterable[Record], *, contiguous: bool = False) -> VerifyReport:
    """Verify parsed records given in position order (``contiguous``: see
    ``ChainVerifier``). Their data is hashed as its canonical text: an export's check."""
    verifier = ChainVerifier(contiguous=contiguous)
    for record in records:
        if not verifier.feed(record):
            break
    return verifier.report()
