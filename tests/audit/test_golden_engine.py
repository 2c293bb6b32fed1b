"""Golden histories recorded from real Engine runs (tests/audit/record_golden.py), replayed
against today's workflow definitions: a change that would decide an old saga differently,
or no longer read its records, fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import Workflow, load_workflows
from orchestrator.audit import EXIT_DIVERGED, EXIT_OK, check_saga
from tests.audit.helpers import GOLDEN, ROOT, read_jsonl, run_chain_snippet
from tests.audit.record_golden import CASES, variant

WORKFLOWS = load_workflows(ROOT / "workflows")
FILES = sorted(GOLDEN.glob("*.jsonl"))


def test_every_case_is_recorded_and_they_cover_both_examples_and_every_ending() -> None:
    assert sorted(p.stem for p in FILES) == sorted(CASES)
    covered = {(c.workflow, c.status) for c in CASES.values()}
    for workflow in ("esg_report", "order_fulfilment"):
        for status in ("completed", "compensated", "failed"):
            assert (workflow, status) in covered


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_a_golden_history_replays_under_todays_definition(path: Path) -> None:
    case, records = CASES[path.stem], read_jsonl(path)
    assert records[0].type == "saga.start", "recorded through the engine: the request first"
    assert all(r.metadata.get("saga_id") == path.stem for r in records)
    audit = check_saga(path.stem, records, WORKFLOWS, verify=True)
    assert audit.chain is not None and audit.chain.ok, audit.chain
    assert audit.divergence is None, audit.divergence and audit.divergence.describe()
    assert not audit.definition_changed and audit.exit_code == EXIT_OK
    assert audit.state is not None and audit.state.status.value == case.status
    assert audit.state.workflow == case.workflow


@pytest.mark.parametrize("path", FILES[:2], ids=lambda p: p.stem)
def test_the_standard_library_snippet_verifies_a_golden_export(path: Path, tmp_path: Path) -> None:
    done = run_chain_snippet(tmp_path, path)
    records = read_jsonl(path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        f"OK {len(records)} records in 1 streams",
        f"head saga-{path.stem} version {len(records)} {records[-1].hash}",
    ]


def _with_timeout(wf: Workflow, step: str, seconds: float) -> Workflow:
    import networkx as nx

    graph = nx.DiGraph(wf.graph)
    graph.nodes[step]["timeout"] = seconds
    return Workflow.from_graph(wf.name, graph)


def test_a_changed_definition_is_said_plainly_and_the_first_differing_record_named() -> None:
    records = read_jsonl(GOLDEN / "order_completed.jsonl")
    order = WORKFLOWS["order_fulfilment"]
    changed = _with_timeout(order, "charge_payment", 99.0)
    audit = check_saga("order_completed", records, {order.name: changed}, verify=True)
    assert audit.definition_changed and audit.exit_code == EXIT_DIVERGED
    assert audit.recorded_definition == order.definition_hash
    assert audit.current_definition == changed.definition_hash
    drift = audit.drift_line()
    assert drift is not None and "changed since this saga started" in drift
    assert order.definition_hash in drift and changed.definition_hash in drift
    divergence = audit.divergence
    assert divergence is not None
    charge = next(r for r in records if r.data.get("step") == "charge_payment")
    assert (divergence.version, divergence.position) == (charge.version, charge.position)
    assert divergence.expected is not None and divergence.recorded is not None
    assert divergence.expected["data"]["timeout"] == 99.0
    assert divergence.recorded["data"]["timeout"] == 15.0
    assert divergence.after_version == charge.version - 1  # reserve_stock's success


def test_changed_step_code_with_the_same_definition_is_no_drift() -> None:
    records = read_jsonl(GOLDEN / "esg_completed.jsonl")
    esg = WORKFLOWS["esg_report"]
    refactored = variant(esg, {"publish": lambda data: {"published": True}})
    audit = check_saga("esg_completed", records, {esg.name: refactored}, verify=True)
    assert not audit.definition_changed and audit.exit_code == EXIT_OK
