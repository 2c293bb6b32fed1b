"""docs/CHAIN.md's signed checkpoints, exports and known disagreements: its
standard-library verifier and ``EventStore.verify()`` agree on real SQLite store files
(checkpoints checked with the public key, tampered checkpoints named, exports verified
as the store verifies them)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from eventstore import (
    CHECKPOINT_STREAM,
    NO_STREAM,
    CheckpointSigner,
    EventStore,
    InvalidRecordError,
    NewRecord,
    StoredRecord,
    canonical_json,
    verify_records,
)
from tests.eventstore.chain_forgery import (
    Tampering,
    agree,
    by_sql,
    fill,
    forge,
    insert,
    rechain,
    run_snippet,
    set_field,
    stored_rows,
    tamper,
    then_rechain,
    verdict,
    verify,
)

# -- signed checkpoints -------------------------------------------------------------------


async def _signed(tmp_path: Path) -> tuple[Path, Path, CheckpointSigner, list[StoredRecord]]:
    signer = CheckpointSigner.generate()
    key = tmp_path / "checkpoint.pub"
    key.write_bytes(signer.public_pem())
    db = tmp_path / "events.db"
    rows = await fill(db, signer)
    assert [(r.stream_id, r.version) for r in rows] == [
        ("a", 1), ("a", 2), (CHECKPOINT_STREAM, 1), ("b", 1), ("a", 3), (CHECKPOINT_STREAM, 2),
        ("b", 2), ("c", 1), (CHECKPOINT_STREAM, 3),
    ]  # fmt: skip
    return db, key, signer, rows


async def test_checkpoints_are_verified_with_the_public_key(tmp_path: Path) -> None:
    db, key, _, rows = await _signed(tmp_path)
    report = await verify(db, key, sealed=True)
    assert report.ok and (report.checkpoints, report.signed_through, report.unsigned) == (3, 9, 0)
    assert await agree(tmp_path, db, key) == [
        "OK 9 records in 4 streams",
        f"head position 9 log_hash {rows[-1].log_hash}",
        "signed through position 9 by 3 checkpoints; 0 records after the last",
    ]
    assert (await agree(tmp_path, db))[2] == (
        "3 checkpoints up to position 9, signatures not checked (no public key given); "
        "0 records after the last"
    )
    data = json.loads(rows[5].data)
    assert set(data) == {"key_id", "log_hash", "position", "signature", "signed_at"}
    assert (data["position"], data["log_hash"]) == (5, rows[4].log_hash)
    assert data["signed_at"] == rows[5].recorded_at


def _checkpoint_data(
    position: int, change: Callable[[dict[str, object]], dict[str, object]]
) -> Tampering:
    """Rewrite the checkpoint at ``position``'s data, then re-chain the store to its end."""

    def run(db: Path) -> None:
        row = stored_rows(db)[position - 1]
        data = change(json.loads(row.data))
        tamper(db, set_field("data", position, canonical_json(data)))
        rechain(db, position)

    return run


def _flip(data: dict[str, object]) -> dict[str, object]:
    signature = str(data["signature"])
    return data | {"signature": signature[:-1] + ("0" if signature[-1] != "0" else "1")}


OTHER = CheckpointSigner.generate()
CP2 = f"stream {CHECKPOINT_STREAM!r} version 2 (position 6)"
CP3 = f"stream {CHECKPOINT_STREAM!r} version 3 (position 9)"
# Each: the tampering, what a verification without the key says, and with it.
CHECKPOINT_TAMPERINGS: dict[str, tuple[Tampering, str, str]] = {
    # The last checkpoint: any change to an earlier one moves the head the next one signed.
    "a forged signature": (
        _checkpoint_data(9, _flip),
        "OK 9 records in 4 streams",
        f"{CP3}: bad signature",
    ),
    "signed by another key": (
        _checkpoint_data(
            9, lambda d: json.loads(OTHER.data_json(8, str(d["log_hash"]), str(d["signed_at"])))
        ),
        "OK 9 records in 4 streams",
        f"{CP3}: bad signature",
    ),
    "an earlier checkpoint with a forged signature": (
        _checkpoint_data(6, _flip),
        f"{CP3}: checkpoint mismatch",
        f"{CP2}: bad signature",
    ),
    "a checkpoint of another head": (
        _checkpoint_data(6, lambda d: d | {"position": 4}),
        f"{CP2}: checkpoint mismatch",
        f"{CP2}: checkpoint mismatch",
    ),
    "a checkpoint without its signature": (
        _checkpoint_data(6, lambda d: {k: v for k, v in d.items() if k != "signature"}),
        f"{CP2}: unreadable record",
        f"{CP2}: unreadable record",
    ),
    "the store re-chained past a checkpoint": (
        then_rechain(by_sql(set_field("data", 1, "{}")), 1),
        f"stream {CHECKPOINT_STREAM!r} version 1 (position 3): checkpoint mismatch",
        f"stream {CHECKPOINT_STREAM!r} version 1 (position 3): checkpoint mismatch",
    ),
    "… and the checkpoints rewritten to match": (
        then_rechain(by_sql(set_field("data", 1, "{}")), 1, fix_checkpoints=True),
        "OK 9 records in 4 streams",
        f"stream {CHECKPOINT_STREAM!r} version 1 (position 3): bad signature",
    ),
}


