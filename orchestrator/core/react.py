"""The saga's decisions: ``react`` (evolve, then decide to a fixed point), ``resume``.

No I/O, no clock, no randomness: time arrives as ``now`` on the events, retry jitter
is derived from the idempotency key. The same log always folds to the same state and
the same events always give the same commands.

How a shell uses it::

    state = fold(records)                        # replay the saga's stream
    state, commands = react(workflow, state, event)
    append([event, *commands], expected_version) # the log is the outbox
    execute(commands)                            # publish / start timers

The rules themselves (what is needed next) are in ``decide``; the fold in ``evolve``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from orchestrator.core.commands import AbortSaga, GiveUpCompensation
from orchestrator.core.decide import needed as _needed
from orchestrator.core.events import SagaStarted
from orchestrator.core.evolve import evolve
from orchestrator.core.messages import Command, Event
from orchestrator.core.state import TERMINAL, Phase, SagaState
from orchestrator.core.workflow import Workflow
from orchestrator.errors import SagaStateError

__all__ = ["Reaction", "decide", "is_terminal", "react", "resume", "start"]

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
