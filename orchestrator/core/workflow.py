"""Workflow definitions: a validated, precomputed view of a ``networkx.DiGraph``.

Graph schema (what ``Workflow.from_graph`` accepts and what ``Workflow.graph`` holds):

* a **step node** is keyed by the step name and carries ``action`` (the step function),
  and optionally ``kind`` (``StepKind`` or its string, default ``compensatable``),
  ``retry`` (``RetryPolicy``) and ``timeout`` (seconds); ``role`` is ``"step"`` or absent;
* a **compensation node** has ``role="compensation"``, an ``action`` and optionally
  ``retry`` and ``timeout``;
* a **"next" edge** ``a → b`` (``kind="next"``) says step ``b`` depends on step ``a``;
* a **"compensation" edge** ``s → c`` (``kind="compensation"``) gives step ``s`` its
  compensation ``c``. An edge without ``kind`` takes it from its target's role.

Everything the core needs per event (topological order, ancestors, descendants, pivots)
is computed once here, so ``evolve``/``decide`` stay cheap.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import networkx as nx
from pydantic import BaseModel, ValidationError

from orchestrator.core.policy import RetryPolicy, StepKind
from orchestrator.errors import InputError, WorkflowDefinitionError

__all__ = ["CompensationSpec", "StepFunction", "StepSpec", "Workflow"]

StepFunction = Callable[[dict[str, Any]], Any]
"""``fn(data) -> dict | None``, or an ``async def`` returning the same."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_FORMAT = "sagaflow.workflow/1"


@dataclass(frozen=True, slots=True)
class CompensationSpec:
    """A step's compensating action."""

    name: str
    action: StepFunction
    retry: RetryPolicy
    timeout: float | None


@dataclass(frozen=True, slots=True)
class StepSpec:
    """One step, as validated."""

    name: str
    action: StepFunction
    deps: tuple[str, ...]
    """Direct dependencies, sorted."""
    kind: StepKind
    retry: RetryPolicy
    timeout: float | None
    compensation: CompensationSpec | None


