"""The ``orchestrator`` command as a user runs it, in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def serving(args: list[str], cwd: Path, marker: str) -> tuple[subprocess.Popen[str], str]:
    """``orchestrator *args`` started, once it printed a line holding ``marker`` (its
    start line): the process, stdout and stderr on one pipe, and that line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert process.stdout is not None
    for line in process.stdout:
        if marker in line:
            return process, line
    raise AssertionError(f"orchestrator {' '.join(args)} ended before it served: {process.wait()}")
