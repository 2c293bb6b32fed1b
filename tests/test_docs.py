"""The documents' Python examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _blocks(name: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs" / name).read_text(), flags=re.S)


DOCS = ["eventstore.md", "runtime.md", "orchestrator-core.md"]
CASES = [(name, index) for name in DOCS for index in range(len(_blocks(name)))]


@pytest.mark.parametrize(("name", "index"), CASES)
def test_doc_examples_run(name: str, index: int, tmp_path: Path) -> None:
    script = tmp_path / f"block{index}.py"
    script.write_text(_blocks(name)[index])
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, f"{name} block {index}:\n{done.stdout}\n{done.stderr}"


def test_the_core_doc_shows_the_api_the_runtime_uses() -> None:
    text = "\n".join(_blocks("orchestrator-core.md"))
    for needle in ("WorkflowBuilder(", "Workflow.from_graph(", "react(", "resume(", "given("):
        assert needle in text, needle


PACKAGES = ("orchestrator", "eventstore", "brokers")


def _modules() -> list[str]:
    return sorted(
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if path.name != "__init__.py"
    )


def test_the_architecture_doc_names_every_module() -> None:
    """docs/ARCHITECTURE.md is the map of the code: a module it does not name (by its
    path, e.g. ``orchestrator/runtime/engine.py``) is a module nobody can find."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    modules = _modules()
    assert len(modules) > 50  # the walk found the packages
    missing = [m for m in modules if f"`{m}`" not in text]
    assert not missing, f"docs/ARCHITECTURE.md does not name: {', '.join(missing)}"