class Workflow:
    """A validated workflow. Build one with ``WorkflowBuilder`` or ``Workflow.from_graph``.

    Attributes (read-only by convention): ``name``, ``source`` (the file it came from, if
    loaded), ``graph`` (a frozen ``networkx.DiGraph`` in the schema above), ``steps``
    (name → ``StepSpec``), ``order`` (steps in deterministic topological order),
    ``ancestors`` (name → ancestors in topological order: the order outputs are merged
    into ``data``), ``descendants`` (name → frozenset), ``pivots`` and
    ``definition_hash`` (SHA-256 of ``describe()``).
    """

    __slots__ = (
        "_reverse_compensated",
        "ancestors",
        "definition_hash",
        "descendants",
        "graph",
        "input_model",
        "name",
        "order",
        "pivots",
        "source",
        "steps",
    )

    name: str
    source: str | None
    input_model: type[BaseModel] | None
    graph: Any
    steps: Mapping[str, StepSpec]
    order: tuple[str, ...]
    ancestors: Mapping[str, tuple[str, ...]]
    descendants: Mapping[str, frozenset[str]]
    pivots: tuple[str, ...]
    definition_hash: str
    _reverse_compensated: tuple[str, ...]

    def __init__(
        self,
        name: str,
        steps: Mapping[str, StepSpec],
        *,
        source: str | None,
        input_model: type[BaseModel] | None = None,
    ) -> None:
        # Private: use from_graph or WorkflowBuilder, which validate first.
        self.name = name
        self.source = source
        self.input_model = input_model  # not in definition_hash: it guards the door
        self.steps = MappingProxyType(dict(steps))
        graph = nx.DiGraph(name=name)
        for spec in self.steps.values():
            graph.add_node(
                spec.name,
                role="step",
                action=spec.action,
                kind=spec.kind,
                retry=spec.retry,
                timeout=spec.timeout,
            )
        for spec in self.steps.values():
            for dep in spec.deps:
                graph.add_edge(dep, spec.name, kind="next")
            if spec.compensation is not None:
                comp = spec.compensation
                graph.add_node(
                    comp.name,
                    role="compensation",
                    action=comp.action,
                    retry=comp.retry,
                    timeout=comp.timeout,
                )
                graph.add_edge(spec.name, comp.name, kind="compensation")
        self.graph = nx.freeze(graph)
        step_graph = graph.subgraph(self.steps)
        self.order = tuple(nx.lexicographical_topological_sort(step_graph))
        position = {name: i for i, name in enumerate(self.order)}
        self.ancestors = MappingProxyType(
            {
                n: tuple(sorted(nx.ancestors(step_graph, n), key=position.__getitem__))
                for n in self.order
            }
        )
        self.descendants = MappingProxyType(
            {n: frozenset(nx.descendants(step_graph, n)) for n in self.order}
        )
        self.pivots = tuple(n for n in self.order if self.steps[n].kind is StepKind.PIVOT)
        self._reverse_compensated = tuple(
            n for n in reversed(self.order) if self.steps[n].compensation is not None
        )
        self.definition_hash = hashlib.sha256(
            json.dumps(
                self.describe(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ).encode()
        ).hexdigest()

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r} steps={len(self.steps)} hash={self.definition_hash[:12]}>"

    def step(self, name: str) -> StepSpec:
        """The step called ``name`` (``KeyError`` if there is none)."""
        return self.steps[name]

    def describe(self) -> dict[str, Any]:
        """The canonical, plain-JSON description ``definition_hash`` is computed from:
        names, dependencies, kinds, policies, timeouts and compensation names (never
        function code, so a refactor of a step's body keeps the hash)."""

        def timeout(value: float | None) -> float | None:
            return None if value is None else float(value)

        steps = []
        for name in sorted(self.steps):
            spec = self.steps[name]
            comp = spec.compensation
            steps.append(
                {
                    "name": name,
                    "deps": list(spec.deps),
                    "kind": spec.kind.value,
                    "retry": _describe_policy(spec.retry),
                    "timeout": timeout(spec.timeout),
                    "compensation": None
                    if comp is None
                    else {
                        "name": comp.name,
                        "retry": _describe_policy(comp.retry),
                        "timeout": timeout(comp.timeout),
                    },
                }
            )
        return {"format": _FORMAT, "name": self.name, "steps": steps}

    def compensation_order(self) -> tuple[str, ...]:
        """Steps that have a compensation, in reverse topological order."""
        return self._reverse_compensated

    @classmethod
    def from_graph(
        cls,
        name: str,
        graph: Any,
        *,
        source: str | None = None,
        input_model: type[BaseModel] | None = None,
    ) -> Workflow:
        """Validate a hand-built ``networkx.DiGraph`` (schema in the module docstring).

        Raises ``WorkflowDefinitionError`` naming the workflow and the step for a cycle,
        an unknown dependency, a compensatable step without compensation, a pivot or
        retriable step with one, a compensatable step that is not before every pivot,
        or a malformed node or edge.
        """
        if input_model is not None and not (
            isinstance(input_model, type) and issubclass(input_model, BaseModel)
        ):
            raise WorkflowDefinitionError(
                f"input must be a pydantic model class, got {input_model!r}",
                workflow=name,
                file=source,
            )
        return cls(name, _validate(name, graph, source), source=source, input_model=input_model)

    def validate_input(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """``data`` as the saga will receive it: checked against ``input_model`` (and
        normalised to its JSON form: defaults filled, values coerced), or as given when
        there is none. ``InputError`` names every field that is wrong."""
        if self.input_model is None:
            return dict(data)
        try:
            model = self.input_model.model_validate(dict(data))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors()
            )
            raise InputError(f"invalid input for {self.name}: {problems}") from None
        dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True)
        return dumped

    def input_schema(self) -> dict[str, Any] | None:
        """The JSON Schema of ``input_model`` (what the dashboard's form is built from)."""
        if self.input_model is None:
            return None
        schema: dict[str, Any] = self.input_model.model_json_schema()
        return schema


def _describe_policy(policy: RetryPolicy) -> dict[str, Any]:
    described = policy.describe()
    return {k: (float(v) if isinstance(v, float) else v) for k, v in described.items()}


