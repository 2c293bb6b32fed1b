"""The pure saga core: ``evolve``, ``decide``/``react``, ``resume``, ``is_terminal``.

No I/O, no clock, no randomness: time arrives as ``now`` on the events, retry jitter
is derived from the idempotency key. The same log always folds to the same state and
the same events always give the same commands.

How a shell uses it::

    state = fold(records)                        # replay the saga's stream
    state, commands = react(workflow, state, event)
    append([event, *commands], expected_version) # the log is the outbox
    execute(commands)                            # publish / start timers

``evolve`` folds commands as well as events: the commands a saga issued are part of its
state (they are what is in flight), so ``fold(log)`` equals the live state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, TypeVar

from orchestrator.core.commands import (
    AbortSaga,
    Command,
    CompensateStep,
    ExecuteStep,
    FinishSaga,
    GiveUpCompensation,
    ScheduleRetry,
    StartSaga,
)
from orchestrator.core.decide import needed as _needed
from orchestrator.core.events import (
    CompensationFailed,
    CompensationSucceeded,
    CompensationTimedOut,
    Event,
    ResumeRequested,
    SagaStarted,
    StepFailed,
    StepSucceeded,
    StepTimedOut,
    TimerFired,
)
from orchestrator.core.state import TERMINAL, Failure, Phase, SagaState, SagaStatus, StepState
from orchestrator.core.workflow import Workflow
from orchestrator.errors import SagaStateError

__all__ = [
    "Message",
    "Reaction",
    "decide",
    "evolve",
    "fold",
    "is_terminal",
    "react",
    "resume",
    "start",
]

Message = Event | Command
"""What a saga's log holds (besides the client's ``StartSaga``)."""

# Fixed points are reached in two or three passes (decide → abort → compensate/finish);
# the bound only turns a bug into an error instead of a hang.
_MAX_PASSES = 16


class Reaction(NamedTuple):
    """What ``react`` returns: the state after the event and the new commands (already
    folded into ``state``), and the commands to record and execute."""

    state: SagaState
    commands: tuple[Command, ...]


def start(workflow: Workflow, saga_id: str, input: Mapping[str, Any], now: float) -> SagaStarted:
    """The ``SagaStarted`` event for a new saga of ``workflow`` (records its hash)."""
    return SagaStarted(
        saga_id=saga_id,
        workflow=workflow.name,
        input=dict(input),
        definition_hash=workflow.definition_hash,
        now=now,
    )


def is_terminal(state: SagaState | None) -> bool:
    """Completed, compensated or failed: nothing is in flight and nothing will be."""
    return state is not None and state.status in TERMINAL


def evolve(state: SagaState | None, message: Message) -> SagaState:
    """The state after one event or command. Pure; no workflow needed.

    A message that changes nothing (a duplicate or late outcome, a timer for an attempt
    that is not waiting, a resume of a saga that has not failed) returns ``state``
    itself, so ``evolve(s, m) is s`` tells the shell it was a no-op.
    Raises ``SagaStateError`` for another saga's message or a message before
    ``SagaStarted``.
    """
    if state is None:
        if isinstance(message, SagaStarted):
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


def fold(
    messages: Iterable[Message | StartSaga], state: SagaState | None = None
) -> SagaState | None:
    """``evolve`` over ``messages`` (a saga's log); ``StartSaga`` requests are skipped.
    ``None`` if the log holds no ``SagaStarted``."""
    for message in messages:
        if isinstance(message, StartSaga):
            continue
        state = evolve(state, message)
    return state


def react(workflow: Workflow, state: SagaState | None, event: Event) -> Reaction:
    """Apply ``event`` and decide: the new state and the commands it calls for.

    ``state`` is the saga before the event (``None`` for ``SagaStarted``). An event
    that changes nothing gives no commands and the same state object.
    """
    if state is None and isinstance(event, SagaStarted) and event.workflow != workflow.name:
        raise SagaStateError(
            f"saga {event.saga_id!r} is a {event.workflow!r}, not a {workflow.name!r}"
        )
    if state is not None and state.workflow != workflow.name:
        raise SagaStateError(
            f"saga {state.saga_id!r} is a {state.workflow!r}, not a {workflow.name!r}"
        )
    after = evolve(state, event)
    if after is state:
        return Reaction(after, ())
    issued: list[Command] = []
    for _ in range(_MAX_PASSES):
        commands = _needed(workflow, after)
        again = False
        for command in commands:
            after = evolve(after, command)
            # Only a decision to stop going forward (or backward) can make more commands
            # needed at once; effects just put things in flight.
            again = again or isinstance(command, AbortSaga | GiveUpCompensation)
        issued.extend(commands)
        if not again:
            return Reaction(after, tuple(issued))
    raise AssertionError(f"no fixed point after {_MAX_PASSES} passes")  # pragma: no cover


def decide(workflow: Workflow, state: SagaState | None, event: Event) -> tuple[Command, ...]:
    """The commands ``event`` calls for, given the saga before it (see ``react``)."""
    return react(workflow, state, event).commands


def resume(workflow: Workflow, state: SagaState) -> tuple[Command, ...]:
    """After a crash: every command that is out with no recorded outcome, unchanged
    (same id, so the same idempotency key): executions and compensations in flight,
    and retry timers not fired yet (a forward step's timer is dropped once the saga has
    aborted: it would start nothing). Empty for a terminal saga.
    """
    if state.workflow != workflow.name:
        raise SagaStateError(
            f"saga {state.saga_id!r} is a {state.workflow!r}, not a {workflow.name!r}"
        )
    if state.status in TERMINAL:
        return ()
    out: list[Command] = []
    for name in workflow.order:
        st = state.steps.get(name)
        if st is None or st.command is None:
            continue
        if st.phase is Phase.RUNNING or (st.phase is Phase.WAITING and not state.aborted):
            out.append(st.command)
    for name in workflow.compensation_order():
        st = state.compensations.get(name)
        if st is not None and st.command is not None:
            out.append(st.command)
    return tuple(out)


# --- evolve ---------------------------------------------------------------------------

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


def _on_started(s: SagaState, e: SagaStarted) -> SagaState:
    return s  # a duplicate start changes nothing


def _put(s: SagaState, name: str, st: StepState, **changes: Any) -> SagaState:
    return replace(s, steps={**s.steps, name: st}, **changes)


def _put_comp(s: SagaState, name: str, st: StepState, **changes: Any) -> SagaState:
    return replace(s, compensations={**s.compensations, name: st}, **changes)


def _on_execute(s: SagaState, c: ExecuteStep) -> SagaState:
    previous = s.steps.get(c.step)
    round_start = previous.round_start if previous is not None else 1
    return _put(s, c.step, StepState(Phase.RUNNING, c.attempt, round_start, command=c))


def _on_compensate(s: SagaState, c: CompensateStep) -> SagaState:
    previous = s.compensations.get(c.step)
    round_start = previous.round_start if previous is not None else 1
    return _put_comp(s, c.step, StepState(Phase.RUNNING, c.attempt, round_start, command=c))


def _in_flight(st: StepState | None, attempt: int) -> bool:
    return st is not None and st.phase is Phase.RUNNING and st.attempt == attempt


def _on_step_succeeded(s: SagaState, e: StepSucceeded) -> SagaState:
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


def _on_step_failed(s: SagaState, e: StepFailed) -> SagaState:
    st = s.steps.get(e.step)
    if st is None or not _in_flight(st, e.attempt):
        return s
    return _put(s, e.step, _failed(st, e.error, e.retryable, e.now), last_event_at=e.now)


def _on_step_timed_out(s: SagaState, e: StepTimedOut) -> SagaState:
    st = s.steps.get(e.step)
    if st is None or not _in_flight(st, e.attempt):
        return s
    return _put(s, e.step, _failed(st, _timeout_reason(st), True, e.now), last_event_at=e.now)


def _on_comp_succeeded(s: SagaState, e: CompensationSucceeded) -> SagaState:
    st = s.compensations.get(e.step)
    if st is None or not _in_flight(st, e.attempt):
        return s
    done = replace(st, phase=Phase.SUCCEEDED, command=None)
    return _put_comp(s, e.step, done, last_event_at=e.now)


def _on_comp_failed(s: SagaState, e: CompensationFailed) -> SagaState:
    st = s.compensations.get(e.step)
    if st is None or not _in_flight(st, e.attempt):
        return s
    return _put_comp(s, e.step, _failed(st, e.error, e.retryable, e.now), last_event_at=e.now)


def _on_comp_timed_out(s: SagaState, e: CompensationTimedOut) -> SagaState:
    st = s.compensations.get(e.step)
    if st is None or not _in_flight(st, e.attempt):
        return s
    failed = _failed(st, _timeout_reason(st), True, e.now)
    return _put_comp(s, e.step, failed, last_event_at=e.now)


def _on_schedule_retry(s: SagaState, c: ScheduleRetry) -> SagaState:
    table = s.compensations if c.compensation else s.steps
    st = table[c.step]
    waiting = replace(st, phase=Phase.WAITING, command=c)
    return _put_comp(s, c.step, waiting) if c.compensation else _put(s, c.step, waiting)


def _on_timer_fired(s: SagaState, e: TimerFired) -> SagaState:
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


def _on_abort(s: SagaState, c: AbortSaga) -> SagaState:
    st = s.steps[c.step]
    failure = Failure(c.step, c.attempt, c.reason, st.failed_at or s.last_event_at)
    status = SagaStatus.COMPENSATING if c.compensate else SagaStatus.RUNNING
    return _put(s, c.step, _gave_up(st), aborted=True, failure=failure, status=status)


def _on_give_up_compensation(s: SagaState, c: GiveUpCompensation) -> SagaState:
    st = s.compensations[c.step]
    failure = Failure(c.step, c.attempt, c.reason, st.failed_at or s.last_event_at)
    return _put_comp(s, c.step, _gave_up(st), compensation_failure=failure)


def _on_finish(s: SagaState, c: FinishSaga) -> SagaState:
    output = c.output if c.status is SagaStatus.COMPLETED else None
    return replace(s, status=c.status, output=output)


def _on_resume(s: SagaState, e: ResumeRequested) -> SagaState:
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


_HANDLERS: dict[type, Callable[[SagaState, Any], SagaState]] = {
    SagaStarted: _on_started,
    StepSucceeded: _on_step_succeeded,
    StepFailed: _on_step_failed,
    StepTimedOut: _on_step_timed_out,
    CompensationSucceeded: _on_comp_succeeded,
    CompensationFailed: _on_comp_failed,
    CompensationTimedOut: _on_comp_timed_out,
    TimerFired: _on_timer_fired,
    ResumeRequested: _on_resume,
    ExecuteStep: _on_execute,
    CompensateStep: _on_compensate,
    ScheduleRetry: _on_schedule_retry,
    AbortSaga: _on_abort,
    GiveUpCompensation: _on_give_up_compensation,
    FinishSaga: _on_finish,
}
