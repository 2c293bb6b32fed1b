"""The audit commands hold to what they promise: read-only means read-only, a broken
or unreadable record is exit 1 with the chain report first (never a traceback), --json
always prints JSON, and signed checkpoints are checked, noted and held to."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from eventstore import (
    NO_STREAM,
    CheckpointSigner,
    EventStore,
    NewRecord,
    StoredRecord,
    log_link,
    record_hash,
)
from orchestrator.cli import cli
from tests.audit.helpers import ROOT

WORKFLOWS = str(ROOT / "workflows")


def _invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), obj={}, catch_exceptions=False, env=env)


def _listing(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("trust_cli") / "demo.db"
    done = _invoke("demo", "--store", f"sqlite:///{db}", "--workflows", WORKFLOWS)
    assert done.exit_code == 0, done.output
    return db


READ_ONLY = [
    ["verify"],
    ["verify", "--json"],
    ["replay", "abc"],
    ["replay", "abc", "--verify", "--json"],
    ["export", "abc"],
    ["status"],
    ["status", "abc"],
]


@pytest.mark.parametrize("command", READ_ONLY, ids=" ".join)
@pytest.mark.parametrize("content", [None, b""], ids=["missing file", "empty file"])
def test_read_only_commands_never_create_or_write_a_store(
    tmp_path: Path, command: list[str], content: bytes | None
) -> None:
    path = tmp_path / "typo.sqlite"
    if content is not None:
        path.write_bytes(content)
    before = _listing(tmp_path)
    done = _invoke(*command, "--store", f"sqlite:///{path}", "--workflows", WORKFLOWS)
    assert done.exit_code == 2, done.output
    assert _listing(tmp_path) == before
    if "--json" in command:
        doc = json.loads(done.stdout)
        assert doc["ok"] is False and "typo.sqlite" in doc["error"]
    else:
        assert done.stdout == ""
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("error: ") and "typo.sqlite" in line


def test_a_config_file_that_cannot_be_read_is_one_line(tmp_path: Path) -> None:
    done = _invoke("status", "--config", str(tmp_path / "missing.yaml"))
    assert done.exit_code == 2
    assert done.stderr.startswith("error: cannot read config")
    as_json = _invoke("verify", "--json", "--config", str(tmp_path / "missing.yaml"))
    assert as_json.exit_code == 2 and json.loads(as_json.stdout)["ok"] is False


def _forge_data(db: Path, position: int, data: str) -> tuple[str, int]:
    """Replace a record's data with ``data``, hash and log hash recomputed from it, as a
    forger who knows the spec would; returns the record's stream and version."""
    conn = sqlite3.connect(db)
    for trigger in ("records_no_update", "records_no_delete", "records_append_only"):
        conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    row = conn.execute(
        "SELECT stream_id, version, kind, type, metadata, recorded_at, prev_hash "
        "FROM records WHERE position = ?",
        (position,),
    ).fetchone()
    stream, version, kind, type_, metadata, at, prev = row
    forged = StoredRecord(position, stream, version, kind, type_, data, metadata, at, prev, "", "")
    new_hash = record_hash(forged)
    (prev_log,) = conn.execute(
        "SELECT log_hash FROM records WHERE position = ?", (position - 1,)
    ).fetchone()
    conn.execute(
        "UPDATE records SET data = ?, hash = ?, log_hash = ? WHERE position = ?",
        (data, new_hash, log_link(prev_log, new_hash, position), position),
    )
    conn.commit()
    conn.close()
    return stream, version


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ('{"step": "scope1", ', "unreadable record"),
        ('["a list", "not an object"]', "unreadable record"),
        ('{"attempt":1,"attempt":2}', "non-canonical text"),
    ],
    ids=["invalid JSON", "a list", "a duplicate key"],
)
def test_replay_verify_names_an_unreadable_record_and_exits_1(
    demo_db: Path, tmp_path: Path, data: str, reason: str
) -> None:
    db = tmp_path / "store.db"
    db.write_bytes(demo_db.read_bytes())
    conn = sqlite3.connect(db)
    (stream, position) = conn.execute(
        "SELECT stream_id, position FROM records WHERE type = 'saga.started' LIMIT 1"
    ).fetchone()
    conn.close()
    forged_stream, version = _forge_data(db, position + 1, data)
    assert forged_stream == stream
    saga = stream.removeprefix("saga-")
    args = ["--store", f"sqlite:///{db}", "--workflows", WORKFLOWS]

    done = _invoke("replay", saga, "--verify", *args)
    assert done.exit_code == 1, done.output
    first = done.stdout.splitlines()[0]
    assert first.startswith("chain broken:") and f"version {version} " in first
    assert f"(position {position + 1}): {reason}" in first

    as_json = _invoke("replay", saga, "--verify", "--json", *args)
    assert as_json.exit_code == 1
    broken = json.loads(as_json.stdout)["verify"]["chain"]["first_broken"]
    assert (broken["position"], broken["reason"]) == (position + 1, reason)

    store_wide = _invoke("verify", "--json", *args)
    assert store_wide.exit_code == 1
    assert json.loads(store_wide.stdout)["first_broken"]["position"] == position + 1

    plain = _invoke("replay", saga, *args)  # without --verify: one line, exit 2
    if reason == "unreadable record":
        assert plain.exit_code == 2
        assert f"(position {position + 1}) cannot be read" in plain.stderr


