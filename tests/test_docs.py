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


@pytest.mark.parametrize("name", ["eventstore.md", "runtime.md"])
def test_doc_examples_run(name: str, tmp_path: Path) -> None:
    for index, block in enumerate(_blocks(name)):
        script = tmp_path / f"block{index}.py"
        script.write_text(block)
        done = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            check=False,
        )
        assert done.returncode == 0, f"{name} block {index}:\n{done.stdout}\n{done.stderr}"
