"""A store written by an earlier release (``orchestrator demo`` at 0.1, before the
orchestrator was split into subpackages) still opens, verifies and replays through
today's command line: the stored record format is a contract."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from click.testing import CliRunner

from orchestrator.cli import cli

OLD_STORE = Path(__file__).parent / "stores" / "demo-0.1.sqlite"
WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


def _saga_ids(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT DISTINCT stream_id FROM records ORDER BY stream_id").fetchall()
    return [stream.removeprefix("saga-") for (stream,) in rows]


def test_a_store_from_an_earlier_release_verifies_and_replays(tmp_path: Path) -> None:
    store = tmp_path / "old.sqlite"
    shutil.copy(OLD_STORE, store)  # the command opens it; the fixture stays as recorded
    url = f"sqlite:///{store}"
    runner = CliRunner()
    verified = runner.invoke(cli, ["verify", "--store", url], obj={})
    assert verified.exit_code == 0, verified.output
    assert "52 records" in verified.output
    sagas = _saga_ids(store)
    assert len(sagas) == 4
    for saga_id in sagas:
        replayed = runner.invoke(
            cli,
            ["replay", saga_id, "--verify", "--store", url, "--workflows", str(WORKFLOWS)],
            obj={},
        )
        assert replayed.exit_code == 0, replayed.output
