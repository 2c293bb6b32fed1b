"""``EventStore`` satisfies ``EventLog``, the port its consumers type against: by mypy
(this module is checked with ``--strict`` by the last test) and by signature."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

from eventstore import NO_STREAM, EventLog, EventStore, NewRecord

PORT = (
    "url",
    "append",
    "read_stream",
    "read_all",
    "subscribe",
    "streams",
    "last_position",
    "health",
    "verify",
)


async def test_the_store_is_an_event_log(store: EventStore) -> None:
    log: EventLog = store  # mypy checks this assignment (see the last test)
    assert isinstance(log, EventLog)
    written = await log.append("port-1", [NewRecord("event", "t", {"n": 1})], NO_STREAM)
    assert [r.hash for r in await log.read_stream("port-1")] == [written.last_hash]
    assert [s.stream_id for s in await log.streams("port-")] == ["port-1"]
    assert await log.last_position() == written.last_position
    report = await log.verify()
    assert report.ok and report.head is not None and report.head.hash == written.last_hash
    health = await log.health()
    assert health["status"] == "ok" and health["error"] is None and health["latency_ms"] >= 0


def test_the_port_names_exactly_these_members() -> None:
    declared = {name for name in vars(EventLog) if not name.startswith("_")}
    assert declared == set(PORT)


def test_the_port_keeps_the_store_s_signatures() -> None:
    for name in PORT[1:]:
        port, real = getattr(EventLog, name), getattr(EventStore, name)
        assert inspect.signature(port) == inspect.signature(real), name
        if name == "subscribe":  # iterated with `async for`, never awaited
            assert not inspect.iscoroutinefunction(real)
        else:
            assert inspect.iscoroutinefunction(port) and inspect.iscoroutinefunction(real), name


def test_mypy_strict_accepts_the_store_as_an_event_log() -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", __file__],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
