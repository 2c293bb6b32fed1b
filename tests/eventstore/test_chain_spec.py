"""The chain as docs/CHAIN.md specifies it: its standard-library-only verifier agrees
with the store on a real store file, and the fast path hashes exactly the spec's bytes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from eventstore import NO_STREAM, EventStore, NewRecord, canonical_json
from eventstore._canonical import body_json

DOC = Path(__file__).resolve().parents[2] / "docs" / "CHAIN.md"


def _snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/CHAIN.md should hold exactly one python block"
    return blocks[0]


def _run_snippet(tmp_path: Path, db: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "verify_chain.py"
    script.write_text(_snippet())
    return subprocess.run(
        [sys.executable, "-I", str(script), str(db)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_documented_snippet_verifies_a_real_store_file(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    store = await EventStore.open(f"sqlite:///{db}")
    await store.append(
        "order-1", [NewRecord("event", "placed", {"total": 12.5, "items": ["a", "ü"]})], NO_STREAM
    )
    await store.append(
        "order-2", [NewRecord("command", "ship", {}, {"actor": "ops"})] * 3, NO_STREAM
    )
    await store.append("order-1", [NewRecord("event", "paid", {"by": None})], 1)
    await store.close()

    ok = _run_snippet(tmp_path, db)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip() == "OK 5 records in 2 streams"

    import sqlite3

    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER records_no_update")
    conn.execute(
        'UPDATE records SET data = \'{"total":13.5,"items":["a","ü"]}\' '
        "WHERE stream_id = 'order-1' AND version = 1"
    )
    conn.commit()
    conn.close()
    broken = _run_snippet(tmp_path, db)
    assert broken.returncode == 1
    assert broken.stdout.startswith("stream 'order-1' version 1 (position 1): hash mismatch")


async def test_the_snippet_finds_a_deleted_record_no_stream_chain_misses(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    store = await EventStore.open(f"sqlite:///{db}")
    await store.append("a", [NewRecord("event", "t", {})] * 2, NO_STREAM)
    await store.append("b", [NewRecord("event", "t", {})], NO_STREAM)  # position 3
    await store.append("a", [NewRecord("event", "t", {})], 2)
    await store.close()
    import sqlite3

    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER records_no_delete")
    conn.execute("DELETE FROM records WHERE stream_id = 'b'")  # the last (only) record of b
    conn.commit()
    conn.close()
    done = _run_snippet(tmp_path, db)
    assert done.returncode == 1
    assert done.stdout.strip() == "stream 'a' version 3 (position 4): missing position: expected 3"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)
objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


@given(
    data=objects,
    metadata=objects,
    stream=st.text(min_size=1, max_size=20),
    type_=st.text(min_size=1, max_size=20),
    version=st.integers(1, 10**9),
)
def test_the_fast_body_is_byte_for_byte_the_canonical_body(
    data: dict[str, object],
    metadata: dict[str, object],
    stream: str,
    type_: str,
    version: int,
) -> None:
    prev, at = "ab" * 32, "2026-12-01T09:00:00.000001Z"
    full = canonical_json(
        {
            "data": data,
            "kind": "event",
            "metadata": metadata,
            "prev_hash": prev,
            "recorded_at": at,
            "stream_id": stream,
            "type": type_,
            "version": version,
        }
    )
    fast = body_json(
        data_json=canonical_json(data),
        kind_json=canonical_json("event"),
        metadata_json=canonical_json(metadata),
        prev_hash=prev,
        recorded_at=at,
        stream_id_json=canonical_json(stream),
        type_json=canonical_json(type_),
        version=version,
    )
    assert fast == full


@given(value=objects)
def test_canonical_json_is_the_documented_json_dumps(value: dict[str, object]) -> None:
    documented = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    assert canonical_json(value) == documented
