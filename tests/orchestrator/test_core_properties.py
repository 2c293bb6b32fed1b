"""Property tests of the pure core over random workflows and hostile worlds.

``simulate`` delivers outcomes in random order (success, retryable and fatal failures,
timeouts), duplicates and late replies, fires timers, crashes and resumes;
``check_invariants`` asserts DESIGN.md rules 1-5, data flow, retry budgets,
fold(log) == live state, resume == outstanding, and deterministic replay.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator import Command, Event, RetryPolicy, Workflow, react, replay
from orchestrator.core.codec import encode
from orchestrator.testing import check_invariants, simulate, workflows

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(workflows(1, 30), st.data())
def test_random_sagas_keep_the_compensation_rules(wf: Workflow, data: st.DataObject) -> None:
    check_invariants(simulate(wf, data))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workflows(2, 12, pivots=True), st.data())
def test_random_sagas_with_pivots_keep_the_rules(wf: Workflow, data: st.DataObject) -> None:
    check_invariants(simulate(wf, data, chaos_actions=60))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workflows(1, 15), st.data())
def test_same_events_give_the_same_commands(wf: Workflow, data: st.DataObject) -> None:
    trace = simulate(wf, data, chaos_actions=80)
    events = [m for m in trace.log if isinstance(m, Event)]
    first = _decide_all(wf, events)
    second = _decide_all(wf, events)
    assert first == second
    # and the stored form is identical too (what the audit compares)
    assert [encode(c) for c in first] == [encode(c) for c in second]
    assert replay(wf, trace.log).ok


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 50),
    st.text(max_size=20),
    st.floats(0, 10),
    st.floats(1, 4),
    st.floats(0, 100),
    st.floats(0, 1),
)
def test_retry_delay_is_bounded_and_deterministic(
    retry: int, key: str, initial: float, coefficient: float, cap: float, jitter: float
) -> None:
    policy = RetryPolicy(
        initial_interval=initial, backoff_coefficient=coefficient, max_interval=cap, jitter=jitter
    )
    delay = policy.delay(retry, key)
    base = min(cap, initial * coefficient ** (retry - 1))
    assert base * (1 - jitter) - 1e-9 <= delay <= base + 1e-9
    assert delay == policy.delay(retry, key)


def _decide_all(wf: Workflow, events: list[Event]) -> list[Command]:
    state = None
    out: list[Command] = []
    for event in events:
        state, commands = react(wf, state, event)
        out.extend(commands)
    return out
