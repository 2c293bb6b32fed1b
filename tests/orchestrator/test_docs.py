"""Every python block of docs/orchestrator-core.md runs as written, in a fresh process."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "orchestrator-core.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_doc_shows_the_api_the_runtime_uses() -> None:
    text = "\n".join(BLOCKS)
    for needle in ("WorkflowBuilder(", "Workflow.from_graph(", "react(", "resume(", "given("):
        assert needle in text, needle


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_doc_block_runs(index: int, tmp_path: Path) -> None:
    script = tmp_path / f"block{index}.py"
    script.write_text(BLOCKS[index])
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, f"block {index}:\n{done.stdout}\n{done.stderr}"
