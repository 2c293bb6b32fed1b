"""Property tests of the pure core over random workflows and hostile worlds.

``simulate`` delivers outcomes in random order (success, retryable and fatal failures,
start-to-close timeouts), duplicates and late replies, re-sent commands answered twice,
fires timers on time or late, crashes (another engine rebuilds the saga from the log and
re-issues what is outstanding) and resumes; ``check_invariants`` asserts DESIGN.md rules
1-5, data flow, retry budgets, liveness (retries, timers, resumes do happen), fold(log)
== live state, resume == outstanding, and deterministic replay.

Scale, by hypothesis profile (``tests/conftest.py``): ``ci`` (the default) simulates
10,000 sagas in ``test_ten_thousand_sagas_keep_the_rules``, ``deep`` 100,000
(``--hypothesis-profile deep``). Run with ``-s`` to see the shapes drawn.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from orchestrator import Command, Event, RetryPolicy, Workflow, react, replay
from orchestrator.core.codec import encode
from orchestrator.core.policy import StepKind
from orchestrator.testing import check_invariants, history, simulate, workflows

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SAGAS_PER_EXAMPLE = 50
EXAMPLES = {"ci": 200, "deep": 2_000}.get(settings.get_current_profile_name(), 200)
"""Workflows drawn by the bulk test: x50 sagas is 10,000 (ci) or 100,000 (deep)."""


def describe(wf: Workflow) -> None:
    """Count the shapes drawn (``hypothesis.event``: shown with ``-s`` / statistics)."""
    kinds = {spec.kind for spec in wf.steps.values()}
    event(f"shape={wf.name}")
    event(f"pivot={'yes' if StepKind.PIVOT in kinds else 'no'}")
    size = len(wf.steps)
    event(f"steps={'1' if size == 1 else '2-5' if size <= 5 else '6-15' if size <= 15 else '16+'}")


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # the report names the saga
)
@given(workflows(1, 12), st.integers(0, 2**32 - 1))
def test_ten_thousand_sagas_keep_the_rules(wf: Workflow, seed: int) -> None:
    """Fifty sagas of each workflow, every choice from a seeded ``random.Random``: no
    hypothesis draws per choice, so thousands of sagas a second. A failure names the
    rule, the seed and the saga's whole history (no shrinking: the history is the
    report; the tests above shrink)."""
    describe(wf)
    for k in range(SAGAS_PER_EXAMPLE):
        trace = simulate(wf, random.Random(seed * 100 + k), chaos_actions=40 + k)
        try:
            check_invariants(trace)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nsaga {k} of seed {seed}:\n{history(trace)}") from None


@FAST
@given(workflows(1, 30), st.data())
def test_random_sagas_keep_the_compensation_rules(wf: Workflow, data: st.DataObject) -> None:
    describe(wf)
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
    for each in events:
        state, commands = react(wf, state, each)
        out.extend(commands)
    return out
