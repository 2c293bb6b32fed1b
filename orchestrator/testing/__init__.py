"""Test helpers for workflows: given/when/then, hypothesis strategies, a simulator.

Short unit tests::

    from orchestrator.testing import executes, given, started, succeeded

    given(wf, started(wf, {"x": 1})).when(succeeded("a")).then(executes("b"))

Property tests of your own workflow::

    from hypothesis import given as hgiven, strategies as st
    from orchestrator.testing import check_invariants, simulate

    @hgiven(st.data())
    def test_my_workflow_keeps_the_saga_rules(data):
        check_invariants(simulate(my_workflow, data))

Needs ``hypothesis`` (``pip install sagaflow[testing]``); the core does not.
"""

from __future__ import annotations

from orchestrator.testing.gwt import (
    SAGA_ID,
    Expect,
    Given,
    Then,
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
from orchestrator.testing.invariants import check_invariants, history
from orchestrator.testing.simulation import Chooser, Trace, simulate
from orchestrator.testing.strategies import (
    json_objects,
    json_values,
    messages,
    retry_policies,
    workflows,
)

__all__ = [
    "SAGA_ID",
    "Chooser",
    "Expect",
    "Given",
    "Then",
    "Trace",
    "aborts",
    "check_invariants",
    "compensated",
    "compensates",
    "compensation_failed",
    "compensation_timed_out",
    "executes",
    "failed",
    "finishes",
    "given",
    "gives_up",
    "history",
    "json_objects",
    "json_values",
    "messages",
    "resume_requested",
    "retries",
    "retry_policies",
    "simulate",
    "started",
    "succeeded",
    "timed_out",
    "timer_fired",
    "workflows",
]
