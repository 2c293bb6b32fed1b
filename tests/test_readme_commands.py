"""Every command the README's "Using it" block and ``orchestrator --help`` show runs as
printed: in a fresh folder holding only the shipped workflows, through bash, with
``SAGA_ID`` replaced by the id ``orchestrator start`` printed. ``run`` and ``ui`` serve
until stopped: each must print its start line, then stop cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest

from orchestrator.cli.app import cli

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SERVING = {"orchestrator run": "engine running", "orchestrator ui": "dashboard at"}
"""Commands that serve until stopped, and what their start line says."""


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Using it", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.splitlines():
        if line.startswith("orchestrator"):
            commands.append(re.split(r"\s{2,}#", line, maxsplit=1)[0].strip())
    return commands


def help_commands() -> list[str]:
    """The ``Example:``, ``Try it:``, ``Serve:``, ``Start:`` lines of every command's
    help, with their continuation lines joined."""
    found: list[str] = []
    docs = [cli.help or ""]
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):  # the group loads a command on first use
        command = cli.get_command(ctx, name)
        assert command is not None, name
        docs.append(command.help or "")
        for sub in getattr(command, "commands", {}).values():
            docs.append(sub.help or "")
    pattern = re.compile(r"^(\s*)(?:Example|Try it|Serve|Start):\s+(orchestrator .*)$")
    for doc in docs:
        lines = doc.splitlines()
        for i, line in enumerate(lines):
            match = pattern.match(line)
            if match is None:
                continue
            commands = [match.group(2).strip()]
            indent = len(line) - len(line.lstrip()) + 2
            for more in lines[i + 1 :]:
                if not more.strip() or len(more) - len(more.lstrip()) <= indent:
                    break
                if more.strip().startswith("orchestrator "):  # another example
                    commands.append(more.strip())
                else:  # the one before goes on
                    commands[-1] += " " + more.strip()
            found += [re.split(r"\s{2,}\(", c, maxsplit=1)[0].strip() for c in commands]
    return found


@pytest.fixture
def fresh(tmp_path: Path, redis_url: str) -> Path:
    """A folder as a new user has it: the shipped workflows, and the ``sagaflow.yaml``
    the README's ``dlq`` line names (a Redis broker)."""
    shutil.copytree(ROOT / "workflows", tmp_path / "workflows")
    host, port = redis_url.split("//", 1)[1].split("/", 1)[0].split(":")
    (tmp_path / "sagaflow.yaml").write_text(
        f"broker_type: redis\nredis:\n  host: {host}\n  port: {port}\n"
    )
    return tmp_path


def shell(command: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        shell=True,
        executable="/bin/bash",
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "COLUMNS": "200"},
    )


def serve_and_stop(command: str, cwd: Path, started: str) -> None:
    process = subprocess.Popen(
        command,
        shell=True,
        executable="/bin/bash",
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "COLUMNS": "200"},
        start_new_session=True,
    )
    assert process.stdout is not None
    seen = []
    try:
        for line in process.stdout:
            seen.append(line)
            if started in line:
                break
        else:
            raise AssertionError(f"{command!r} ended before serving:\n{''.join(seen)}")
        os.killpg(process.pid, signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0, f"{command!r} on SIGTERM: {out}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_the_readme_and_help_show_commands() -> None:
    """The extraction itself finds what is there (so the test below cannot pass empty)."""
    readme, helped = readme_commands(), help_commands()
    assert len(readme) >= 12 and readme[0] == "orchestrator run"
    assert any(c.startswith("orchestrator start order_fulfilment --wait --input") for c in readme)
    assert "orchestrator demo" in helped and "orchestrator run" in helped
    assert any(c.startswith("orchestrator start order_fulfilment") for c in helped)
    assert all("…" not in c for c in readme + helped), "a placeholder nobody can type"


def test_every_readme_and_help_command_runs_as_printed(fresh: Path) -> None:
    commands = list(dict.fromkeys(readme_commands() + help_commands()))
    starts = [c for c in commands if c.startswith("orchestrator start")]
    saga_id = ""
    for command in starts:  # first: the rest use the saga they start
        done = shell(command, fresh)
        assert done.returncode == 0, f"{command!r} -> {done.returncode}\n{done.stderr}"
        saga_id = done.stdout.split()[0]
    assert re.fullmatch(r"[0-9a-f]{32}", saga_id)
    for command in commands:
        if command in starts:
            continue
        runnable = command.replace("SAGA_ID", saga_id)
        serving = next((s for prefix, s in SERVING.items() if command.startswith(prefix)), None)
        if serving is not None:
            serve_and_stop(runnable, fresh, serving)
            continue
        done = shell(runnable, fresh)
        assert done.returncode == 0, f"{command!r} -> {done.returncode}\n{done.stderr}"
        assert "Traceback" not in done.stderr, done.stderr
