"""A workflow's DAG laid out for the page: steps in columns by topological generation,
each compensation drawn under its step, and each node's state in one saga.

The layout is computed once per workflow (it depends on the definition only); the
states per request, from the saga's folded state. The template draws it as SVG.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import networkx as nx

from orchestrator.core.policy import StepKind
from orchestrator.core.state import Phase, SagaState, StepState
from orchestrator.core.workflow import Workflow

__all__ = ["Edge", "Layout", "Node", "layout", "states"]

COLUMN = 210
"""Pixels between generations."""
ROW = 120
"""Pixels between steps of one generation (a step and its compensation share a row)."""
NODE_W, NODE_H = 170, 40


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    """``step:<name>`` or ``undo:<name>``."""
    step: str
    label: str
    x: int
    y: int
    kind: str
    """``compensatable``, ``pivot``, ``retriable``, or ``compensation``."""
    pivot: bool


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    compensation: bool
    """A compensation edge: the order undos run in (a dependent's undo before its
    dependency's), drawn dashed."""
    x1: int
    y1: int
    x2: int
    y2: int


@dataclass(frozen=True, slots=True)
class Layout:
    width: int
    height: int
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]


@cache
def layout(wf: Workflow) -> Layout:
    steps = wf.graph.subgraph(wf.steps)
    generations = [sorted(g) for g in nx.topological_generations(steps)]
    nodes: dict[str, Node] = {}
    rows = max((len(g) for g in generations), default=1)
    for column, names in enumerate(generations):
        for row, name in enumerate(names):
            spec = wf.steps[name]
            x = 20 + column * COLUMN
            y = 20 + row * ROW
            kind = spec.kind.value
            nodes[f"step:{name}"] = Node(
                f"step:{name}", name, name, x, y, kind, spec.kind is StepKind.PIVOT
            )
            if spec.compensation is not None:
                nodes[f"undo:{name}"] = Node(
                    f"undo:{name}",
                    name,
                    f"undo {name}",
                    x,
                    y + NODE_H + 14,
                    "compensation",
                    False,
                )
    edges: list[Edge] = []
    for source, target in steps.edges:
        edges.append(_edge(nodes[f"step:{source}"], nodes[f"step:{target}"], False))
    for name in wf.compensation_order():
        for dep in wf.steps[name].deps:
            before = _nearest_compensated(wf, dep)
            for earlier in before:
                edges.append(_edge(nodes[f"undo:{name}"], nodes[f"undo:{earlier}"], True))
    width = 40 + max(len(generations), 1) * COLUMN
    height = 40 + rows * ROW
    return Layout(width, height, tuple(nodes.values()), tuple(dict.fromkeys(edges)))


def _nearest_compensated(wf: Workflow, name: str) -> list[str]:
    """``name`` if it has a compensation, else its nearest ancestors that have one: the
    undos that must wait for a dependent's undo (rule 3 runs through steps with none)."""
    if wf.steps[name].compensation is not None:
        return [name]
    found: list[str] = []
    for dep in wf.steps[name].deps:
        found.extend(n for n in _nearest_compensated(wf, dep) if n not in found)
    return found


def _edge(a: Node, b: Node, compensation: bool) -> Edge:
    if compensation:  # undo → earlier undo: right to left, along the bottom edges
        return Edge(a.id, b.id, True, a.x, a.y + NODE_H // 2, b.x + NODE_W, b.y + NODE_H // 2)
    return Edge(a.id, b.id, False, a.x + NODE_W, a.y + NODE_H // 2, b.x, b.y + NODE_H // 2)


def states(wf: Workflow, state: SagaState | None) -> dict[str, str]:
    """Each node's state: ``pending``, ``running``, ``retrying``, ``succeeded``,
    ``failed``; an undo ``pending``, ``compensating``, ``compensated``, ``failed``."""
    out: dict[str, str] = {}
    for name, spec in wf.steps.items():
        step = state.steps.get(name) if state else None
        out[f"step:{name}"] = _forward(step)
        if spec.compensation is not None:
            undo = state.compensations.get(name) if state else None
            out[f"undo:{name}"] = _backward(undo)
    return out


def _forward(st: StepState | None) -> str:
    if st is None:
        return "pending"
    if st.phase is Phase.SUCCEEDED:
        return "succeeded"
    if st.phase is Phase.GAVE_UP or st.phase is Phase.ATTEMPT_FAILED:
        return "failed"  # ATTEMPT_FAILED outlives a decision only once the saga aborted
    if st.phase is Phase.RUNNING:
        return "running" if st.attempt == 1 else "retrying"
    return "retrying"


def _backward(st: StepState | None) -> str:
    if st is None:
        return "pending"
    if st.phase is Phase.SUCCEEDED:
        return "compensated"
    if st.phase is Phase.GAVE_UP:
        return "failed"
    return "compensating"
