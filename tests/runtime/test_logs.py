"""Logs as an operator reads them: every record logged while a step runs carries the
saga, workflow, step, attempt and correlation id, as JSON or as text; a replay for
audit logs nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

NOISY = """
import logging

from orchestrator import WorkflowBuilder

noisy = WorkflowBuilder("noisy")


@noisy.step(kind="pivot")
def shout(data):
    logging.getLogger("shop.payments").warning("card %s looked odd", data["card"])
    return {"ok": True}
"""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "200", "GREENLANG_LOG_LEVEL": "DEBUG"},
    )


def _start(tmp_path: Path, *log_format: str) -> tuple[str, str]:
    (tmp_path / "workflows").mkdir(exist_ok=True)
    (tmp_path / "workflows" / "noisy.py").write_text(NOISY)
    done = cli(
        *log_format, "start", "noisy", "--input", '{"card": "4242"}', "--wait",
        "--store", f"sqlite:///{tmp_path / 's.db'}", "--workflows", str(tmp_path / "workflows"),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.split()[0], done.stderr


def test_json_lines_carry_the_saga_a_step_logs_in(tmp_path: Path) -> None:
    saga_id, stderr = _start(tmp_path, "--log-format", "json")
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert records, stderr
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    (odd,) = [r for r in records if r["logger"] == "shop.payments"]
    assert odd["message"] == "card 4242 looked odd" and odd["level"] == "WARNING"
    assert (odd["saga_id"], odd["workflow"], odd["step"], odd["attempt"]) == (
        saga_id, "noisy", "shout", 1,
    )  # fmt: skip
    assert odd["correlation_id"]


def test_text_lines_end_with_the_context(tmp_path: Path) -> None:
    saga_id, stderr = _start(tmp_path)
    (line,) = [x for x in stderr.splitlines() if "shop.payments" in x]
    assert " WARNING shop.payments: card 4242 looked odd [" in line
    assert line.endswith(f"[saga_id={saga_id} workflow=noisy step=shout attempt=1 "
                         f"correlation_id={line.rsplit('correlation_id=', 1)[1]}")  # fmt: skip


def test_replaying_a_saga_for_audit_logs_nothing(tmp_path: Path) -> None:
    saga_id, _ = _start(tmp_path)
    replayed = cli(
        "replay", saga_id, "--verify", "--store", f"sqlite:///{tmp_path / 's.db'}",
        "--workflows", str(tmp_path / "workflows"), cwd=tmp_path,
    )  # fmt: skip
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert replayed.stderr == ""  # at DEBUG, not one record: the steps are not run again
    assert "card 4242 looked odd" not in replayed.stdout
