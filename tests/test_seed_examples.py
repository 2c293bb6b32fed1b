"""The seed README's examples (``examples/messaging_examples.py``) run as a user runs
them: each one, on the in-memory broker and on a real redis-server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "messaging_examples.py"
EXAMPLES = ["basic", "request_reply", "pubsub", "work_queue", "saga", "dlq"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.mark.parametrize("example", EXAMPLES)
def test_each_example_runs_on_the_in_memory_broker(example: str) -> None:
    done = run("--example", example)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"== {example}: ") and done.stdout.rstrip().endswith("ok")
    assert "Task exception was never retrieved" not in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.redis
def test_all_examples_run_on_redis(redis_url: str) -> None:
    done = run("--example", "all", "--redis", redis_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines().count("ok") == len(EXAMPLES)
    for example in EXAMPLES:
        assert f"== {example}: " in done.stdout
    assert "FAILED" not in done.stdout
    assert "Task exception was never retrieved" not in done.stderr


def test_an_unknown_example_is_refused_by_name() -> None:
    done = run("--example", "nope")
    assert done.returncode == 2
    assert "invalid choice: 'nope'" in done.stderr
