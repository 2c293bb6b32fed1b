"""The seed's ``metrics_enabled`` and ``log_level`` keys take effect in the commands
(``circuit_breaker_enabled``: tests/brokers/test_circuit_config.py). Each test fails
if its key stops working: it runs the command both ways."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.runtime.test_metrics import run_engine
from tests.servers import free_port

LOUD = """
import logging

from orchestrator import WorkflowBuilder

loud = WorkflowBuilder("loud")
log = logging.getLogger("orchestrator.flows")  # a child of the project's logger


@loud.step(kind="retriable")
def speak(data):
    log.info("an-info-record")
    log.warning("a-warning-record")
    return {"spoke": True}
"""


def _flows(tmp_path: Path) -> Path:
    flows = tmp_path / "flows"
    flows.mkdir(exist_ok=True)
    (flows / "loud.py").write_text(LOUD)
    return flows


def _config(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(
        f"store: sqlite:///{tmp_path / 'sagas.db'}\nworkflows: {_flows(tmp_path)}\n{text}"
    )
    return path


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "400"},
    )


def test_log_level_sets_the_project_loggers_in_a_command_other_than_run(
    tmp_path: Path,
) -> None:
    """``start --wait`` runs the step in its own engine: its records obey log_level."""
    start = ("start", "loud", "--wait", "--pickup", "0.1", "--config")
    quiet = _cli(
        *start, str(_config(tmp_path, "quiet.yaml", "log_level: CRITICAL\n")), cwd=tmp_path
    )
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert "a-warning-record" not in quiet.stderr
    chatty = _cli(*start, str(_config(tmp_path, "chatty.yaml", "log_level: INFO\n")), cwd=tmp_path)
    assert chatty.returncode == 0, chatty.stdout + chatty.stderr
    assert "INFO orchestrator.flows: an-info-record" in chatty.stderr
    assert "WARNING orchestrator.flows: a-warning-record" in chatty.stderr
    between = _cli(
        *start, str(_config(tmp_path, "warn.yaml", "log_level: WARNING\n")), cwd=tmp_path
    )
    assert "a-warning-record" in between.stderr and "an-info-record" not in between.stderr


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _run_one_saga(config: Path, tmp_path: Path, port: int) -> tuple[str, bool]:
    """``orchestrator run`` with ``config`` while a saga runs; its output, and whether
    it listened on ``port`` then."""
    engine, line = run_engine(config, tmp_path)
    try:
        done = _cli(
            "start", "loud", "--wait", "--pickup", "30", "--config", str(config), cwd=tmp_path
        )
        assert done.returncode == 0, done.stdout + done.stderr
        listening = _listening(port)
    finally:
        engine.terminate()
        out, _ = engine.communicate(timeout=30)
    assert engine.returncode == 0, out
    return line + out, listening


def test_metrics_enabled_false_serves_nothing_and_log_level_quiets_run(tmp_path: Path) -> None:
    port = free_port()
    metrics = f"metrics:\n  port: {port}\n"
    off = _config(tmp_path, "off.yaml", f"{metrics}metrics_enabled: false\nlog_level: ERROR\n")
    out, listening = _run_one_saga(off, tmp_path, port)
    assert "metrics off" in out and not listening
    assert "a-warning-record" not in out  # log_level ERROR
    on = _config(tmp_path, "on.yaml", f"{metrics}log_level: WARNING\n")
    out, listening = _run_one_saga(on, tmp_path, port)
    assert f"metrics at http://127.0.0.1:{port}/metrics" in out and listening
    assert "WARNING orchestrator.flows: a-warning-record" in out


async def test_metrics_enabled_false_attaches_no_hook_and_starts_no_server(
    tmp_path: Path,
) -> None:
    """Off: nothing timed (no hook on the broker or the store) and no collector; on:
    both hooked and a server listening. In process, on the function ``run`` calls."""
    from brokers import InMemoryBroker
    from eventstore import EventStore
    from orchestrator.cli.saga_commands import _metrics
    from orchestrator.runtime.settings import load_settings

    store = await EventStore.open("sqlite:///:memory:")
    broker = InMemoryBroker()
    await broker.connect()
    try:
        for enabled in (False, True):
            config = _config(
                tmp_path,
                "m.yaml",
                f"metrics_enabled: {str(enabled).lower()}\nmetrics:\n  port: 0\n",
            )
            settings = load_settings(config)
            metrics, server = await _metrics(settings, broker, store, {})
            hooked = broker.metrics.observe_delivery is not None
            assert hooked is (store.stats.observe_append is not None) is enabled
            assert (metrics is not None) is (server is not None) is enabled
            if server is not None:
                assert _listening(server.port)
                await server.close()
    finally:
        await broker.disconnect()
        await store.close()