def _validate(name: str, graph: Any, source: str | None) -> dict[str, StepSpec]:
    def error(reason: str, step: str | None = None) -> WorkflowDefinitionError:
        return WorkflowDefinitionError(reason, workflow=name, step=step, file=source)

    if not isinstance(name, str) or not _NAME.match(name):
        raise WorkflowDefinitionError(
            f"invalid workflow name {name!r} (letters, digits, '_', '-', '.')", file=source
        )
    if not isinstance(graph, nx.DiGraph) or graph.is_multigraph():
        raise error(f"a workflow graph must be a networkx.DiGraph, not {type(graph).__name__}")

    step_names: list[str] = []
    comp_names: list[str] = []
    for node in sorted(graph.nodes, key=str):
        if not isinstance(node, str) or not _NAME.match(node):
            raise error(f"invalid name {node!r} (letters, digits, '_', '-', '.'; no ':')")
        attrs = graph.nodes[node]
        role = attrs.get("role", "step")
        if not attrs:
            dependents = sorted(graph.successors(node))
            if dependents:
                raise error(f"depends on unknown step {node!r}", dependents[0])
            raise error("step has no action", node)
        if role == "step":
            step_names.append(node)
        elif role == "compensation":
            comp_names.append(node)
        else:
            raise error(f"unknown role {role!r} (expected 'step' or 'compensation')", node)
        if not callable(attrs.get("action")):
            raise error(f"action must be callable, not {attrs.get('action')!r}", node)
    if not step_names:
        raise error("a workflow needs at least one step")

    steps = set(step_names)
    deps: dict[str, list[str]] = {s: [] for s in step_names}
    comp_of: dict[str, str] = {}
    for u, v, attrs in sorted(graph.edges(data=True), key=lambda e: (str(e[0]), str(e[1]))):
        kind = attrs.get("kind", "compensation" if v in comp_names else "next")
        if kind == "next":
            if v not in steps:
                raise error(f"'next' edge from {u!r} points at a compensation", str(v))
            if u not in steps:
                raise error(f"depends on {u!r}, which is a compensation, not a step", v)
            deps[v].append(u)
        elif kind == "compensation":
            if u not in steps or v not in comp_names:
                raise error(
                    f"'compensation' edge {u!r} → {v!r} must go from a step to a compensation node",
                    str(u),
                )
            if u in comp_of:
                raise error(f"has two compensations: {comp_of[u]!r} and {v!r}", u)
            comp_of[u] = v
        else:
            raise error(f"edge {u!r} → {v!r} has unknown kind {kind!r}", str(v))
    for comp in comp_names:
        owners = sorted(u for u in graph.predecessors(comp) if comp_of.get(u) == comp)
        if len(owners) != 1 or graph.out_degree(comp) != 0:
            raise error(
                f"compensation {comp!r} must belong to exactly one step "
                f"(it is linked from {owners or 'none'})",
                owners[0] if owners else comp,
            )

    step_graph = graph.subgraph(step_names)
    try:
        cycle = nx.find_cycle(step_graph)
    except nx.NetworkXNoCycle:
        pass
    else:
        path = " → ".join([str(u) for u, _ in cycle] + [str(cycle[0][0])])
        raise error(f"dependency cycle: {path}", str(cycle[0][0]))

    specs: dict[str, StepSpec] = {}
    for step in step_names:
        attrs = graph.nodes[step]
        try:
            kind = StepKind(attrs.get("kind", StepKind.COMPENSATABLE))
        except ValueError:
            raise error(
                f"unknown kind {attrs.get('kind')!r} (compensatable, pivot or retriable)", step
            ) from None
        comp_spec = None
        if step in comp_of:
            comp_attrs = graph.nodes[comp_of[step]]
            comp_spec = CompensationSpec(
                name=comp_of[step],
                action=comp_attrs["action"],
                retry=_policy(comp_attrs.get("retry"), error, step),
                timeout=_timeout(comp_attrs.get("timeout"), error, step),
            )
        if kind is StepKind.COMPENSATABLE and comp_spec is None:
            raise error("compensatable step has no compensation", step)
        if kind is not StepKind.COMPENSATABLE and comp_spec is not None:
            raise error(
                f"a {kind.value} step is never compensated, yet it has compensation "
                f"{comp_spec.name!r} (make it compensatable, or drop the compensation)",
                step,
            )
        specs[step] = StepSpec(
            name=step,
            action=attrs["action"],
            deps=tuple(sorted(deps[step])),
            kind=kind,
            retry=_policy(attrs.get("retry"), error, step),
            timeout=_timeout(attrs.get("timeout"), error, step),
            compensation=comp_spec,
        )

    # Rule 5 as structure: compensation is only possible before the point of no return,
    # so every compensatable step must be done before any pivot can start.
    pivots = [s for s in step_names if specs[s].kind is StepKind.PIVOT]
    for pivot in pivots:
        before = nx.ancestors(step_graph, pivot)
        after = nx.descendants(step_graph, pivot)
        for step in step_names:
            if specs[step].kind is not StepKind.COMPENSATABLE or step in before:
                continue
            where = "after" if step in after else "in parallel with"
            raise error(
                f"compensatable step {where} pivot {pivot!r}: once a pivot has succeeded "
                "nothing can be compensated, so every compensatable step must be an "
                "ancestor of every pivot (make it retriable, or make the pivot depend on it)",
                step,
            )
    return specs


def _policy(value: Any, error: Callable[[str, str], Exception], step: str) -> RetryPolicy:
    if value is None:
        return RetryPolicy()
    if not isinstance(value, RetryPolicy):
        raise error(f"retry must be a RetryPolicy, not {value!r}", step)
    return value


def _timeout(value: Any, error: Callable[[str, str], Exception], step: str) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise error(f"timeout must be a number of seconds > 0 or None, not {value!r}", step)
    return float(value)
