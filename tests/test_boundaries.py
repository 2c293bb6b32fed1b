"""The architecture's boundaries, held by walking every module's imports.

- ``orchestrator.core`` is pure: it imports no runtime, cli, audit or testing module,
  no asyncio, no store and no broker (and no clock, random or I/O module);
- ``eventstore`` and ``brokers`` know nothing of sagas: they never import
  ``orchestrator``;
- ``eventstore`` and ``brokers`` never import each other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CORE_FORBIDDEN = (
    "orchestrator.runtime",
    "orchestrator.cli",
    "orchestrator.audit",
    "orchestrator.testing",
    "eventstore",
    "brokers",
    "asyncio",
    "time",
    "random",
    "uuid",
    "socket",
    "os",
)

RULES: list[tuple[str, tuple[str, ...]]] = [
    ("orchestrator/core", CORE_FORBIDDEN),
    ("eventstore", ("orchestrator", "brokers")),
    ("brokers", ("orchestrator", "eventstore")),
]


def imports(path: Path, package: str) -> Iterator[tuple[int, str]]:
    """Every module ``path`` imports (relative imports resolved against ``package``),
    with its line, including imports under ``TYPE_CHECKING`` and inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:  # `from orchestrator import runtime`
                yield node.lineno, f"{module}.{alias.name}"


def violations(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        rel = path.relative_to(ROOT)
        package = ".".join(rel.with_suffix("").parts)
        if path.name != "__init__.py":
            package = package.rsplit(".", 1)[0]
        flagged: set[int] = set()
        for line, module in imports(path, package):
            if line in flagged:
                continue
            if any(module == bad or module.startswith(bad + ".") for bad in forbidden):
                out.append(f"{rel}:{line} imports {module} (forbidden in {folder}/)")
                flagged.add(line)
    return out


@pytest.mark.parametrize(("folder", "forbidden"), RULES, ids=[r[0] for r in RULES])
def test_imports_respect_the_boundaries(folder: str, forbidden: tuple[str, ...]) -> None:
    found = violations(folder, forbidden)
    assert not found, "\n".join(found)


def test_the_walker_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The check itself can fail: plain, relative, aliased and lazy imports are seen."""
    core = tmp_path / "orchestrator" / "core"
    core.mkdir(parents=True)
    (core / "bad.py").write_text(
        "import asyncio\n"
        "from ..runtime import engine\n"
        "from orchestrator import cli\n"
        "def f():\n"
        "    from eventstore import EventStore\n",
        encoding="utf-8",
    )
    found = [m for _, m in imports(core / "bad.py", "orchestrator.core")]
    assert "asyncio" in found
    assert "orchestrator.runtime" in found
    assert "orchestrator.cli" in found
    assert "eventstore" in found