async def _signed_store(url: str, signer: CheckpointSigner) -> None:
    store = await EventStore.open(url, signer=signer, checkpoint_every=3)
    for i in range(7):
        await store.append(f"s{i % 2}", [NewRecord("event", "t", {"i": i})], "any")
    await store.close()


def test_keygen_then_verify_signatures_seal_and_heads(tmp_path: Path) -> None:
    key = tmp_path / "checkpoint.key"
    made = _invoke("keygen", "--out", str(key))
    assert made.exit_code == 0, made.output
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert _invoke("keygen", "--out", str(key)).exit_code == 2  # never overwritten silently
    signer = CheckpointSigner.from_file(key)
    assert f"key id {signer.key_id}" in made.stdout
    db = tmp_path / "signed.sqlite"
    asyncio.run(_signed_store(f"sqlite:///{db}", signer))
    store = ["--store", f"sqlite:///{db}"]
    pub = ["--public-key", str(tmp_path / "checkpoint.pub")]
    heads = tmp_path / "head.json"

    done = _invoke("verify", *store, *pub, "--sealed", "--heads", str(heads))
    assert done.exit_code == 0, done.output
    assert "signatures verified; signed through position" in done.stdout
    noted = json.loads(heads.read_text())
    assert noted["position"] == 10 and len(noted["log_hash"]) == 64  # 7 records, 3 signed

    other = tmp_path / "other.key"
    _invoke("keygen", "--out", str(other))
    wrong = _invoke("verify", *store, "--public-key", str(tmp_path / "other.pub"), "--json")
    assert wrong.exit_code == 1
    assert json.loads(wrong.stdout)["first_broken"]["reason"] == "bad signature"

    # a forged record appended at the end, every hash recomputed: the chain holds, but
    # the store no longer ends with a checkpoint, and the noted head is still there
    asyncio.run(_forged_append(db))
    assert _invoke("verify", *store, *pub).exit_code == 0
    sealed = _invoke("verify", *store, *pub, "--sealed")
    assert sealed.exit_code == 1 and "unsigned record" in sealed.stdout
    assert _invoke("verify", *store, "--against", str(heads)).exit_code == 0

    conn = sqlite3.connect(db)  # now cut the end off: the noted head is gone
    conn.execute("DELETE FROM records WHERE position >= 9")
    conn.commit()
    conn.close()
    cut = _invoke("verify", *store, "--against", str(heads), "--json")
    assert cut.exit_code == 1
    assert json.loads(cut.stdout)["first_broken"]["reason"] == "head missing"


async def _forged_append(db: Path) -> None:
    conn = sqlite3.connect(db)
    for trigger in ("records_no_update", "records_no_delete", "records_append_only"):
        conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    position, log = conn.execute(
        "SELECT position, log_hash FROM records ORDER BY position DESC LIMIT 1"
    ).fetchone()
    version, prev = conn.execute(
        "SELECT version, hash FROM records WHERE stream_id = 's0' ORDER BY version DESC LIMIT 1"
    ).fetchone()
    at = "2026-12-01T00:00:00.000000Z"
    data = '{"forged":true}'
    forged = StoredRecord(
        position + 1, "s0", version + 1, "event", "t", data, "{}", at, prev, "", ""
    )
    digest = record_hash(forged)
    conn.execute(
        "INSERT INTO records VALUES (?, 's0', ?, 'event', 't', '{\"forged\":true}', '{}', ?, ?, "
        "?, ?)",
        (position + 1, version + 1, at, prev, digest, log_link(log, digest, position + 1)),
    )
    conn.commit()
    conn.close()


def test_the_engine_signs_with_the_configured_key(tmp_path: Path) -> None:
    """``audit:`` in the configuration, the key's PEM text in the environment."""
    signer = CheckpointSigner.generate()
    (tmp_path / "checkpoint.pub").write_bytes(signer.public_pem())
    config = tmp_path / "sagaflow.yaml"
    config.write_text(
        f"store: sqlite:///{tmp_path / 'store.sqlite'}\n"
        "audit:\n  checkpoint_every: 2\n"
        f"  public_key_files: [{tmp_path / 'checkpoint.pub'}]\n"
    )
    from orchestrator.runtime.settings import load_settings

    env = {"GREENLANG_AUDIT_SIGNING_KEY": signer.private_pem().decode()}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        settings = load_settings(config)
        options = settings.audit.store_options()
    assert options["signer"].key_id == signer.key_id and options["checkpoint_every"] == 2

    async def run() -> None:
        store = await EventStore.open(settings.store, **options)
        await store.append("a", [NewRecord("event", "t", {})] * 3, NO_STREAM)
        await store.close()

    asyncio.run(run())
    done = _invoke("verify", "--config", str(config), "--sealed")
    assert done.exit_code == 0, done.output
    assert "signatures verified" in done.stdout


def test_sealed_without_a_public_key_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "signed.sqlite"
    asyncio.run(_signed_store(f"sqlite:///{db}", CheckpointSigner.generate()))
    done = _invoke("verify", "--store", f"sqlite:///{db}", "--sealed")
    assert done.exit_code == 2 and "--sealed needs --public-key" in done.stderr
