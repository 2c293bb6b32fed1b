"""The ``orchestrator`` command as a user runs it: a real process, a real store file."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from eventstore import EventStore
from orchestrator.runtime.client import read_saga

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "workflows"
ORDER = {
    "order_id": "o-9",
    "sku": "widget",
    "quantity": 1,
    "address": "1 Main St",
    "card": "4242424242424242",
}


def cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    done = cli("--help", cwd=tmp_path)
    assert done.returncode == 0
    for command in ("run", "start", "status", "graph", "verify", "resume", "migrate", "demo"):
        assert command in done.stdout


def test_an_error_is_printed_as_is_even_with_brackets(tmp_path: Path) -> None:
    """Errors are plain text, not rich markup: `x[otel]` stays `x[otel]`."""
    done = cli("start", "x[otel]", "--workflows", str(ROOT / "workflows"), cwd=tmp_path)
    assert done.returncode == 2
    assert "unknown workflow 'x[otel]'" in done.stderr, done.stderr


def test_demo_completes_one_and_compensates_others_on_the_embedded_default(
    tmp_path: Path,
) -> None:
    done = cli("demo", "--workflows", str(WORKFLOWS), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ESG report for ACME Corp: completed" in done.stdout
    assert "scope 3 calculation fails: compensated" in done.stdout
    assert "declined card: compensated" in done.stdout
    assert "hash chains verified" in done.stdout
    assert (tmp_path / "sagaflow.sqlite").exists()  # the embedded default's file
    listed = cli("status", cwd=tmp_path)
    assert listed.returncode == 0
    assert listed.stdout.count("esg_report") == 2 and "compensated" in listed.stdout


def test_start_wait_runs_an_engine_when_none_is_running_and_exits_by_outcome(
    tmp_path: Path,
) -> None:
    args = ("--workflows", str(WORKFLOWS), "--pickup", "0.2")
    ok = cli(
        "start", "order_fulfilment", "--input", json.dumps(ORDER), "--wait", *args, cwd=tmp_path
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    saga_id = ok.stdout.split()[0]
    assert f"{saga_id}: completed" in ok.stdout
    declined = {**ORDER, "order_id": "o-10", "card": "4000000000000002"}
    bad = cli(
        "start", "order_fulfilment", "--input", json.dumps(declined), "--wait", *args, cwd=tmp_path
    )
    assert bad.returncode == 3, bad.stdout + bad.stderr
    assert "card declined" in bad.stdout
    shown = cli("status", saga_id, "--workflows", str(WORKFLOWS), cwd=tmp_path)
    assert shown.returncode == 0 and "charge_payment" in shown.stdout
    assert "completed" in shown.stdout


def test_a_running_engine_picks_up_sagas_started_from_another_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    engine = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "run",
            "--store",
            url,
            "--workflows",
            str(WORKFLOWS),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        done = cli(
            "start",
            "esg_report",
            "--store",
            url,
            "--workflows",
            str(WORKFLOWS),
            "--input",
            json.dumps(
                {
                    "company": "Initech",
                    "year": 2024,
                    "activities": {
                        "scope1": {"diesel_l": 10},
                        "scope2": {"electricity_kwh": 10},
                        "scope3": {"waste_t": 1},
                    },
                }
            ),
            "--wait",
            "--pickup",
            "20",
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        saga_id = done.stdout.split()[0]
    finally:
        engine.send_signal(signal.SIGTERM)
        out, _ = engine.communicate(timeout=30)
    assert engine.returncode == 0, out
    assert "engine running" in out

    async def check() -> None:
        store = await EventStore.open(url)
        state, _ = await read_saga(store, saga_id)
        await store.close()
        assert state is not None and state.status == "completed"

    asyncio.run(check())


@pytest.mark.parametrize(("fmt", "expected"), [("mermaid", "flowchart TD"), ("dot", "digraph")])
def test_graph_draws_steps_dependencies_and_compensations(
    tmp_path: Path,
    fmt: str,
    expected: str,
) -> None:
    done = cli("graph", "esg_report", "--format", fmt, "--workflows", str(WORKFLOWS), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(expected)
    for name in ("validate", "scope1", "scope2", "scope3", "aggregate", "publish"):
        assert name in done.stdout
    assert "compensation" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("start", "nope"), "unknown workflow 'nope'"),
        (("start", "esg_report", "--input", "[1]"), "--input must be a JSON object"),
        (("start", "esg_report", "--input", "{oops"), "not valid JSON"),
        (("status", "no-such-saga"), "no event store at sqlite:///sagaflow.sqlite"),
        (("graph", "nope"), "unknown workflow 'nope'"),
        (("run", "--workflows", "/does/not/exist"), "not a directory"),
        (("status", "--store", "mysql://x/y"), "unsupported store URL"),
        (("run", "--role", "worker"), "--role worker needs a broker other processes can reach"),
        (("run", "--role", "engine"), "--role engine needs a broker other processes can reach"),
    ],
)
def test_errors_are_one_clear_line_without_a_traceback(
    tmp_path: Path,
    args: tuple[str, ...],
    message: str,
) -> None:
    extra = () if "--workflows" in args else ("--workflows", str(WORKFLOWS))
    done = cli(*args, *extra, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    done = cli("--debug", "graph", "nope", "--workflows", str(WORKFLOWS), cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" in done.stderr


def test_migrate_upgrades_an_old_store_that_writing_commands_refuse(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"

    async def make_old() -> None:
        from datetime import UTC, datetime

        from eventstore._migrations import apply_migrations

        store = EventStore(url)
        async with store._write_connection() as conn, conn.begin():
            await apply_migrations(conn, "sqlite", lambda: datetime.now(UTC), upto=1)
        await store._engine.dispose()

    asyncio.run(make_old())
    esg = '{"company": "A", "year": 2024, "activities": {"scope1": {"diesel_l": 1}}}'
    start = ("start", "esg_report", "--input", esg, "--store", url, "--workflows", str(WORKFLOWS))
    refused = cli(*start, cwd=tmp_path)
    assert refused.returncode == 2 and "orchestrator migrate" in refused.stderr
    assert cli("status", "--store", url, cwd=tmp_path).returncode == 0  # reading needs none
    migrated = cli("migrate", "--store", url, cwd=tmp_path)
    assert migrated.returncode == 0 and "schema at version" in migrated.stdout
    assert cli(*start, cwd=tmp_path).returncode == 0


FIXABLE = """
from pathlib import Path