@pytest.mark.parametrize("what", CHECKPOINT_TAMPERINGS)
async def test_a_tampered_checkpoint_is_named(tmp_path: Path, what: str) -> None:
    db, key, _, _ = await _signed(tmp_path)
    tampering, without_key, with_key = CHECKPOINT_TAMPERINGS[what]
    tampering(db)
    for given_key, expected in ((None, without_key), (key, with_key)):
        line = (await agree(tmp_path, db, given_key))[0]
        assert line == expected or line.startswith(f"{expected}: ")


async def test_sealed_names_an_extended_tail_and_a_cut_that_is_not_on_a_checkpoint(
    tmp_path: Path,
) -> None:
    db, key, _, rows = await _signed(tmp_path)
    extended = tmp_path / "extended.db"
    shutil.copy(db, extended)
    insert(extended, forge(rows[7], rows[8], 10, data='{"forged":true}'))
    assert (await agree(tmp_path, extended, key))[2] == (
        "signed through position 9 by 3 checkpoints; 1 records after the last"
    )
    said = verdict(await verify(extended, key, sealed=True))
    assert said == "stream 'c' version 2 (position 10): unsigned record"
    # Then a look-alike checkpoint of the new head: --sealed without the key is fooled.
    forged = stored_rows(extended)[-1]
    head = json.loads(OTHER.data_json(10, forged.log_hash, rows[8].recorded_at))
    insert(extended, forge(rows[8], forged, 11, data=canonical_json(head)))
    assert verdict(await verify(extended, sealed=True)) == "OK 11 records in 4 streams"
    said = verdict(await verify(extended, key, sealed=True))
    assert said == f"stream {CHECKPOINT_STREAM!r} version 4 (position 11): bad signature"

    tamper(db, "DELETE FROM records WHERE position >= 9")  # the last checkpoint cut off
    assert (
        verdict(await verify(db, key, sealed=True))
        == "stream 'b' version 2 (position 7): unsigned record"
    )
    tamper(db, "DELETE FROM records WHERE position >= 7")  # a cut right after one
    assert verdict(await verify(db, key, sealed=True)) == "OK 6 records in 3 streams"


# -- exports ------------------------------------------------------------------------------


async def test_the_snippet_verifies_an_export_as_the_store_does(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    await fill(db)
    store = await EventStore.open(f"sqlite:///{db}", read_only=True)
    try:
        records = await store.read_stream("a")
    finally:
        await store.close()
    target = tmp_path / "a.jsonl"

    def export(lines: list[str]) -> list[str]:
        target.write_text("".join(f"{line}\n" for line in lines), "utf-8")
        done = run_snippet(tmp_path, target)
        assert done.stderr == "" and done.returncode == (0 if done.stdout.startswith("OK") else 1)
        return done.stdout.splitlines()

    lines = [json.dumps(r._asdict(), ensure_ascii=False) for r in records]
    assert export(lines) == ["OK 3 records in 1 streams", f"head a version 3 {records[-1].hash}"]
    assert verify_records(records).ok

    edited = [*records[:1], records[1]._replace(data={"total": 13.5}), *records[2:]]
    said = verdict(verify_records(edited))
    assert said == "stream 'a' version 2 (position 2): hash mismatch"
    assert export([json.dumps(r._asdict()) for r in edited])[0].startswith(f"{said}: ")

    duplicate = lines[1].replace('"data": {', '"data": {"total": 0, ', 1)
    assert export([lines[0], duplicate, lines[2]])[0].startswith("line 2: unreadable record")
    assert export([lines[0], lines[1].replace("12.5", "NaN")])[0].startswith(
        "line 2: unreadable record"
    )
    assert export([lines[0], "[1]"])[0].startswith("line 2: unreadable record")


# -- known disagreements, kept as reproductions -------------------------------------------


async def test_a_recorded_at_not_in_the_writer_s_form_is_unreadable(tmp_path: Path) -> None:
    """recorded_at and prev_hash go into the hashed body as they are: text that would
    close the string and add a key is refused by both verifiers, not hashed."""
    db = tmp_path / "events.db"
    await fill(db)
    tamper(db, set_field("recorded_at", 6, 'x","forged":"1'))
    rechain(db, 6)
    lines = await agree(tmp_path, db)
    assert "(position 6): unreadable record" in lines[0], lines


async def test_an_append_to_the_checkpoint_stream_is_refused(tmp_path: Path) -> None:
    """The stream is the store's own: only the writer appends signed checkpoints."""
    store = await EventStore.open(f"sqlite:///{tmp_path / 'events.db'}")
    try:
        record = NewRecord("event", "eventstore.checkpoint", {"note": "mine"})
        with pytest.raises(InvalidRecordError, match="only the writer appends"):
            await store.append(CHECKPOINT_STREAM, [record], NO_STREAM)
        assert await store.last_position() == 0
    finally:
        await store.close()
