"""Audit of sagas and of the store: timelines, deterministic replay, chain checks, export.

Pure functions over records (``timeline``, ``check_saga``, ``export_lines``) and the
async readers the command line calls (``audit_saga``, ``verify_store``, ``export_saga``).
Nothing here writes to the store.

``check_saga`` answers three questions about one saga's stream:

* is its hash chain intact (every record as written, none missing, none inserted)?
* does every recorded command follow from the recorded events under today's workflow
  definition (``replay``: the pure core re-decides each event)? The first record that
  differs is named;
* was the saga started under today's definition (``definition_hash`` of its
  ``saga.started`` record against the loaded workflow's)?
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eventstore import BrokenRecord, ChainVerifier, EventStore, Record, VerifyReport, verify_records
from orchestrator.core.codec import encode
from orchestrator.core.commands import StartSaga
from orchestrator.core.messages import Command, SagaMessage
from orchestrator.core.replay import replay
from orchestrator.core.state import SagaState
from orchestrator.core.workflow import Workflow
from orchestrator.errors import CodecError, UnknownSagaError
from orchestrator.runtime.saga_log import fold_records, from_record, stream_of

__all__ = [
    "EXIT_CHAIN_BROKEN",
    "EXIT_DIVERGED",
    "EXIT_OK",
    "Divergence",
    "SagaAudit",
    "StoreVerification",
    "TimelineEntry",
    "audit_saga",
    "check_saga",
    "export_lines",
    "export_saga",
    "record_json",
    "state_json",
    "timeline",
    "verify_store",
]

EXIT_OK = 0
EXIT_CHAIN_BROKEN = 1
EXIT_DIVERGED = 2
"""Exit codes of ``orchestrator replay --verify`` (and ``verify``: 0 or 1)."""

SHORT_HASH = 8
"""Hex digits of a hash shown in a timeline."""


# -- timeline ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One record of a saga's stream, as an auditor reads it."""

    version: int
    position: int
    recorded_at: str
    kind: str
    type: str
    step: str | None
    attempt: int | None
    hash: str
    causation: str | None
    """Events: the ``causation_id`` of their metadata (the command a reply answers, the
    timer that fired). Commands: ``v<N>``, the event record they were decided on."""

    @property
    def short_hash(self) -> str:
        return self.hash[:SHORT_HASH]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "position": self.position,
            "recorded_at": self.recorded_at,
            "kind": self.kind,
            "type": self.type,
            "step": self.step,
            "attempt": self.attempt,
            "hash": self.hash,
            "causation": self.causation,
        }


def timeline(records: Iterable[Record]) -> list[TimelineEntry]:
    """Every record of a stream, in version order, with what caused it."""
    out: list[TimelineEntry] = []
    last_event: int | None = None
    for record in records:
        causation: object = None
        if record.kind == "event":
            causation, last_event = record.metadata.get("causation_id"), record.version
        elif last_event is not None:
            causation = f"v{last_event}"
        step, attempt = record.data.get("step"), record.data.get("attempt")
        out.append(
            TimelineEntry(
                version=record.version,
                position=record.position,
                recorded_at=record.recorded_at,
                kind=record.kind,
                type=record.type,
                step=step if isinstance(step, str) else None,
                attempt=attempt if isinstance(attempt, int) else None,
                hash=record.hash,
                causation=None if causation is None else str(causation),
            )
        )
    return out


# -- replay and verification of one saga ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Divergence:
    """The first record where the log and the workflow's decisions part ways.

    ``version``/``position`` name the differing record; both are ``None`` when the log
    ends where the workflow decides one more command. ``expected`` is the command the
    workflow decides there (``None``: nothing), ``recorded`` the record's
    ``{kind, type, data}`` (``None``: the log has no command there).
    """

    after_version: int
    """The event whose decision differs (its version in the stream)."""
    version: int | None
    position: int | None
    expected: dict[str, Any] | None
    recorded: dict[str, Any] | None

    def describe(self) -> str:
        where = (
            f"record version {self.version} (position {self.position})"
            if self.version is not None
            else "the end of the log"
        )
        return (
            f"divergence at {where}, deciding the event at version {self.after_version}: "
            f"the workflow decides {_brief(self.expected)}, the log holds {_brief(self.recorded)}"
        )


