"""Workflow definitions: the decorator API, from_graph, loading, validation, hashing."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

import orchestrator
from orchestrator import (
    RetryPolicy,
    StepKind,
    StepResultError,
    Workflow,
    WorkflowBuilder,
    WorkflowDefinitionError,
    call_step,
    load_workflows,
)


def noop(data: dict[str, Any]) -> None:
    return None


def undo(data: dict[str, Any]) -> None:
    return None


def three_step_builder() -> WorkflowBuilder:
    wf = WorkflowBuilder("shop")

    def release(data: dict[str, Any]) -> None: ...

    @wf.step(compensation=release, timeout=5)
    def reserve(data: dict[str, Any]) -> dict[str, Any]:
        return {"r": 1}

    @wf.step(after=[reserve], kind="pivot", retry=RetryPolicy(max_attempts=1))
    async def charge(data: dict[str, Any]) -> dict[str, Any]:
        return {"c": 2}

    @wf.step(after="charge", kind=StepKind.RETRIABLE)
    def ship(data: dict[str, Any]) -> None: ...

    return wf


def test_builder_makes_a_graph_with_next_and_compensation_edges() -> None:
    wf = three_step_builder().build()
    assert wf.order == ("reserve", "charge", "ship")
    assert wf.graph.edges["reserve", "charge"]["kind"] == "next"
    assert wf.graph.edges["charge", "ship"]["kind"] == "next"
    assert wf.graph.edges["reserve", "release"]["kind"] == "compensation"
    assert wf.graph.nodes["release"]["role"] == "compensation"
    assert wf.steps["charge"].kind is StepKind.PIVOT
    assert wf.steps["charge"].retry.max_attempts == 1
    assert wf.steps["reserve"].timeout == 5.0
    assert wf.steps["reserve"].compensation is not None
    assert wf.pivots == ("charge",)
    assert wf.ancestors["ship"] == ("reserve", "charge")
    assert wf.descendants["reserve"] == {"charge", "ship"}
    with pytest.raises(nx.NetworkXError):
        wf.graph.add_node("x")  # frozen


def test_compensation_decorator_after_the_step() -> None:
    wf = WorkflowBuilder("w")

    @wf.step
    def a(data: dict[str, Any]) -> None: ...

    @wf.compensation(a)
    def undo_a(data: dict[str, Any]) -> None: ...

    built = wf.build()
    spec = built.steps["a"].compensation
    assert spec is not None and spec.name == "undo_a" and spec.action is undo_a


def test_from_graph_accepts_a_hand_built_graph_and_matches_the_builder() -> None:
    g = nx.DiGraph()
    g.add_node("reserve", action=noop, timeout=5)
    g.add_node("release", role="compensation", action=undo)
    g.add_edge("reserve", "release")  # kind inferred from the target's role
    g.add_node("charge", action=noop, kind="pivot", retry=RetryPolicy(max_attempts=1))
    g.add_node("ship", action=noop, kind="retriable")
    g.add_edge("reserve", "charge")
    g.add_edge("charge", "ship", kind="next")
    by_hand = Workflow.from_graph("shop", g)
    # Same names, deps, kinds and policies: the same definition hash as the builder's.
    assert by_hand.definition_hash == three_step_builder().build().definition_hash


def graph_of(**nodes: dict[str, Any]) -> Any:
    g = nx.DiGraph()
    for name, attrs in nodes.items():
        g.add_node(name, **{"action": noop, **attrs})
    return g


@pytest.mark.parametrize(
    ("build", "step", "fragment"),
    [
        pytest.param(
            lambda g: (g.add_edge("a", "b"), g.add_edge("b", "a")),
            "a",
            "cycle",
            id="cycle",
        ),
        pytest.param(lambda g: g.add_edge("ghost", "a"), "a", "unknown step 'ghost'", id="unknown"),
    ],
)
def test_graph_errors_name_the_step(build: Any, step: str, fragment: str) -> None:
    g = graph_of(a={"kind": "retriable"}, b={"kind": "retriable"})
    build(g)
    with pytest.raises(WorkflowDefinitionError) as info:
        Workflow.from_graph("w", g, source="wf.py")
    assert info.value.step == step
    assert info.value.file == "wf.py"
    assert fragment in str(info.value) and "wf.py" in str(info.value)


def test_compensatable_step_without_compensation_is_refused() -> None:
    with pytest.raises(WorkflowDefinitionError, match="no compensation") as info:
        Workflow.from_graph("w", graph_of(a={}))
    assert info.value.step == "a"


def test_pivot_with_a_compensation_is_refused() -> None:
    g = graph_of(p={"kind": "pivot"}, undo_p={"role": "compensation"})
    g.add_edge("p", "undo_p")
    with pytest.raises(WorkflowDefinitionError, match="never compensated") as info:
        Workflow.from_graph("w", g)
    assert info.value.step == "p"


def test_compensatable_step_after_a_pivot_is_refused() -> None:
    wf = WorkflowBuilder("w")

    @wf.step(kind="pivot")
    def pay(data: dict[str, Any]) -> None: ...

    @wf.step(after=[pay], compensation=undo)
    def reserve(data: dict[str, Any]) -> None: ...

    with pytest.raises(WorkflowDefinitionError, match="after pivot 'pay'") as info:
        wf.build()
    assert info.value.step == "reserve"


def test_compensatable_step_in_parallel_with_a_pivot_is_refused() -> None:
    g = graph_of(pay={"kind": "pivot"}, reserve={}, undo_reserve={"role": "compensation"})
    g.add_edge("reserve", "undo_reserve")
    with pytest.raises(WorkflowDefinitionError, match="in parallel with pivot 'pay'") as info:
        Workflow.from_graph("w", g)
    assert info.value.step == "reserve"


def test_duplicate_step_name_is_refused_at_decoration() -> None:
    wf = WorkflowBuilder("w")
    wf.step(name="a", kind="retriable")(noop)
    with pytest.raises(WorkflowDefinitionError, match="duplicate step name") as info:
        wf.step(name="a", kind="retriable")(undo)
    assert info.value.step == "a"


def test_shared_compensation_function_is_a_duplicate_name() -> None:
    wf = WorkflowBuilder("w")
    wf.step(name="a", compensation=undo)(noop)
    wf.step(name="b", compensation=undo)(noop)
    with pytest.raises(WorkflowDefinitionError, match="duplicate name") as info:
        wf.build()
    assert info.value.step == "b"


def test_unknown_dependency_in_builder_names_the_dependent_step() -> None:
    wf = WorkflowBuilder("w")
    wf.step(name="b", after=["a"], kind="retriable")(noop)
    with pytest.raises(WorkflowDefinitionError, match="unknown step 'a'") as info:
        wf.build()
    assert info.value.step == "b"


@pytest.mark.parametrize(
    ("attrs", "fragment"),
    [
        ({"kind": "sometimes"}, "unknown kind"),
        ({"kind": "retriable", "retry": 3}, "RetryPolicy"),
        ({"kind": "retriable", "timeout": -1}, "timeout"),
        ({"kind": "retriable", "action": "not callable"}, "callable"),
    ],
)
def test_malformed_nodes_are_refused(attrs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(WorkflowDefinitionError, match=fragment):
        Workflow.from_graph("w", graph_of(a=attrs))


def test_step_names_cannot_hold_the_id_separator() -> None:
    with pytest.raises(WorkflowDefinitionError, match="invalid name"):
        Workflow.from_graph("w", graph_of(**{"a:b": {"kind": "retriable"}}))


def test_bad_retry_policy_is_a_definition_error() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    wf = WorkflowBuilder("w")
    with pytest.raises(WorkflowDefinitionError, match="timeout") as info:
        wf.step(name="a", kind="retriable", timeout=0)(noop)
    assert info.value.step == "a"


def test_definition_hash_covers_policies_not_code() -> None:
    base = three_step_builder().build()
    assert base.definition_hash == three_step_builder().build().definition_hash

    same_shape_other_code = WorkflowBuilder("shop")
    same_shape_other_code.step(name="reserve", compensation=_named("release"), timeout=5)(
        lambda d: {"different": True}
    )
    same_shape_other_code.step(
        name="charge", after=["reserve"], kind="pivot", retry=RetryPolicy(max_attempts=1)
    )(noop)
    same_shape_other_code.step(name="ship", after=["charge"], kind="retriable")(undo)
    assert same_shape_other_code.build().definition_hash == base.definition_hash

    other_policy = WorkflowBuilder("shop")
    other_policy.step(name="reserve", compensation=_named("release"), timeout=6)(noop)
    other_policy.step(name="charge", after=["reserve"], kind="pivot")(noop)
    other_policy.step(name="ship", after=["charge"], kind="retriable")(noop)
    assert other_policy.build().definition_hash != base.definition_hash


def _named(name: str) -> Any:
    def fn(data: dict[str, Any]) -> None: ...

    fn.__name__ = name
    return fn


# --- loading by file path -------------------------------------------------------------

GOOD = """
from orchestrator import WorkflowBuilder