from orchestrator import RetryPolicy, StepError, WorkflowBuilder

fixable = WorkflowBuilder("fixable")
FIXED = Path(__file__).with_name("fixed")


def refund(data):
    if not FIXED.exists():
        raise RuntimeError("refund service down")


@fixable.step(compensation=refund,
              compensation_retry=RetryPolicy(max_attempts=2, initial_interval=0.01))
def pay(data):
    return {"paid": True}


@fixable.step(after=[pay], kind="pivot")
def confirm(data):
    raise StepError("confirmation refused", retryable=False)
"""


def test_a_failed_saga_ends_4_and_resume_finishes_its_compensation(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "fixable.py").write_text(FIXABLE)
    args = ("--workflows", str(flows))
    failed = cli("start", "fixable", "--wait", "--pickup", "0.1", *args, cwd=tmp_path)
    assert failed.returncode == 4, failed.stdout + failed.stderr
    saga_id = failed.stdout.split()[0]
    assert "compensation of pay" in failed.stdout and "refund service down" in failed.stdout
    (flows / "fixed").touch()
    resumed = cli("resume", saga_id, *args, cwd=tmp_path)
    assert resumed.returncode == 3, resumed.stdout + resumed.stderr
    assert f"{saga_id}: compensated" in resumed.stdout


def test_a_signing_engine_leaves_a_store_sealed_by_its_checkpoints(tmp_path: Path) -> None:
    """keygen, an engine configured to sign, a saga, a clean stop: every record is
    covered by a checkpoint that verifies under the public key (verify --sealed)."""
    assert cli("keygen", "--out", "checkpoint.key", cwd=tmp_path).returncode == 0
    config = tmp_path / "sagaflow.yaml"
    config.write_text(
        f"store: sqlite:///{tmp_path / 'signed.db'}\nworkflows: {WORKFLOWS}\n"
        "audit:\n  signing_key_file: checkpoint.key\n  checkpoint_every: 5\n"
    )
    engine = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "run", "--config", str(config)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        esg = {"company": "A", "year": 2024, "activities": {"scope1": {"diesel_l": 1}}}
        done = cli(
            "start", "esg_report", "--config", str(config), "--input", json.dumps(esg),
            "--wait", "--pickup", "20", cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        engine.send_signal(signal.SIGTERM)
        out, _ = engine.communicate(timeout=30)
    assert engine.returncode == 0, out
    verify = ("verify", "--config", str(config), "--public-key", "checkpoint.pub", "--json")
    sealed = cli(*verify, "--sealed", cwd=tmp_path)
    assert sealed.returncode == 0, sealed.stdout + sealed.stderr
    report = json.loads(sealed.stdout)
    assert report["checkpoints"]["count"] >= 2 and report["checkpoints"]["unsigned_after"] == 0
    assert report["checkpoints"]["signed_through"] == report["last_position"]
