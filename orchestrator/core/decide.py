"""What a saga needs next, given its workflow and state: the rules of DESIGN.md.

``needed`` is level-triggered: it looks at the whole state and returns the commands that
should be out but are not. ``react`` applies them and asks again until nothing is
needed, so a duplicate event (which changes no state) can never cause a command.

Rules 1-5 (DESIGN.md, "orchestrator: sagas as DAGs"), and where each is enforced:

1. A step failed for good → ``AbortSaga``; once ``state.aborted``, ``_forward`` is not
   consulted, so no step starts and no forward retry runs; steps in flight still record
   their outcome (``evolve``) and block compensation of their ancestors.
2. Only a ``SUCCEEDED`` step gets a ``CompensateStep``, and only while its compensation
   is absent (attempt 1) or ``READY`` (a retry): exactly once per success.
3. ``_can_compensate``: a step's compensation starts only when none of its descendants is
   in flight or succeeded-but-not-compensated. Unrelated branches do not wait.
4. A failed compensation is retried per ``compensation_retry``; when that is exhausted,
   ``GiveUpCompensation``, then the saga ends ``failed`` naming step and reason.
5. Once a pivot has succeeded nothing is compensated: ``AbortSaga(compensate=False)``
   and the saga ends ``failed`` (a person may ``ResumeRequested`` it forward).
"""

from __future__ import annotations

from typing import Any

from orchestrator.core import commands as cm
from orchestrator.core.messages import Command
from orchestrator.core.state import TERMINAL, Phase, SagaState, SagaStatus, StepState
from orchestrator.core.workflow import Workflow

__all__ = ["needed", "step_data"]


def needed(wf: Workflow, s: SagaState) -> list[Command]:
    if s.status in TERMINAL:
        return []
    if not s.aborted:
        return _forward(wf, s)
    return _backward(wf, s)


def step_data(wf: Workflow, s: SagaState, name: str) -> dict[str, Any]:
    """The ``data`` a step receives: the saga input, then the output of each ancestor
    merged over it in topological order (a later step's key wins)."""
    data = dict(s.input)
    steps = s.steps
    for ancestor in wf.ancestors[name]:
        output = steps[ancestor].output
        if output:
            data.update(output)
    return data


def _used(st: StepState) -> int:
    return st.attempt - st.round_start + 1


def _reason(st: StepState, used: int) -> str:
    error = st.error or "failed"
    if not st.retryable:
        return error
    return f"{error} (gave up after {used} attempt{'s' if used != 1 else ''})"


def _pivot_passed(wf: Workflow, s: SagaState) -> str | None:
    for pivot in wf.pivots:
        st = s.steps.get(pivot)
        if st is not None and st.phase is Phase.SUCCEEDED:
            return pivot
    return None


def _forward(wf: Workflow, s: SagaState) -> list[Command]:
    sid = s.saga_id
    steps = s.steps
    # A give-up first and alone: nothing may start in the decision that aborts (rule 1).
    for name in wf.order:
        st = steps.get(name)
        if st is not None and st.phase is Phase.ATTEMPT_FAILED:
            used = _used(st)
            if not (st.retryable and wf.steps[name].retry.allows(used)):
                return [
                    cm.AbortSaga(
                        id=f"{sid}:{name}:{st.attempt}:abort",
                        saga_id=sid,
                        step=name,
                        attempt=st.attempt,
                        reason=_reason(st, used),
                        compensate=_pivot_passed(wf, s) is None,
                    )
                ]
    commands: list[Command] = []
    done = True
    for name in wf.order:
        st = steps.get(name)
        if st is None:
            done = False
            for dep in wf.steps[name].deps:
                dep_st = steps.get(dep)
                if dep_st is None or dep_st.phase is not Phase.SUCCEEDED:
                    break
            else:
                commands.append(_execute(wf, s, name, 1))
        elif st.phase is not Phase.SUCCEEDED:
            done = False
            if st.phase is Phase.READY:
                commands.append(_execute(wf, s, name, st.attempt + 1))
            elif st.phase is Phase.ATTEMPT_FAILED:
                commands.append(_retry(wf, s, name, st, compensation=False))
    if done:
        commands.append(
            cm.FinishSaga(
                id=f"{sid}:finish:{s.resumes}",
                saga_id=sid,
                status=SagaStatus.COMPLETED,
                output=_merged(wf, s),
                step=None,
                reason=None,
            )
        )
    return commands