flow = WorkflowBuilder("{name}")

def undo_a(data): pass

@flow.step(compensation=undo_a)
def a(data):
    return {{"a": 1}}

@flow.step(after=[a], kind="retriable")
def b(data):
    return {{"b": data["a"] + 1}}
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def test_load_workflows_reads_every_file_by_path(tmp_path: Path) -> None:
    write(tmp_path, "one.py", GOOD.format(name="one"))
    write(tmp_path, "two.py", GOOD.format(name="two") + "\nbuilt = flow.build()\n")
    write(tmp_path, "_helpers.py", "raise RuntimeError('never imported')\n")
    loaded = load_workflows(tmp_path)
    assert list(loaded) == ["one", "two"]
    assert loaded["one"].source == str(tmp_path / "one.py")
    assert loaded["two"].order == ("a", "b")


@pytest.mark.parametrize(
    ("body", "step", "fragment"),
    [
        ("@flow.step(after=['nope'], kind='retriable')\ndef c(data): pass\n", "c", "unknown"),
        ("@flow.step\ndef c(data): pass\n", "c", "no compensation"),
        ("@flow.step(kind='retriable')\ndef a(data): pass\n", "a", "duplicate step name"),
        (
            "@flow.step(after=[a], kind='pivot')\ndef p(data): pass\n"
            "@flow.step(after=[p], compensation=lambda d: None)\ndef c(data): pass\n",
            "c",
            "pivot",
        ),
    ],
)
def test_load_errors_name_the_file_and_the_step(
    tmp_path: Path, body: str, step: str, fragment: str
) -> None:
    path = write(tmp_path, "broken.py", GOOD.format(name="broken") + body)
    with pytest.raises(WorkflowDefinitionError) as info:
        load_workflows(tmp_path)
    assert info.value.file == str(path)
    assert info.value.step == step
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_load_cycle_names_file_and_step(tmp_path: Path) -> None:
    text = """
    from orchestrator import WorkflowBuilder
    flow = WorkflowBuilder("loop")
    flow.step(name="a", after=["b"], kind="retriable")(lambda d: None)
    flow.step(name="b", after=["a"], kind="retriable")(lambda d: None)
    """
    path = write(tmp_path, "loop.py", text)
    with pytest.raises(WorkflowDefinitionError, match="cycle") as info:
        load_workflows(tmp_path)
    assert info.value.file == str(path) and info.value.step in {"a", "b"}


