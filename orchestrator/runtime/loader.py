"""Loading ``workflows/*.py`` by file path."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from orchestrator.core.builder import WorkflowBuilder
from orchestrator.core.workflow import Workflow
from orchestrator.errors import WorkflowDefinitionError

__all__ = ["load_workflow_file", "load_workflows"]


def load_workflows(directory: str | Path) -> dict[str, Workflow]:
    """Load every ``*.py`` in ``directory`` (not recursive; names starting with ``_``
    are skipped) and return its workflows by name, sorted by name.

    A file is imported by path, as a module of its own; every module-level
    ``WorkflowBuilder`` is built and every module-level ``Workflow`` is taken as is.
    Raises ``WorkflowDefinitionError`` naming the file (and the step) for an invalid
    definition, a file that fails to import, or a workflow name defined twice.
    """
    root = Path(directory)
    if not root.is_dir():
        raise WorkflowDefinitionError(f"not a directory: {root}")
    found: dict[str, Workflow] = {}
    for path in sorted(root.glob("*.py")):
        if path.name.startswith("_"):
            continue
        for workflow in load_workflow_file(path):
            previous = found.get(workflow.name)
            if previous is not None:
                raise WorkflowDefinitionError(
                    f"duplicate workflow name, also defined in {previous.source}",
                    workflow=workflow.name,
                    file=str(path),
                )
            found[workflow.name] = workflow
    return dict(sorted(found.items()))


def load_workflow_file(path: str | Path) -> list[Workflow]:
    """The workflows defined in one file, in definition order."""
    path = Path(path)
    source = str(path)
    module = _import(path)
    workflows: list[Workflow] = []
    seen: set[int] = set()
    for value in list(vars(module).values()):
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, WorkflowBuilder):
            workflows.append(value.build(source=source))
        elif isinstance(value, Workflow):
            if value.source is None:
                workflows.append(Workflow.from_graph(value.name, value.graph, source=source))
            else:
                workflows.append(value)
    unique: dict[str, Workflow] = {}
    for workflow in workflows:
        other = unique.get(workflow.name)
        if other is None:
            unique[workflow.name] = workflow
        elif other.definition_hash != workflow.definition_hash:
            # A builder and its build() result are the same workflow; two different
            # definitions under one name are a mistake.
            raise WorkflowDefinitionError(
                "duplicate workflow name in one file", workflow=workflow.name, file=source
            )
    return list(unique.values())


def _import(path: Path) -> ModuleType:
    resolved = path.resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    module_name = f"_sagaflow_workflows.{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, resolved)
    if spec is None or spec.loader is None:
        raise WorkflowDefinitionError("cannot be imported", file=str(path))
    module = importlib.util.module_from_spec(spec)
    # Registered while it runs: dataclasses and typing resolve names through sys.modules.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except WorkflowDefinitionError as exc:
        sys.modules.pop(module_name, None)
        raise exc.in_file(str(path)) from None
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise WorkflowDefinitionError(
            f"failed to import: {type(exc).__name__}: {exc}", file=str(path)
        ) from exc
    return module
