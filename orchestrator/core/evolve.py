"""``evolve``: the state after one message, and ``fold``: the state a log gives.

Pure; no workflow needed. ``evolve`` folds commands as well as events: the commands a
saga issued are part of its state (they are what is in flight), so ``fold(log)``
equals the live state. Each message type has one handler here, registered with
``_handles``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from orchestrator.core import commands as cm
from orchestrator.core import events as ev
from orchestrator.core.messages import Command, Event, Request, SagaMessage
from orchestrator.core.state import Failure, Phase, SagaState, SagaStatus, StepState
from orchestrator.errors import SagaStateError

__all__ = ["evolve", "fold", "replace"]

_HANDLERS: dict[type[SagaMessage], Callable[[SagaState, Any], SagaState]] = {}
_H = TypeVar("_H", bound=Callable[..., SagaState])


def _handles(cls: type[SagaMessage]) -> Callable[[_H], _H]:
    def register(handler: _H) -> _H:
        _HANDLERS[cls] = handler
        return handler

    return register


def evolve(state: SagaState | None, message: Event | Command) -> SagaState:
    """The state after one event or command. Pure; no workflow needed.

    A message that changes nothing (a duplicate or late outcome, a timer for an attempt
    that is not waiting, a resume of a saga that has not failed) returns ``state``
    itself, so ``evolve(s, m) is s`` tells the shell it was a no-op.
    Raises ``SagaStateError`` for another saga's message or a message before
    ``SagaStarted``.
    """
    if state is None:
        if isinstance(message, ev.SagaStarted):
            return SagaState(
                saga_id=message.saga_id,
                workflow=message.workflow,
                definition_hash=message.definition_hash,
                input=message.input,
                started_at=message.now,
                last_event_at=message.now,
            )
        raise SagaStateError(f"{type(message).__name__} before SagaStarted")
    if message.saga_id != state.saga_id:
        raise SagaStateError(
            f"{type(message).__name__} for saga {message.saga_id!r} applied to {state.saga_id!r}"
        )
    handler = _HANDLERS.get(type(message))
    if handler is None:
        raise SagaStateError(f"not a saga message: {message!r}")
    return handler(state, message)


def fold(messages: Iterable[SagaMessage], state: SagaState | None = None) -> SagaState | None:
    """``evolve`` over ``messages`` (a saga's log); ``StartSaga`` requests are skipped.
    ``None`` if the log holds no ``SagaStarted``."""
    for message in messages:
        if isinstance(message, Request):
            continue
        state = evolve(state, message)  # type: ignore[arg-type]
    return state


_setattr = object.__setattr__
_T = TypeVar("_T")


def replace(obj: _T, **changes: Any) -> _T:
    """``dataclasses.replace`` for the core's own slotted dataclasses, without the
    per-call field introspection (it was half the cost of an event)."""
    cls = type(obj)
    new: _T = cls.__new__(cls)
    for name in cls.__slots__:  # type: ignore[attr-defined]
        _setattr(new, name, changes[name] if name in changes else getattr(obj, name))
    return new


@_handles(ev.SagaStarted)
def _on_started(s: SagaState, e: ev.SagaStarted) -> SagaState:
    return s  # a duplicate start changes nothing


def _put(s: SagaState, name: str, st: StepState, **changes: Any) -> SagaState:
    return replace(s, steps={**s.steps, name: st}, **changes)


def _put_comp(s: SagaState, name: str, st: StepState, **changes: Any) -> SagaState:
    return replace(s, compensations={**s.compensations, name: st}, **changes)


@_handles(cm.ExecuteStep)
def _on_execute(s: SagaState, c: cm.ExecuteStep) -> SagaState:
    previous = s.steps.get(c.step)
    round_start = previous.round_start if previous is not None else 1
    return _put(s, c.step, StepState(Phase.RUNNING, c.attempt, round_start, command=c))


@_handles(cm.CompensateStep)
def _on_compensate(s: SagaState, c: cm.CompensateStep) -> SagaState:
    previous = s.compensations.get(c.step)
    round_start = previous.round_start if previous is not None else 1
    return _put_comp(s, c.step, StepState(Phase.RUNNING, c.attempt, round_start, command=c))


def _in_flight(st: StepState | None, attempt: int) -> bool:
    return st is not None and st.phase is Phase.RUNNING and st.attempt == attempt


@_handles(ev.StepSucceeded)
def _on_step_succeeded(s: SagaState, e: ev.StepSucceeded) -> SagaState:
    st = s.steps.get(e.step)
    if st is None or not _in_flight(st, e.attempt):
        return s
    done = replace(st, phase=Phase.SUCCEEDED, command=None, output=e.output)
    return _put(s, e.step, done, last_event_at=e.now)


def _failed(st: StepState, error: str, retryable: bool, now: float) -> StepState:
    return replace(
        st,
        phase=Phase.ATTEMPT_FAILED,
        command=None,
        error=error,
        retryable=retryable,
        failed_at=now,
    )


def _timeout_reason(st: StepState) -> str:
    command = st.command
    timeout = getattr(command, "timeout", None)
    return f"attempt {st.attempt} timed out after {timeout}s"


@_handles(ev.StepFailed)
def _on_step_failed(s: SagaState, e: ev.StepFailed) -> SagaState:
    st = s.steps.get(e.step)
    if st is None or not _in_flight(st, e.attempt):
        return s
    return _put(s, e.step, _failed(st, e.error, e.retryable, e.now), last_event_at=e.now)


@_handles(ev.StepTimedOut)
def _on_step_timed_out(s: SagaState, e: ev.StepTimedOut) -> SagaState:
    st = s.steps.get(e.step)
    if st is None or not _in_flight(st, e.attempt):
        return s
    return _put(s, e.step, _failed(st, _timeout_reason(st), True, e.now), last_event_at=e.now)


@_handles(ev.CompensationSucceeded)
def _on_comp_succeeded(s: SagaState, e: ev.CompensationSucceeded) -> SagaState:
    st = s.compensations.get(e.step)
    if st is None or not _in_flight(st, e.attempt):
        return s
    done = replace(st, phase=Phase.SUCCEEDED, command=None)
    return _put_comp(s, e.step, done, last_event_at=e.now)


@_handles(ev.CompensationFailed)
def _on_comp_failed(s: SagaState, e: ev.CompensationFailed) -> SagaState:
    st = s.compensations.get(e.step)
    if st is None or not _in_flight(st, e.attempt):
        return s
    return _put_comp(s, e.step, _failed(st, e.error, e.retryable, e.now), last_event_at=e.now)


@_handles(ev.CompensationTimedOut)
def _on_comp_timed_out(s: SagaState, e: ev.CompensationTimedOut) -> SagaState:
    st = s.compensations.get(e.step)
    if st is None or not _in_flight(st, e.attempt):
        return s
    failed = _failed(st, _timeout_reason(st), True, e.now)
    return _put_comp(s, e.step, failed, last_event_at=e.now)


@_handles(cm.ScheduleRetry)
def _on_schedule_retry(s: SagaState, c: cm.ScheduleRetry) -> SagaState:
    table = s.compensations if c.compensation else s.steps
    st = table[c.step]
    waiting = replace(st, phase=Phase.WAITING, command=c)
    return _put_comp(s, c.step, waiting) if c.compensation else _put(s, c.step, waiting)


@_handles(ev.TimerFired)
def _on_timer_fired(s: SagaState, e: ev.TimerFired) -> SagaState:
    table = s.compensations if e.compensation else s.steps
    st = table.get(e.step)
    if st is None or st.phase is not Phase.WAITING or st.attempt + 1 != e.attempt:
        return s
    if not e.compensation and s.aborted:
        return s  # no new step starts once aborted (rule 1); the timer is moot
    ready = replace(st, phase=Phase.READY, command=None)
    if e.compensation:
        return _put_comp(s, e.step, ready, last_event_at=e.now)
    return _put(s, e.step, ready, last_event_at=e.now)


def _gave_up(st: StepState) -> StepState:
    return replace(st, phase=Phase.GAVE_UP, command=None)


@_handles(cm.AbortSaga)
def _on_abort(s: SagaState, c: cm.AbortSaga) -> SagaState:
    st = s.steps[c.step]
    failure = Failure(c.step, c.attempt, c.reason, st.failed_at or s.last_event_at)
    status = SagaStatus.COMPENSATING if c.compensate else SagaStatus.RUNNING
    return _put(s, c.step, _gave_up(st), aborted=True, failure=failure, status=status)


@_handles(cm.GiveUpCompensation)
def _on_give_up_compensation(s: SagaState, c: cm.GiveUpCompensation) -> SagaState:
    st = s.compensations[c.step]
    failure = Failure(c.step, c.attempt, c.reason, st.failed_at or s.last_event_at)
    return _put_comp(s, c.step, _gave_up(st), compensation_failure=failure)


@_handles(cm.FinishSaga)
def _on_finish(s: SagaState, c: cm.FinishSaga) -> SagaState:
    output = c.output if c.status is SagaStatus.COMPLETED else None
    return replace(s, status=c.status, output=output)


@_handles(ev.ResumeRequested)
def _on_resume(s: SagaState, e: ev.ResumeRequested) -> SagaState:
    if s.status is not SagaStatus.FAILED:
        return s

    def again(st: StepState) -> StepState:
        # A new round: the retry budget counts from the next attempt.
        return replace(st, phase=Phase.READY, round_start=st.attempt + 1, command=None)

    if s.compensation_failure is not None:
        comps = {n: again(c) if c.phase is Phase.GAVE_UP else c for n, c in s.compensations.items()}
        return replace(
            s,
            status=SagaStatus.COMPENSATING,
            compensations=comps,
            compensation_failure=None,
            resumes=s.resumes + 1,
            last_event_at=e.now,
        )
    steps = {
        n: st if st.phase is Phase.SUCCEEDED or st.phase is Phase.RUNNING else again(st)
        for n, st in s.steps.items()
    }
    return replace(
        s,
        status=SagaStatus.RUNNING,
        steps=steps,
        aborted=False,
        failure=None,
        resumes=s.resumes + 1,
        last_event_at=e.now,
    )
