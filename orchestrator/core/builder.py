"""The decorator API for ``workflows/*.py``.

::

    from orchestrator import RetryPolicy, WorkflowBuilder

    order = WorkflowBuilder("order")

    def release_stock(data): ...

    @order.step(compensation=release_stock)
    def reserve_stock(data): return {"reservation": "r-1"}

    @order.step(after=[reserve_stock], kind="pivot", retry=RetryPolicy(max_attempts=1))
    async def charge_payment(data): return {"charge": "c-1"}

The decorators return the function unchanged, so steps stay plain, testable functions.
``build()`` turns the builder into a validated ``Workflow`` (the loader calls it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, TypeVar, overload

import networkx as nx
from pydantic import BaseModel

from orchestrator.core.policy import RetryPolicy, StepKind, StepOptions
from orchestrator.core.workflow import _NAME, StepFunction, Workflow
from orchestrator.errors import WorkflowDefinitionError

__all__ = ["WorkflowBuilder"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(slots=True)
class _Pending:
    name: str
    action: StepFunction
    after: tuple[str | StepFunction, ...]
    options: StepOptions
    compensation: StepFunction | None = None


class WorkflowBuilder:
    """Collects steps with ``@builder.step`` and builds a validated ``Workflow``."""

    def __init__(self, name: str, *, input: type[BaseModel] | None = None) -> None:
        """``input``: a pydantic model every saga's input must match; the CLI, the API
        and the dashboard check it at start and refuse what does not match."""
        self.name = name
        self.input = input
        self._steps: dict[str, _Pending] = {}
        self._names_by_function: dict[int, str] = {}

    def __repr__(self) -> str:
        return f"<WorkflowBuilder {self.name!r} steps={list(self._steps)}>"

    @overload
    def step(self, fn: F) -> F: ...

    @overload
    def step(
        self,
        *,
        name: str | None = ...,
        after: Iterable[str | StepFunction] | str | StepFunction = ...,
        compensation: StepFunction | None = ...,
        kind: StepKind | str | None = ...,
        retry: RetryPolicy | None = ...,
        timeout: float | None = ...,
        compensation_retry: RetryPolicy | None = ...,
        compensation_timeout: float | None = ...,
        options: StepOptions | None = ...,
    ) -> Callable[[F], F]: ...

    def step(
        self,
        fn: F | None = None,
        *,
        name: str | None = None,
        after: Iterable[str | StepFunction] | str | StepFunction = (),
        compensation: StepFunction | None = None,
        kind: StepKind | str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        compensation_retry: RetryPolicy | None = None,
        compensation_timeout: float | None = None,
        options: StepOptions | None = None,
    ) -> F | Callable[[F], F]:
        """Register a step (sync or async ``fn(data) -> dict | None``).

        ``name`` defaults to the function's name; ``after`` lists the steps it depends
        on (names or the decorated functions); ``compensation`` undoes it (required for
        ``kind="compensatable"``, the default). ``options`` gives all options at once;
        the keyword arguments override its fields.
        """

        def register(func: F) -> F:
            step_name = name if name is not None else func.__name__
            if step_name in self._steps:
                raise WorkflowDefinitionError(
                    "duplicate step name", workflow=self.name, step=step_name
                )
            overrides: dict[str, Any] = {
                k: v
                for k, v in {
                    "kind": kind,
                    "retry": retry,
                    "timeout": timeout,
                    "compensation_retry": compensation_retry,
                    "compensation_timeout": compensation_timeout,
                }.items()
                if v is not None
            }
            try:
                opts = replace(options or StepOptions(), **overrides)
            except (TypeError, ValueError) as exc:
                raise WorkflowDefinitionError(str(exc), workflow=self.name, step=step_name) from exc
            deps = _as_tuple(after)
            self._steps[step_name] = _Pending(step_name, func, deps, opts, compensation)
            self._names_by_function[id(func)] = step_name
            return func

        if fn is not None:
            return register(fn)
        return register

    def compensation(self, step: str | StepFunction) -> Callable[[F], F]:
        """Register the decorated function as ``step``'s compensation (an alternative to
        ``step(compensation=...)`` that lets the compensation sit after its step)."""

        def register(func: F) -> F:
            step_name = self._resolve(step, dependent=None)
            pending = self._steps.get(step_name)
            if pending is None:
                raise WorkflowDefinitionError(
                    "compensation for an unknown step (define the step first)",
                    workflow=self.name,
                    step=step_name,
                )
            if pending.compensation is not None:
                raise WorkflowDefinitionError(
                    "step already has a compensation", workflow=self.name, step=step_name
                )
            pending.compensation = func
            return func

        return register

    def graph(self) -> Any:
        """The ``networkx.DiGraph`` the builder stands for (not validated yet)."""
        graph = nx.DiGraph()
        owners: dict[str, str] = {}
        for pending in self._steps.values():
            opts = pending.options
            graph.add_node(
                pending.name,
                role="step",
                action=pending.action,
                kind=opts.kind,
                retry=opts.retry,
                timeout=opts.timeout,
            )
        for pending in self._steps.values():
            for dep in pending.after:
                graph.add_edge(self._resolve(dep, pending.name), pending.name, kind="next")
            comp = pending.compensation
            if comp is None:
                continue
            comp_name = getattr(comp, "__name__", "")
            if not _NAME.match(comp_name):  # a lambda or a callable object
                comp_name = f"compensate_{pending.name}"
            if comp_name in self._steps or comp_name in owners:
                other = owners.get(comp_name, comp_name)
                raise WorkflowDefinitionError(
                    f"duplicate name: compensation {comp_name!r} is also "
                    f"{'a step' if comp_name in self._steps else f'the compensation of {other!r}'}"
                    " (give each step its own compensation function)",
                    workflow=self.name,
                    step=pending.name,
                )
            owners[comp_name] = pending.name
            graph.add_node(
                comp_name,
                role="compensation",
                action=comp,
                retry=pending.options.compensation_retry,
                timeout=pending.options.compensation_timeout,
            )
            graph.add_edge(pending.name, comp_name, kind="compensation")
        return graph

    def build(self, *, source: str | None = None) -> Workflow:
        """Validate and return the ``Workflow`` (``WorkflowDefinitionError`` if invalid)."""
        try:
            return Workflow.from_graph(
                self.name, self.graph(), source=source, input_model=self.input
            )
        except WorkflowDefinitionError as exc:
            if source is None or exc.file is not None:
                raise
            raise exc.in_file(source) from None

    def _resolve(self, ref: str | StepFunction, dependent: str | None) -> str:
        if isinstance(ref, str):
            if dependent is not None and ref not in self._steps:
                raise WorkflowDefinitionError(
                    f"depends on unknown step {ref!r}", workflow=self.name, step=dependent
                )
            return ref
        found = self._names_by_function.get(id(ref))
        if found is None:
            label = getattr(ref, "__name__", repr(ref))
            raise WorkflowDefinitionError(
                f"depends on {label!r}, which is not a step of this workflow",
                workflow=self.name,
                step=dependent,
            )
        return found


def _as_tuple(
    after: Iterable[str | StepFunction] | str | StepFunction,
) -> tuple[str | StepFunction, ...]:
    if isinstance(after, str) or callable(after):
        return (after,)
    return tuple(after)
