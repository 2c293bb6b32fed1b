"""Plain-JSON views of what the audit finds (``replay --json``, ``verify --json``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from eventstore import BrokenRecord
from orchestrator.core.state import SagaState

if TYPE_CHECKING:
    from orchestrator.audit.checks import Divergence

__all__ = ["broken_json", "divergence_json", "state_json"]


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
