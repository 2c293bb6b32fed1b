"""``orchestrator replay``, ``verify`` and ``export`` on stores an engine wrote
(``orchestrator demo``), through click's runner: output shape and exit codes."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrator.cli import cli
from tests.audit.helpers import ROOT, run_chain_snippet


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), obj={}, catch_exceptions=False)


def _demo(url: str) -> None:
    done = _invoke("demo", "--store", url, "--workflows", str(ROOT / "workflows"))
    assert done.exit_code == 0, done.output


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("audit_cli") / "demo.db"
    _demo(f"sqlite:///{db}")
    return db


@pytest.fixture
def db(demo_db: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "store.db"
    shutil.copy(demo_db, copy)
    return copy


def _sagas(db: Path) -> dict[str, str]:
    """Saga id → how it ended ('esg_report:compensated', …)."""
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT f.stream_id, s.data, f.data FROM records f JOIN records s "
        "ON s.stream_id = f.stream_id AND s.type = 'saga.started' WHERE f.type = 'saga.finish'"
    ).fetchall()
    conn.close()
    return {
        sid[len("saga-") :]: f"{json.loads(s)['workflow']}:{json.loads(f)['status']}"
        for sid, s, f in rows
    }


def _saga(db: Path, ending: str) -> str:
    return next(saga for saga, how in _sagas(db).items() if how == ending)


def _raw(db: Path, sql: str) -> None:
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER records_no_update")
    conn.execute(sql)
    conn.commit()
    conn.close()


def _args(db: Path, workflows: Path = ROOT / "workflows") -> list[str]:
    return ["--store", f"sqlite:///{db}", "--workflows", str(workflows)]


def test_replay_shows_the_timeline_then_the_rebuilt_state(db: Path) -> None:
    saga = _saga(db, "esg_report:compensated")
    done = _invoke("replay", saga, *_args(db))
    assert done.exit_code == 0, done.output
    out = done.output
    assert f"saga {saga}: 18 records from " in out
    for needle in ("│ cmd   │ start", "│ event │ started", "│ cmd   │ finish", "│ v10 "):
        assert needle in out
    assert out.index("18 records from") < out.index(f"saga {saga} (esg_report): compensated")
    assert "why: scope3 (attempt 1): injected failure at scope3" in out
    assert "verified" not in out  # no --verify, no verdict


def test_replay_json_has_every_record_with_its_fields(db: Path) -> None:
    saga = _saga(db, "order_fulfilment:completed")
    done = _invoke("replay", saga, "--json", *_args(db))
    assert done.exit_code == 0
    doc = json.loads(done.output)
    conn = sqlite3.connect(db)
    stored = conn.execute(
        "SELECT version, position, type, hash FROM records WHERE stream_id = ? ORDER BY version",
        (f"saga-{saga}",),
    ).fetchall()
    conn.close()
    assert [(e["version"], e["position"], e["type"], e["hash"]) for e in doc["timeline"]] == stored
    first_exec = next(e for e in doc["timeline"] if e["type"] == "saga.execute_step")
    assert (first_exec["step"], first_exec["attempt"]) == ("reserve_stock", 1)
    assert first_exec["causation"] == "v2"  # decided on saga.started
    reply = next(e for e in doc["timeline"] if e["type"] == "saga.step_succeeded")
    assert reply["causation"] == f"{saga}:reserve_stock:1"
    assert set(first_exec) == {
        "version", "position", "recorded_at", "kind", "type", "step", "attempt", "hash",
        "causation",
    }  # fmt: skip
    assert doc["state"]["status"] == "completed" and "verify" not in doc
    assert doc["definition"]["changed"] is False


def test_replay_verify_is_0_when_chain_and_decisions_hold(db: Path) -> None:
    for saga in _sagas(db):
        done = _invoke("replay", saga, "--verify", *_args(db))
        assert done.exit_code == 0, done.output
        assert "chain verified" in done.output and "decisions verified" in done.output


def test_replay_verify_is_1_when_the_chain_is_broken(db: Path) -> None:
    saga = _saga(db, "order_fulfilment:compensated")
    _raw(db, f"UPDATE records SET data = '{{}}' WHERE stream_id = 'saga-{saga}' AND version = 4")
    done = _invoke("replay", saga, "--verify", *_args(db))
    assert done.exit_code == 1, done.output
    assert f"chain broken: stream 'saga-{saga}' version 4" in done.output.replace("\n", "")
    doc = json.loads(_invoke("replay", saga, "--verify", "--json", *_args(db)).output)
    broken = doc["verify"]["chain"]["first_broken"]
    assert (broken["version"], broken["reason"]) == (4, "hash mismatch")
    assert doc["verify"]["exit_code"] == 1


def _changed_workflows(tmp_path: Path) -> Path:
    target = tmp_path / "workflows"
    shutil.copytree(ROOT / "workflows", target)
    order = target / "order_fulfilment.py"
    text = order.read_text()
    assert "max_attempts=2), timeout=15" in text
    order.write_text(text.replace("max_attempts=2), timeout=15", "max_attempts=2), timeout=20"))
    return target


def test_replay_verify_is_2_on_divergence_and_says_the_definition_changed(
    db: Path, tmp_path: Path
) -> None:
    saga = _saga(db, "order_fulfilment:completed")
    args = _args(db, _changed_workflows(tmp_path))
    done = _invoke("replay", saga, "--verify", "--json", *args)
    assert done.exit_code == 2
    doc = json.loads(done.output)
    assert doc["definition"]["changed"] is True
    divergence = doc["verify"]["divergence"]
    charge = next(e for e in doc["timeline"] if e["step"] == "charge_payment")
    assert divergence["version"] == charge["version"] == divergence["after_version"] + 1
    assert divergence["expected"]["data"]["timeout"] == 20.0
    assert divergence["recorded"]["data"]["timeout"] == 15.0
    text = _invoke("replay", saga, "--verify", *args).output.replace("\n", " ")
    assert "definition changed:" in text and "changed since this saga started" in text
    assert f"divergence at record version {charge['version']}" in text
    plain = _invoke("replay", saga, *args)  # without --verify: drift said, exit 0
    assert plain.exit_code == 0 and "definition changed:" in plain.output


def test_replay_verify_is_2_when_the_workflow_is_not_loaded(db: Path, tmp_path: Path) -> None:
    saga = _saga(db, "esg_report:completed")
    (tmp_path / "empty").mkdir()
    done = _invoke("replay", saga, "--verify", *_args(db, tmp_path / "empty"))
    assert done.exit_code == 2 and "is not loaded" in done.output


def test_replay_of_an_unknown_saga_is_one_line_and_exit_2(db: Path) -> None:
    done = CliRunner().invoke(cli, ["replay", "nope", *_args(db)], obj={})
    assert done.exit_code == 2
    assert done.stderr.strip().startswith("error: no saga 'nope'")
    assert len(done.stderr.strip().splitlines()) == 1 and done.stdout == ""


def test_verify_counts_the_whole_store_and_names_the_first_broken_record(db: Path) -> None:
    done = _invoke("verify", *_args(db))
    conn = sqlite3.connect(db)
    count, streams, last_hash = conn.execute(
        "SELECT COUNT(*), COUNT(DISTINCT stream_id), "
        "(SELECT hash FROM records ORDER BY position DESC LIMIT 1) FROM records"
    ).fetchone()
    conn.close()
    assert done.exit_code == 0
    assert f"chain verified: {count} records in {streams} streams of the store" in done.output
    assert f"last hash     {last_hash}" in done.output
    _raw(db, "UPDATE records SET hash = 'ab' WHERE position = 7")
    broken = _invoke("verify", *_args(db))
    assert broken.exit_code == 1
    lines = broken.output.replace("\n  ", "\n  ").splitlines()
    assert "(position 7): hash mismatch" in broken.output.replace("\n", " ")
    assert any(line.startswith("  expected: ") and len(line) == 12 + 64 for line in lines)
    assert "  found:    ab" in lines
    doc = json.loads(_invoke("verify", "--json", *_args(db)).output)
    assert doc["ok"] is False and doc["first_broken"]["position"] == 7
    assert doc["first_broken"]["found"] == "ab" and doc["records_checked"] == 7


def test_verify_one_stream(db: Path) -> None:
    saga = _saga(db, "esg_report:completed")
    doc = json.loads(_invoke("verify", "--stream", f"saga-{saga}", "--json", *_args(db)).output)
    assert doc["ok"] and doc["streams_checked"] == 1 and doc["stream_id"] == f"saga-{saga}"
    assert doc["records_checked"] == len(
        json.loads(_invoke("replay", saga, "--json", *_args(db)).output)["timeline"]
    )


def test_export_is_jsonl_with_every_field_and_the_documented_snippet_verifies_it(
    db: Path, tmp_path: Path
) -> None:
    saga = _saga(db, "esg_report:compensated")
    target = tmp_path / "saga.jsonl"
    done = _invoke("export", saga, "--format", "jsonl", "-o", str(target), *_args(db))
    assert done.exit_code == 0 and done.output == ""
    lines = target.read_text("utf-8").splitlines()
    assert _invoke("export", saga, *_args(db)).output.splitlines() == lines  # stdout too
    rows = [json.loads(line) for line in lines]
    assert list(rows[0]) == [
        "position", "stream_id", "version", "kind", "type", "data", "metadata",
        "recorded_at", "prev_hash", "hash", "log_hash",
    ]  # fmt: skip
    assert [r["version"] for r in rows] == list(range(1, len(rows) + 1))
    assert isinstance(rows[0]["data"], dict) and rows[0]["metadata"]["saga_id"] == saga
    ok = run_chain_snippet(tmp_path, target)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines()[0] == f"OK {len(rows)} records in 1 streams"
    assert ok.stdout.splitlines()[1] == f"head saga-{saga} version {len(rows)} {rows[-1]['hash']}"

    rows[3]["data"]["output"] = {"forged": True}  # an auditor's copy, edited
    target.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    bad = run_chain_snippet(tmp_path, target)
    assert bad.returncode == 1
    expected = f"stream 'saga-{saga}' version 4 (position {rows[3]['position']}): hash mismatch"
    assert bad.stdout.startswith(expected)
    del rows[3]  # a record dropped from the export
    target.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    assert "version 5" in run_chain_snippet(tmp_path, target).stdout
    assert "missing version: expected 4" in run_chain_snippet(tmp_path, target).stdout


def test_export_of_an_unknown_saga_is_exit_2(db: Path) -> None:
    done = CliRunner().invoke(cli, ["export", "nope", *_args(db)], obj={})
    assert done.exit_code == 2 and "no saga 'nope'" in done.stderr


@pytest.mark.postgres
def test_replay_and_verify_on_postgresql(postgres_url: str) -> None:
    _demo(postgres_url)
    args = ["--store", postgres_url, "--workflows", str(ROOT / "workflows")]
    assert _invoke("verify", *args).exit_code == 0
    doc = json.loads(_invoke("verify", "--json", *args).output)
    assert doc["ok"] and doc["streams_checked"] == 4
    listing = _invoke("status", *args).output
    saga = next(line.split()[1] for line in listing.splitlines() if "compensated" in line)
    saga = saga.rstrip("…")
    full = next(s for s in doc_streams(postgres_url) if s.startswith(saga))
    replayed = _invoke("replay", full, "--verify", *args)
    assert replayed.exit_code == 0 and "decisions verified" in replayed.output


def doc_streams(url: str) -> list[str]:
    import asyncio

    from eventstore import EventStore

    async def run() -> list[str]:
        store = await EventStore.open(url)
        try:
            return [s.stream_id.removeprefix("saga-") for s in await store.streams("saga-")]
        finally:
            await store.close()

    return asyncio.run(run())