@dataclass(frozen=True, slots=True)
class SagaAudit:
    """What ``orchestrator replay`` shows about one saga."""

    saga_id: str
    stream_id: str
    timeline: tuple[TimelineEntry, ...]
    state: SagaState | None
    """Folded from the records (``None`` before ``saga.started``, or if a tampered
    record no longer decodes)."""
    workflow: str | None
    recorded_definition: str | None
    """``definition_hash`` recorded when the saga started."""
    current_definition: str | None
    """``definition_hash`` of the workflow loaded today (``None``: not loaded)."""
    verified: bool = False
    """Whether the chain and the decisions were checked (``--verify``)."""
    chain: VerifyReport | None = None
    divergence: Divergence | None = None
    unverifiable: str | None = None
    """Why the decisions could not be re-run (workflow not loaded, undecodable record)."""

    @property
    def definition_changed(self) -> bool:
        return (
            self.recorded_definition is not None
            and self.current_definition is not None
            and self.recorded_definition != self.current_definition
        )

    @property
    def chain_broken(self) -> BrokenRecord | None:
        return None if self.chain is None else self.chain.first_broken

    @property
    def exit_code(self) -> int:
        """0 ok, 1 chain broken (takes precedence), 2 divergence or not checkable."""
        if self.chain_broken is not None:
            return EXIT_CHAIN_BROKEN
        if self.divergence is not None or self.unverifiable is not None:
            return EXIT_DIVERGED
        return EXIT_OK

    def drift_line(self) -> str | None:
        if not self.definition_changed:
            return None
        return (
            f"the definition of workflow {self.workflow!r} changed since this saga started: "
            f"recorded {self.recorded_definition}, loaded today {self.current_definition}"
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "saga_id": self.saga_id,
            "stream_id": self.stream_id,
            "workflow": self.workflow,
            "definition": {
                "recorded": self.recorded_definition,
                "current": self.current_definition,
                "changed": self.definition_changed,
            },
            "timeline": [e.to_json() for e in self.timeline],
            "state": None if self.state is None else state_json(self.state),
        }
        if self.verified:
            broken = self.chain_broken
            doc["verify"] = {
                "ok": self.exit_code == EXIT_OK,
                "exit_code": self.exit_code,
                "chain": {
                    "ok": broken is None,
                    "records_checked": self.chain.records_checked if self.chain else 0,
                    "first_broken": None if broken is None else broken_json(broken),
                },
                "divergence": None if self.divergence is None else divergence_json(self.divergence),
                "unverifiable": self.unverifiable,
            }
        return doc


def check_saga(
    saga_id: str,
    records: Sequence[Record],
    workflows: Mapping[str, Workflow],
    *,
    verify: bool = False,
) -> SagaAudit:
    """Audit one saga's records (its whole stream, in version order)."""
    chain = verify_records(records) if verify else None
    try:
        messages = [from_record(r) for r in records]
    except CodecError as exc:
        if chain is not None and not chain.ok:
            messages = None  # tampered beyond decoding: the chain already says so
        else:
            raise CodecError(f"saga {saga_id!r}: {exc}") from exc
    state = fold_records(records) if messages is not None else None
    recorded_definition = state.definition_hash if state is not None else None
    workflow_name = state.workflow if state is not None else _requested_workflow(records)
    wf = workflows.get(workflow_name) if workflow_name is not None else None
    divergence, unverifiable = None, None
    if verify:
        if messages is None:
            unverifiable = "a record no longer decodes: the decisions cannot be re-run"
        elif wf is None:
            unverifiable = (
                f"workflow {workflow_name!r} is not loaded: the decisions cannot be re-run"
            )
        else:
            divergence = _first_divergence(wf, records, messages)
    return SagaAudit(
        saga_id=saga_id,
        stream_id=stream_of(saga_id),
        timeline=tuple(timeline(records)),
        state=state,
        workflow=workflow_name,
        recorded_definition=recorded_definition,
        current_definition=wf.definition_hash if wf is not None else None,
        verified=verify,
        chain=chain,
        divergence=divergence,
        unverifiable=unverifiable,
    )


async def audit_saga(
    store: EventStore, saga_id: str, workflows: Mapping[str, Workflow], *, verify: bool = False
) -> SagaAudit:
    """Read the saga's stream and audit it (``check_saga``)."""
    records = await store.read_stream(stream_of(saga_id))
    if not records:
        raise UnknownSagaError(f"no saga {saga_id!r} in {store.url}")
    return check_saga(saga_id, records, workflows, verify=verify)


def _requested_workflow(records: Sequence[Record]) -> str | None:
    if records and records[0].type == StartSaga.type_name:
        name = records[0].data.get("workflow")
        return name if isinstance(name, str) else None
    return None


def _first_divergence(
    wf: Workflow, records: Sequence[Record], messages: Sequence[SagaMessage]
) -> Divergence | None:
    kept = [(r, m) for r, m in zip(records, messages, strict=True) if not isinstance(m, StartSaga)]
    result = replay(wf, [m for _, m in kept])
    if result.ok:
        return None
    first = result.mismatches[0]
    event_record = kept[first.index][0]
    if event_record.kind != "event":  # a command before any event
        return Divergence(
            event_record.version,
            event_record.version,
            event_record.position,
            None,
            _stored(event_record),
        )
    expected, recorded = first.expected, first.recorded
    k = next(
        (n for n, (e, r) in enumerate(zip(expected, recorded, strict=False)) if e != r),
        min(len(expected), len(recorded)),
    )
    at = first.index + 1 + k
    record = kept[at][0] if at < len(kept) else None
    return Divergence(
        after_version=event_record.version,
        version=record.version if record is not None else None,
        position=record.position if record is not None else None,
        expected=_encoded(expected[k]) if k < len(expected) else None,
        recorded=_encoded(recorded[k]) if k < len(recorded) else None,
    )