def test_duplicate_workflow_names_across_files(tmp_path: Path) -> None:
    write(tmp_path, "a.py", GOOD.format(name="same"))
    second = write(tmp_path, "b.py", GOOD.format(name="same"))
    with pytest.raises(WorkflowDefinitionError, match="duplicate workflow name") as info:
        load_workflows(tmp_path)
    assert info.value.file == str(second)
    assert str(tmp_path / "a.py") in str(info.value)


def test_a_file_that_fails_to_import_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.py", "import not_a_module_anywhere\n")
    with pytest.raises(WorkflowDefinitionError, match="failed to import") as info:
        load_workflows(tmp_path)
    assert info.value.file == str(path)


# --- calling step functions -----------------------------------------------------------


async def test_call_step_runs_sync_and_async_functions() -> None:
    def sync_step(data: dict[str, Any]) -> dict[str, Any]:
        return {"double": data["x"] * 2}

    async def async_step(data: dict[str, Any]) -> dict[str, Any]:
        return {"triple": data["x"] * 3}

    assert await call_step(sync_step, {"x": 2}) == {"double": 4}
    assert await call_step(async_step, {"x": 2}) == {"triple": 6}
    assert await call_step(noop, {"x": 2}) == {}


async def test_call_step_refuses_non_mapping_results_and_protects_the_input() -> None:
    def mutates(data: dict[str, Any]) -> list[int]:
        data["items"].append(99)
        return [1]

    data = {"items": [1]}
    with pytest.raises(StepResultError) as info:
        await call_step(mutates, data)
    assert info.value.retryable is False
    assert data == {"items": [1]}


def test_exported_names_are_sorted_and_present() -> None:
    names = orchestrator.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(orchestrator, name), name
    core = {
        "WorkflowBuilder",
        "Workflow",
        "load_workflows",
        "evolve",
        "react",
        "decide",
        "resume",
        "is_terminal",
        "call_step",
        "RetryPolicy",
    }
    assert core <= set(names)
    # Internals stay out: the codec and the type registry are the core's business.
    assert not {"encode", "decode", "TYPE_NAMES", "Record", "Storable", "Message"} & set(names)


def test_a_validated_input_keeps_the_model_s_aliases() -> None:
    from pydantic import BaseModel, ConfigDict, Field

    class Order(BaseModel):
        model_config = ConfigDict(populate_by_name=True)
        order_id: str = Field(alias="orderId")

    wf = WorkflowBuilder("aliased", input=Order)
    wf.step(name="only", kind="retriable")(lambda data: {})
    built = wf.build()
    assert built.validate_input({"orderId": "o-1"}) == {"orderId": "o-1"}
    assert built.validate_input(built.validate_input({"orderId": "o-1"})) == {"orderId": "o-1"}
