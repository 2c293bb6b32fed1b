"""Hypothesis strategies: random valid workflows, JSON values, every message type."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from typing import Any

import networkx as nx
from hypothesis import strategies as st

from orchestrator.core.messages import SagaMessage, message_types
from orchestrator.core.policy import RetryPolicy, StepKind
from orchestrator.core.state import SagaStatus
from orchestrator.core.workflow import Workflow

__all__ = ["SHAPES", "json_objects", "json_values", "messages", "retry_policies", "workflows"]


def _noop(data: dict[str, Any]) -> dict[str, Any]:
    return {}


def retry_policies(max_attempts: int = 3) -> st.SearchStrategy[RetryPolicy]:
    """Small finite retry policies (1 to ``max_attempts`` attempts)."""
    return st.builds(
        RetryPolicy,
        max_attempts=st.integers(1, max_attempts),
        initial_interval=st.sampled_from([0.0, 0.5, 1.0, 5.0]),
        backoff_coefficient=st.sampled_from([1.0, 2.0, 3.0]),
        max_interval=st.sampled_from([10.0, 60.0]),
        jitter=st.sampled_from([0.0, 0.2, 1.0]),
    )


@st.composite
def workflows(
    draw: st.DrawFn,
    min_steps: int = 1,
    max_steps: int = 30,
    *,
    pivots: bool | None = None,
    shape: str | None = None,
    name: str | None = None,
) -> Workflow:
    """Random valid workflows of ``min_steps``..``max_steps`` steps (``s00``, ``s01``…).

    ``shape`` (one of ``SHAPES``; ``None`` draws one) is how the steps depend on each
    other: ``random``, a DAG where each step depends on up to three earlier ones;
    ``chain``, each on the one before (A → retriable R → C: undo C before A);
    ``diamond``, one step, a fan of parallel ones, then one that joins them, repeated;
    ``fanout``, one step then every other in parallel after it. Kinds are random and
    respect the rules: with pivots, every compensatable step comes before (is an
    ancestor of) every pivot; retriable steps go anywhere. ``pivots=None`` draws whether
    there are any. The workflow is named after its shape unless ``name`` is given.
    Built with ``Workflow.from_graph``; the actions do nothing.
    """
    n = draw(st.integers(min_steps, max_steps))
    chosen = shape if shape is not None else draw(st.sampled_from(SHAPES))
    names = [f"s{i:02d}" for i in range(n)]
    deps = draw(_DEPENDENCIES[chosen](n))
    with_pivots = draw(st.booleans()) if pivots is None else pivots
    kinds: list[StepKind] = []
    if with_pivots:
        boundary = draw(st.integers(0, n - 1))
        for i in range(n):
            if i < boundary:
                kinds.append(draw(st.sampled_from([StepKind.COMPENSATABLE, StepKind.RETRIABLE])))
            elif i == boundary:
                kinds.append(StepKind.PIVOT)
            else:
                kinds.append(draw(st.sampled_from([StepKind.RETRIABLE, StepKind.PIVOT])))
        compensatable = {i for i in range(n) if kinds[i] is StepKind.COMPENSATABLE}
        for i in range(n):
            if kinds[i] is StepKind.PIVOT:
                deps[i] |= compensatable
    else:
        for _ in range(n):
            kinds.append(draw(st.sampled_from([StepKind.COMPENSATABLE, StepKind.RETRIABLE])))
    graph = nx.DiGraph()
    for i, step in enumerate(names):
        graph.add_node(
            step,
            action=_noop,
            kind=kinds[i],
            retry=draw(retry_policies()),
            timeout=draw(st.sampled_from([None, 5.0, 30.0])),
        )
        if kinds[i] is StepKind.COMPENSATABLE:
            comp = f"undo_{step}"
            graph.add_node(comp, role="compensation", action=_noop, retry=draw(retry_policies()))
            graph.add_edge(step, comp, kind="compensation")
        for d in sorted(deps[i]):
            graph.add_edge(names[d], step, kind="next")
    return Workflow.from_graph(name or chosen, graph)


def _random_deps(n: int) -> st.SearchStrategy[list[set[int]]]:
    return st.tuples(*(st.sets(st.integers(0, i - 1), max_size=3) for i in range(1, n))).map(
        lambda rest: [set(), *rest]
    )


def _chain_deps(n: int) -> st.SearchStrategy[list[set[int]]]:
    return st.just([set() if i == 0 else {i - 1} for i in range(n)])


@st.composite
def _diamond_deps(draw: st.DrawFn, n: int) -> list[set[int]]:
    deps: list[set[int]] = [set()]
    top = 0
    while len(deps) < n:
        width = min(draw(st.integers(2, 4)), n - len(deps))
        fan = list(range(len(deps), len(deps) + width))
        deps.extend({top} for _ in fan)
        if len(deps) < n:
            top = len(deps)
            deps.append(set(fan))
    return deps


def _fanout_deps(n: int) -> st.SearchStrategy[list[set[int]]]:
    return st.just([set() if i == 0 else {0} for i in range(n)])


_DEPENDENCIES: dict[str, Callable[[int], st.SearchStrategy[list[set[int]]]]] = {
    "random": _random_deps,
    "chain": _chain_deps,
    "diamond": _diamond_deps,
    "fanout": _fanout_deps,
}
SHAPES = tuple(_DEPENDENCIES)
"""The shapes ``workflows`` draws from."""


_finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


def json_values(max_leaves: int = 10) -> st.SearchStrategy[Any]:
    """Plain JSON values (no NaN or infinity; lists, not tuples)."""
    scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _finite | st.text()
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def json_objects() -> st.SearchStrategy[dict[str, Any]]:
    """Plain JSON objects."""
    return st.dictionaries(st.text(max_size=8), json_values(), max_size=4)


def messages() -> st.SearchStrategy[SagaMessage]:
    """Any registered event, command or request, with arbitrary (valid JSON) fields.

    Built from the message registry and each class's field types, so a new message
    type is covered as soon as it is defined.
    """
    return st.one_of(*(_message(cls) for cls in message_types().values()))


def _message(cls: type[SagaMessage]) -> st.SearchStrategy[SagaMessage]:
    hints = typing.get_type_hints(cls)
    fields = {f.name: _field(hints[f.name]) for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return st.builds(cls, **fields)


def _field(hint: Any) -> st.SearchStrategy[Any]:
    args = typing.get_args(hint)
    if type(None) in args:
        (inner,) = (a for a in args if a is not type(None))
        return st.none() | _field(inner)
    if typing.get_origin(hint) is Mapping:
        return json_objects()
    simple: dict[Any, st.SearchStrategy[Any]] = {
        str: st.text(max_size=12),
        int: st.integers(1, 10**6),
        float: _finite,
        bool: st.booleans(),
        SagaStatus: st.sampled_from(list(SagaStatus)),
    }
    return simple[hint]