def _encoded(command: Command) -> dict[str, Any]:
    cls = type(command)
    return {"kind": cls.kind, "type": cls.type_name, "data": encode(command)}


def _stored(record: Record) -> dict[str, Any]:
    return {"kind": record.kind, "type": record.type, "data": record.data}


def _brief(command: dict[str, Any] | None) -> str:
    if command is None:
        return "nothing"
    data = command["data"]
    label = data.get("id") or data.get("step") or ""
    return f"{command['type']} {label}".strip()


# -- the whole store --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreVerification:
    """``orchestrator verify``: the chain report and the head it ends on."""

    report: VerifyReport
    stream_id: str | None
    last_position: int
    last_hash: str | None
    """Hash of the last record verified: note it down to detect a truncation later."""

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.report.ok else EXIT_CHAIN_BROKEN

    def to_json(self) -> dict[str, Any]:
        broken = self.report.first_broken
        return {
            "ok": self.report.ok,
            "stream_id": self.stream_id,
            "records_checked": self.report.records_checked,
            "streams_checked": self.report.streams_checked,
            "last_position": self.last_position,
            "last_hash": self.last_hash,
            "first_broken": None if broken is None else broken_json(broken),
        }


async def verify_store(
    store: EventStore, stream_id: str | None = None, *, page_size: int = 2000
) -> StoreVerification:
    """Recompute the chain of one stream, or of the whole store in commit order.

    The whole store is also checked for gaps in its positions (``ChainVerifier``'s
    ``contiguous``): a deleted record is caught even when it was the last of its stream.
    """
    verifier = ChainVerifier(contiguous=stream_id is None)
    last: Record | None = None
    position = 0
    while True:
        if stream_id is None:
            page = await store.read_all(position, page_size)
        else:
            page = await store.read_stream(stream_id, position + 1, page_size)
        for record in page:
            if not verifier.feed(record):
                return StoreVerification(verifier.report(), stream_id, _pos(last), _hash(last))
            last = record
        if len(page) < page_size:
            return StoreVerification(verifier.report(), stream_id, _pos(last), _hash(last))
        position = page[-1].position if stream_id is None else page[-1].version


def _pos(record: Record | None) -> int:
    return 0 if record is None else record.position


def _hash(record: Record | None) -> str | None:
    return None if record is None else record.hash


# -- export -----------------------------------------------------------------------------


def record_json(record: Record) -> dict[str, Any]:
    """Every field of a record, as the export writes it."""
    return dict(record._asdict())


def export_lines(records: Iterable[Record]) -> Iterable[str]:
    """JSONL: one record per line, every field, data and metadata as JSON objects."""
    for record in records:
        yield json.dumps(record_json(record), ensure_ascii=False, allow_nan=False)


async def export_saga(store: EventStore, saga_id: str) -> list[Record]:
    """The records of the saga's stream, for ``export_lines``."""
    records = await store.read_stream(stream_of(saga_id))
    if not records:
        raise UnknownSagaError(f"no saga {saga_id!r} in {store.url}")
    return records


# -- JSON views -------------------------------------------------------------------------


def broken_json(broken: BrokenRecord) -> dict[str, Any]:
    return {
        "stream_id": broken.stream_id,
        "version": broken.version,
        "position": broken.position,
        "reason": broken.reason,
        "expected": broken.expected,
        "found": broken.found,
    }


def divergence_json(divergence: Divergence) -> dict[str, Any]:
    return {
        "after_version": divergence.after_version,
        "version": divergence.version,
        "position": divergence.position,
        "expected": divergence.expected,
        "recorded": divergence.recorded,
        "message": divergence.describe(),
    }


def state_json(state: SagaState) -> dict[str, Any]:
    """The rebuilt state as plain JSON (what ``replay --json`` prints)."""

    def steps(table: Mapping[str, Any]) -> dict[str, Any]:
        return {
            name: {
                "phase": st.phase.value,
                "attempt": st.attempt,
                "output": None if st.output is None else dict(st.output),
                "error": st.error,
            }
            for name, st in table.items()
        }

    def failure(f: Any) -> dict[str, Any] | None:
        if f is None:
            return None
        return {"step": f.step, "attempt": f.attempt, "reason": f.reason, "at": f.at}

    return {
        "saga_id": state.saga_id,
        "workflow": state.workflow,
        "status": state.status.value,
        "definition_hash": state.definition_hash,
        "input": dict(state.input),
        "started_at": state.started_at,
        "steps": steps(state.steps),
        "compensations": steps(state.compensations),
        "failure": failure(state.failure),
        "compensation_failure": failure(state.compensation_failure),
        "output": None if state.output is None else dict(state.output),
        "resumes": state.resumes,
    }
