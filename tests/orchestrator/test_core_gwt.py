"""The pure core, one behaviour per test, in given / when / then form."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import (
    Event,
    ExecuteStep,
    RetryPolicy,
    SagaStateError,
    SagaStatus,
    ScheduleRetry,
    StepSucceeded,
    Workflow,
    WorkflowBuilder,
    evolve,
    fold,
    is_terminal,
    react,
    resume,
)
from orchestrator.testing import (
    SAGA_ID,
    aborts,
    compensated,
    compensates,
    compensation_failed,
    compensation_timed_out,
    executes,
    failed,
    finishes,
    given,
    gives_up,
    resume_requested,
    retries,
    started,
    succeeded,
    timed_out,
    timer_fired,
)

RETRY = RetryPolicy(max_attempts=3, initial_interval=1.0, backoff_coefficient=2.0, jitter=0.5)


def diamond() -> Workflow:
    """a → (b, c) → d, all compensatable; c has a timeout; b's compensation retries twice."""
    wf = WorkflowBuilder("diamond")

    def undo_a(data: dict[str, Any]) -> None: ...
    def undo_b(data: dict[str, Any]) -> None: ...
    def undo_c(data: dict[str, Any]) -> None: ...
    def undo_d(data: dict[str, Any]) -> None: ...

    wf.step(name="a", compensation=undo_a, retry=RETRY)(lambda d: {})
    wf.step(
        name="b",
        after=["a"],
        compensation=undo_b,
        compensation_retry=RetryPolicy(max_attempts=2, initial_interval=3.0, jitter=0),
    )(lambda d: {})
    wf.step(name="c", after=["a"], compensation=undo_c, timeout=7)(lambda d: {})
    wf.step(name="d", after=["b", "c"], compensation=undo_d)(lambda d: {})
    return wf.build()


def shop() -> Workflow:
    wf = WorkflowBuilder("shop")

    def release(data: dict[str, Any]) -> None: ...

    wf.step(name="reserve", compensation=release)(lambda d: {})
    wf.step(name="charge", after=["reserve"], kind="pivot", retry=RetryPolicy(max_attempts=1))(
        lambda d: {}
    )
    wf.step(name="ship", after=["charge"], kind="retriable", retry=RetryPolicy(max_attempts=2))(
        lambda d: {}
    )
    return wf.build()


D = diamond()
S = shop()


def test_start_executes_the_roots_with_the_input_and_ids() -> None:
    given(D).when(started(D, {"x": 1})).then(
        ExecuteStep(f"{SAGA_ID}:a:1", SAGA_ID, "diamond", "a", 1, {"x": 1}, None, None)
    ).then_status("running")


def test_parallel_steps_start_together_with_merged_data() -> None:
    (
        given(D, started(D, {"x": 1}))
        .when(succeeded("a", {"y": 2, "x": 10}, now=4.0))
        .then(
            executes("b", data={"x": 10, "y": 2}, timeout=None, deadline=None),
            executes("c", data={"x": 10, "y": 2}, timeout=7.0, deadline=11.0),
        )
    )


def test_join_waits_for_every_dependency() -> None:
    history = given(D, started(D), succeeded("a"), succeeded("b", {"from": "b"}))
    history.when(succeeded("c", {"from": "c"})).then(executes("d", data={"from": "c"}))
    given(D, started(D), succeeded("a")).when(succeeded("b")).then()


def test_data_merges_ancestor_outputs_in_topological_order() -> None:
    # b and c both write "k"; c comes after b in the deterministic order, so c wins.
    h = given(D, started(D, {"k": "input"}), succeeded("a"), succeeded("c", {"k": "c"}))
    h.when(succeeded("b", {"k": "b"})).then(executes("d", data={"k": "c"}))


def test_all_steps_done_completes_with_the_merged_output() -> None:
    h = given(
        D,
        started(D, {"x": 1}),
        succeeded("a", {"a": 1}),
        succeeded("b", {"b": 2}),
        succeeded("c", {"c": 3}),
    )
    h.when(succeeded("d", {"d": 4})).then(
        finishes("completed", output={"x": 1, "a": 1, "b": 2, "c": 3, "d": 4})
    ).then_status(SagaStatus.COMPLETED)


def test_retryable_failure_schedules_a_deterministic_retry() -> None:
    key = f"{SAGA_ID}:a:2"
    due = 10.0 + RETRY.delay(1, key)
    assert 10.5 <= due <= 11.0  # 1 s shortened by up to 50 % jitter
    t = (
        given(D, started(D))
        .when(failed("a", now=10.0))
        .then(retries("a", 2, due_at=due, id=f"{SAGA_ID}:a:retry:2"))
    )
    # Same events → same command, including the jitter.
    again = given(D, started(D)).when(failed("a", now=10.0))
    assert again.commands == t.commands


