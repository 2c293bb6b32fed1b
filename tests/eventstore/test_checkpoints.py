"""Signed checkpoints: written every N records, after T seconds, and on close; they
verify under the signer's public key and under no other; several writers of one
database all sign the one store-wide head."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from eventstore import (
    CHECKPOINT_STREAM,
    CHECKPOINT_TYPE,
    NO_STREAM,
    CheckpointSigner,
    EventStore,
    EventStoreError,
    NewRecord,
    PublicKeys,
    ReadOnlyError,
    SigningKeyError,
)


def ev(n: int) -> NewRecord:
    return NewRecord("event", "t", {"n": n})


async def _checkpoints(store: EventStore) -> list[dict[str, object]]:
    return [r.data for r in await store.read_stream(CHECKPOINT_STREAM)]


async def test_every_n_records_and_on_close(shared_url: str) -> None:
    signer = CheckpointSigner.generate()
    store = await EventStore.open(shared_url, signer=signer, checkpoint_every=4)
    for i in range(10):
        await store.append(f"s{i % 3}", [ev(i)], "any")
    during = await _checkpoints(store)
    await store.close()
    # after records 4 and 8 (+1 each for the checkpoint before): positions 5 and 10
    assert [c["position"] for c in during] == [4, 9]
    reader = await EventStore.open(shared_url, read_only=True)
    try:
        final = await _checkpoints(reader)
        assert [c["position"] for c in final] == [4, 9, 12]  # the shutdown checkpoint
        records = await reader.read_all()
        for checkpoint in final:
            signed = records[int(str(checkpoint["position"])) - 1]
            assert checkpoint["log_hash"] == signed.log_hash
            assert checkpoint["key_id"] == signer.key_id
        assert records[-1].type == CHECKPOINT_TYPE
        report = await reader.verify(keys=PublicKeys.from_pem(signer.public_pem()), sealed=True)
        assert report.ok, report.first_broken
        assert (report.checkpoints, report.signed_through, report.unsigned) == (3, 13, 0)
    finally:
        await reader.close()


async def test_after_the_interval_even_when_no_more_records_come(tmp_path: Path) -> None:
    signer = CheckpointSigner.generate()
    url = f"sqlite:///{tmp_path / 's.db'}"
    store = await EventStore.open(
        url, signer=signer, checkpoint_every=1000, checkpoint_interval=0.2
    )
    try:
        await store.append("a", [ev(1), ev(2)], NO_STREAM)
        for _ in range(100):
            if await _checkpoints(store):
                break
            await asyncio.sleep(0.05)
        assert [c["position"] for c in await _checkpoints(store)] == [2]
        await asyncio.sleep(0.5)  # nothing new to sign: no further checkpoint
        assert len(await _checkpoints(store)) == 1
    finally:
        await store.close()
    reader = await EventStore.open(url, read_only=True)
    try:
        assert len(await _checkpoints(reader)) == 1  # closing had nothing unsigned
    finally:
        await reader.close()


async def test_without_a_signer_nothing_is_signed(tmp_path: Path) -> None:
    store = await EventStore.open(f"sqlite:///{tmp_path / 's.db'}")
    try:
        await store.append("a", [ev(1)], NO_STREAM)
        with pytest.raises(EventStoreError, match="no signing key"):
            await store.checkpoint()
    finally:
        await store.close()
    reader = await EventStore.open(f"sqlite:///{tmp_path / 's.db'}", read_only=True)
    try:
        assert await _checkpoints(reader) == []
        report = await reader.verify(sealed=True)
        assert report.first_broken is not None
        assert (report.first_broken.reason, report.first_broken.position) == (
            "unsigned record",
            1,
        )
        with pytest.raises(ReadOnlyError):
            await reader.append("a", [ev(2)], 1)
    finally:
        await reader.close()


async def test_another_key_does_not_verify(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    store = await EventStore.open(url, signer=CheckpointSigner.generate())
    await store.append("a", [ev(1)], NO_STREAM)
    forced = await store.checkpoint()
    await store.close()
    other = CheckpointSigner.generate()
    reader = await EventStore.open(url, read_only=True)
    try:
        report = await reader.verify(keys=PublicKeys.from_pem(other.public_pem()))
        broken = report.first_broken
        assert broken is not None and broken.reason == "bad signature"
        assert (broken.stream_id, broken.position) == (CHECKPOINT_STREAM, forced.last_position)
        assert other.key_id in broken.expected
        unchecked = await reader.verify()  # without keys: the structure still holds
        assert unchecked.ok and unchecked.checkpoints == 1 and not unchecked.signatures_checked
    finally:
        await reader.close()


async def test_writers_sharing_a_database_sign_the_one_head(shared_url: str) -> None:
    signer = CheckpointSigner.generate()
    stores = [
        await EventStore.open(shared_url, signer=signer, checkpoint_every=5) for _ in range(3)
    ]

    async def write(store: EventStore, w: int) -> None:
        for i in range(20):
            await store.append(f"w{w}-{i % 4}", [ev(i)], "any")

    await asyncio.gather(*(write(s, w) for w, s in enumerate(stores)))
    for store in stores:
        await store.close()
    reader = await EventStore.open(shared_url, read_only=True)
    try:
        report = await reader.verify(keys=PublicKeys.from_pem(signer.public_pem()), sealed=True)
        assert report.ok, report.first_broken
        assert report.checkpoints >= 3 * 4  # each writer: every 5 of its 20, and at close
        assert report.records_checked == 60 + report.checkpoints
    finally:
        await reader.close()


def test_keys_that_are_not_ed25519_pem_are_refused_by_name(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    with pytest.raises(SigningKeyError, match=r"junk\.pem"):
        CheckpointSigner.from_file(junk)
    with pytest.raises(SigningKeyError, match=r"missing\.pem"):
        CheckpointSigner.from_file(tmp_path / "missing.pem")
    signer = CheckpointSigner.generate()
    with pytest.raises(SigningKeyError, match=r"not an ed25519 private key|PEM private key"):
        CheckpointSigner.from_pem(signer.public_pem())
    with pytest.raises(SigningKeyError, match="PEM public key"):
        PublicKeys.from_pem(signer.private_pem())
    assert json.loads(json.dumps(signer.key_id)) == signer.key_id and len(signer.key_id) == 16