def _backward(wf: Workflow, s: SagaState) -> list[Command]:
    sid = s.saga_id
    pivot = _pivot_passed(wf, s)
    if s.status is SagaStatus.COMPENSATING:
        give_ups: list[Command] = []
        commands: list[Command] = []
        for name in wf.compensation_order():
            st = s.steps.get(name)
            if st is None or st.phase is not Phase.SUCCEEDED:
                continue
            comp = s.compensations.get(name)
            if comp is None:
                if (
                    s.compensation_failure is None
                    and pivot is None
                    and _can_compensate(wf, s, name)
                ):
                    commands.append(_compensate(wf, s, name, 1))
            elif comp.phase is Phase.READY:
                commands.append(_compensate(wf, s, name, comp.attempt + 1))
            elif comp.phase is Phase.ATTEMPT_FAILED:
                used = _used(comp)
                spec = wf.steps[name].compensation
                assert spec is not None
                if comp.retryable and spec.retry.allows(used):
                    commands.append(_retry(wf, s, name, comp, compensation=True))
                else:
                    give_ups.append(
                        cm.GiveUpCompensation(
                            id=f"{sid}:{name}:compensate:{comp.attempt}:give_up",
                            saga_id=sid,
                            step=name,
                            attempt=comp.attempt,
                            reason=_reason(comp, used),
                        )
                    )
        # Give-ups first and alone, so no compensation starts in the same decision.
        if give_ups or commands:
            return give_ups or commands
    for st in s.steps.values():
        if st.phase is Phase.RUNNING:
            return []
    for comp in s.compensations.values():
        if comp.phase is not Phase.SUCCEEDED and comp.phase is not Phase.GAVE_UP:
            return []
    failure = s.failure
    finish_id = f"{sid}:finish:{s.resumes}"
    if s.compensation_failure is not None:
        cf = s.compensation_failure
        return [
            cm.FinishSaga(
                finish_id, sid, SagaStatus.FAILED, {}, cf.step, f"compensation failed: {cf.reason}"
            )
        ]
    step = failure.step if failure is not None else None
    reason = failure.reason if failure is not None else None
    if pivot is not None:
        why = f"{reason}; nothing compensated: pivot {pivot!r} had succeeded"
        return [cm.FinishSaga(finish_id, sid, SagaStatus.FAILED, {}, step, why)]
    return [cm.FinishSaga(finish_id, sid, SagaStatus.COMPENSATED, {}, step, reason)]


def _can_compensate(wf: Workflow, s: SagaState, name: str) -> bool:
    steps = s.steps
    for d in wf.descendants[name]:
        st = steps.get(d)
        if st is None:
            continue
        if st.phase is Phase.RUNNING:
            return False
        if st.phase is Phase.SUCCEEDED and wf.steps[d].compensation is not None:
            comp = s.compensations.get(d)
            if comp is None or comp.phase is not Phase.SUCCEEDED:
                return False
    return True


def _execute(wf: Workflow, s: SagaState, name: str, attempt: int) -> cm.ExecuteStep:
    timeout = wf.steps[name].timeout
    return cm.ExecuteStep(
        id=f"{s.saga_id}:{name}:{attempt}",
        saga_id=s.saga_id,
        workflow=wf.name,
        step=name,
        attempt=attempt,
        data=step_data(wf, s, name),
        timeout=timeout,
        deadline=None if timeout is None else s.last_event_at + timeout,
    )


def _compensate(wf: Workflow, s: SagaState, name: str, attempt: int) -> cm.CompensateStep:
    spec = wf.steps[name].compensation
    assert spec is not None
    data = step_data(wf, s, name)
    output = s.steps[name].output
    if output:
        data.update(output)
    return cm.CompensateStep(
        id=f"{s.saga_id}:{name}:compensate:{attempt}",
        saga_id=s.saga_id,
        workflow=wf.name,
        step=name,
        attempt=attempt,
        data=data,
        timeout=spec.timeout,
        deadline=None if spec.timeout is None else s.last_event_at + spec.timeout,
    )


def _retry(
    wf: Workflow, s: SagaState, name: str, st: StepState, *, compensation: bool
) -> cm.ScheduleRetry:
    nxt = st.attempt + 1
    if compensation:
        spec = wf.steps[name].compensation
        assert spec is not None
        policy = spec.retry
        key = f"{s.saga_id}:{name}:compensate:{nxt}"
        timer_id = f"{s.saga_id}:{name}:compensate:retry:{nxt}"
    else:
        policy = wf.steps[name].retry
        key = f"{s.saga_id}:{name}:{nxt}"
        timer_id = f"{s.saga_id}:{name}:retry:{nxt}"
    failed_at = st.failed_at if st.failed_at is not None else s.last_event_at
    return cm.ScheduleRetry(
        id=timer_id,
        saga_id=s.saga_id,
        step=name,
        attempt=nxt,
        compensation=compensation,
        due_at=failed_at + policy.delay(_used(st), key),
    )


def _merged(wf: Workflow, s: SagaState) -> dict[str, Any]:
    data = dict(s.input)
    for name in wf.order:
        output = s.steps[name].output
        if output:
            data.update(output)
    return data