def test_timer_fired_starts_the_next_attempt() -> None:
    h = given(D, started(D), failed("a", now=1.0))
    h.when(timer_fired("a", 2, now=3.0)).then(executes("a", 2, id=f"{SAGA_ID}:a:2"))


def test_backoff_grows_between_retries() -> None:
    h = given(D, started(D), failed("a", now=0.0), timer_fired("a", 2, now=1.0))
    t = h.when(failed("a", attempt=2, now=1.0))
    (timer,) = t.commands
    assert isinstance(timer, ScheduleRetry)
    assert 1.0 + 2.0 * 0.5 <= timer.due_at <= 1.0 + 2.0  # second retry: base 2 s


def test_timeout_counts_as_a_failed_attempt() -> None:
    h = given(D, started(D), succeeded("a"))
    h.when(timed_out("c", now=8.0)).then(retries("c", 2)).then_state(
        lambda s: "timed out after 7.0s" in (s.steps["c"].error or "")
    )


def test_duplicate_and_late_replies_change_nothing() -> None:
    h = given(D, started(D), succeeded("a"))
    given(D, started(D), succeeded("a")).when(succeeded("a")).then_nothing()
    h.when(failed("a")).then_nothing()
    # attempt 1 of c timed out and attempt 2 is running: attempt 1's late success is moot
    late = given(D, started(D), succeeded("a"), timed_out("c"), timer_fired("c", 2))
    late.when(succeeded("c", attempt=1)).then_nothing()
    late.when(succeeded("c", attempt=5)).then_nothing()
    h.when(timer_fired("b", 2)).then_nothing()


def test_exhausted_retries_abort_and_compensate_what_succeeded() -> None:
    h = given(D, started(D), succeeded("a"), succeeded("b"), failed("c", retryable=False, now=5.0))
    assert h.state is not None and h.state.status is SagaStatus.COMPENSATING
    assert h.state.failure is not None and h.state.failure.step == "c"
    # b compensates first; a only after b is done (rule 3)
    assert [type(c).__name__ for c in h.history[-2:]] == ["AbortSaga", "CompensateStep"]
    h.when(compensated("b")).then(compensates("a", data={}))


def test_abort_is_decided_alone_and_no_new_step_starts() -> None:
    h = given(D, started(D), succeeded("a"))
    h.when(failed("b", retryable=False)).then(aborts("b", compensate=True))


def test_steps_in_flight_finish_and_are_then_compensated() -> None:
    h = given(D, started(D), succeeded("a"), failed("b", retryable=False))
    # c was in flight when b failed: a's compensation waits for it ...
    t = h.when(succeeded("c", {"c": 1}))
    # ... and since c succeeded, c is compensated (with its own output) before a.
    t.then(compensates("c", data={"c": 1}))
    h.when(failed("c")).then(compensates("a")).then_state(lambda s: s.aborted)


def test_independent_branches_compensate_in_parallel() -> None:
    h = given(D, started(D), succeeded("a"), succeeded("b"), succeeded("c"))
    h.when(failed("d", retryable=False)).then(aborts("d"), compensates("b"), compensates("c"))


def test_never_succeeded_steps_are_not_compensated() -> None:
    h = given(D, started(D))
    h.when(failed("a", retryable=False)).then(
        aborts("a"), finishes("compensated", step="a")
    ).then_status("compensated")


def test_compensation_failure_is_retried_then_fails_the_saga() -> None:
    h = given(
        D,
        started(D),
        succeeded("a"),
        succeeded("b"),
        succeeded("c"),
        failed("d", retryable=False),
        compensated("c"),
        compensation_failed("b", now=1.0),
    )
    assert h.state is not None and h.state.compensations["b"].phase.value == "waiting"
    retry = h.history[-1]
    assert isinstance(retry, ScheduleRetry) and retry.due_at == 4.0  # 3 s, no jitter
    h2 = given(
        D,
        started(D),
        succeeded("a"),
        succeeded("b"),
        succeeded("c"),
        failed("d", retryable=False),
        compensated("c"),
        compensation_failed("b", now=1.0),
        timer_fired("b", 2, compensation=True),
    )
    h2.when(compensation_failed("b", "ledger locked", attempt=2)).then(
        gives_up("b", attempt=2), finishes("failed", step="b")
    )
    h3 = given(
        D,
        started(D),
        succeeded("a"),
        succeeded("b"),
        succeeded("c"),
        failed("d", retryable=False),
        compensated("c"),
        compensation_failed("b", now=1.0),
        timer_fired("b", 2, compensation=True),
        compensation_failed("b", "ledger locked", attempt=2),
    )
    assert h3.state is not None
    assert h3.state.status is SagaStatus.FAILED and is_terminal(h3.state)
    assert h3.state.compensation_failure is not None
    assert h3.state.compensation_failure.step == "b"
    assert "ledger locked" in h3.state.compensation_failure.reason
    # a is never compensated while b's compensation has not finished (rule 3)
    assert "a" not in h3.state.compensations
    # A person resumes: b's compensation runs again, with a fresh retry budget.
    t = h3.when(resume_requested(now=50.0))
    t.then(compensates("b", 3)).then_status("compensating")


def test_resumed_compensation_finishes_the_unwinding() -> None:
    h = given(
        D,
        started(D),
        succeeded("a"),
        failed("b", retryable=False),
        failed("c", retryable=False),
        compensation_failed("a", retryable=False),
        resume_requested(),
    )
    h.when(compensated("a", attempt=2)).then(finishes("compensated", step="b"))


def test_compensation_timeout_is_retried() -> None:
    h = given(D, started(D), succeeded("a"), failed("b", retryable=False), failed("c"))
    h.when(compensation_timed_out("a")).then(retries("a", 2, compensation=True))


def test_resume_of_a_saga_that_did_not_fail_changes_nothing() -> None:
    given(D, started(D)).when(resume_requested()).then_nothing()


def test_pivot_failure_compensates_the_steps_before_it() -> None:
    h = given(S, started(S), succeeded("reserve"))
    h.when(failed("charge", "card declined", retryable=False)).then(
        aborts("charge", compensate=True), compensates("reserve")
    )


def test_after_the_pivot_the_saga_only_goes_forward() -> None:
    h2 = given(
        S,
        started(S),
        succeeded("reserve"),
        succeeded("charge"),
        failed("ship"),
        timer_fired("ship", 2),
    )
    t2 = h2.when(failed("ship", "carrier down", attempt=2))
    t2.then(
        aborts("ship", compensate=False),
        finishes("failed", step="ship"),
    ).then_status("failed")
    assert t2.state.failure is not None and "carrier down" in t2.state.failure.reason
    # nothing is compensated past the pivot (rule 5); a person resumes it forward
    assert not t2.state.compensations
    given(
        S,
        started(S),
        succeeded("reserve"),
        succeeded("charge"),
        failed("ship"),
        timer_fired("ship", 2),
        failed("ship", "carrier down", attempt=2),
    ).when(resume_requested()).then(executes("ship", 3)).then_status("running")


def test_evolve_refuses_messages_of_another_saga_or_before_the_start() -> None:
    with pytest.raises(SagaStateError):
        evolve(None, StepSucceeded(SAGA_ID, "a", 1, {}, 0.0))
    state = evolve(None, started(D))
    with pytest.raises(SagaStateError):
        evolve(state, StepSucceeded("other", "a", 1, {}, 0.0))
    with pytest.raises(SagaStateError):
        react(S, state, succeeded("a"))


def test_fold_of_the_log_equals_the_live_state_and_resume_reissues() -> None:
    log: list[Any] = []
    state = None
    events: list[Event] = [started(D), succeeded("a"), failed("c", now=2.0)]
    for event in events:
        state, commands = react(D, state, event)
        log += [event, *commands]
    assert state is not None
    assert fold(log) == state
    reissued = resume(D, state)
    assert {c.id for c in reissued} == {f"{SAGA_ID}:b:1", f"{SAGA_ID}:c:retry:2"}
    assert set(map(repr, reissued)) <= set(map(repr, log))  # the very same commands


def fork() -> Workflow:
    """a (compensatable) → p (pivot) and a → r (retriable), p and r in parallel."""
    wf = WorkflowBuilder("fork")

    def undo_a(data: dict[str, Any]) -> None: ...

    wf.step(name="a", compensation=undo_a)(lambda d: {})
    wf.step(name="p", after=["a"], kind="pivot")(lambda d: {})
    wf.step(name="r", after=["a"], kind="retriable", retry=RetryPolicy(max_attempts=1))(
        lambda d: {}
    )
    return wf.build()


F = fork()


def test_a_pivot_that_succeeds_while_unwinding_stops_the_unwinding() -> None:
    h = given(F, started(F), succeeded("a"), failed("r", retryable=False))
    # a waits for p (its descendant in flight); p then succeeds: nothing can be undone
    assert h.state is not None and h.state.status is SagaStatus.COMPENSATING
    h.when(succeeded("p")).then(finishes("failed", step="r")).then_state(
        lambda s: not s.compensations
    )
    h.when(failed("p", retryable=False)).then(compensates("a"))


def test_a_forward_timer_after_the_abort_is_moot() -> None:
    h = given(D, started(D), succeeded("a"), failed("b", now=1.0), failed("c", retryable=False))
    assert h.state is not None and h.state.aborted
    # only a's compensation is re-issued, not b's retry timer ...
    assert [c.id for c in resume(D, h.state)] == [f"{SAGA_ID}:a:compensate:1"]
    h.when(timer_fired("b", 2)).then_nothing()  # ... and firing it starts nothing
