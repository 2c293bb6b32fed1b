"""Crash safety for real: ``orchestrator run`` is killed with SIGKILL at random moments
while it runs 200 sagas, and restarted each time. In the end every saga is completed or
compensated, no outcome is recorded twice, no compensation twice, every chain verifies.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from eventstore import EventStore
from orchestrator.runtime.client import read_saga, request_saga

HERE = Path(__file__).parent
KILLS = 20
SAGAS = 200


def _spawn(url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrator.cli",
                "run",
                "--store",
                url,
                "--workflows",
                str(HERE / "crash_workflows"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_sagas_survive_repeated_sigkill(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sagas.db'}"
    log = tmp_path / "engine.log"
    store = await EventStore.open(url)
    rng = random.Random(7)
    ids: list[str] = []

    async def request(count: int) -> None:
        for _ in range(count):
            n = len(ids)
            fail = {0: "charge", 1: "confirm"}.get(n % 10)
            data = {"n": n, **({"fail": fail} if fail else {})}
            ids.append(await request_saga(store, "crashy", data, saga_id=f"s{n:03d}"))

    async def in_progress() -> int:
        """Sagas an engine has started and not finished."""
        count = 0
        for saga_id in ids:
            state, _ = await read_saga(store, saga_id)
            count += state is not None and not state.is_terminal
        return count

    async def working_since(position: int) -> None:
        """Wait until the engine appends something after ``position``."""
        for _ in range(400):
            if await store.last_position() > position:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"the engine did nothing for 20 s; log:\n{log.read_text()[-2000:]}")

    busy_kills = 0
    process = None
    try:
        for kill in range(KILLS):
            await request(SAGAS * (kill + 1) // KILLS - len(ids))
            position = await store.last_position()
            process = _spawn(url, log)
            await working_since(position)
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            busy_kills += await in_progress() > 0
            process.send_signal(signal.SIGKILL)  # mid-run: sagas are in flight
            process.wait(10)
        process = _spawn(url, log)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        pending = set(ids)
        while pending and loop.time() < deadline:
            for saga_id in list(pending):
                state, _ = await read_saga(store, saga_id)
                if state is not None and state.is_terminal:
                    pending.discard(saga_id)
            await asyncio.sleep(0.2)
        assert not pending, f"{len(pending)} sagas unfinished; log:\n{log.read_text()[-3000:]}"
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)

    statuses: Counter[str] = Counter()
    for n, saga_id in enumerate(ids):
        state, _ = await read_saga(store, saga_id)
        assert state is not None
        statuses[state.status.value] += 1
        expected = "compensated" if n % 10 in (0, 1) else "completed"
        assert state.status == expected, (saga_id, state.status, state.failure)
        records = await store.read_stream(f"saga-{saga_id}")
        outcomes = Counter(
            (r.type, r.data.get("step"), r.data.get("attempt"))
            for r in records
            if r.kind == "event"
        )
        assert all(count == 1 for count in outcomes.values()), (saga_id, outcomes)
        succeeded = Counter(r.data["step"] for r in records if r.type == "saga.step_succeeded")
        assert all(count == 1 for count in succeeded.values()), (saga_id, succeeded)
        undone = Counter(r.data["step"] for r in records if r.type == "saga.compensation_succeeded")
        assert all(count == 1 for count in undone.values()), (saga_id, undone)
        if n % 10 == 0:  # charge declined: only reserve had succeeded
            assert set(undone) == {"reserve"}
        elif n % 10 == 1:  # the pivot declined: both before it are undone
            assert set(undone) == {"reserve", "charge"}
    assert len(ids) == SAGAS
    print(f"{busy_kills} of {KILLS} kills hit sagas in progress")
    assert busy_kills >= KILLS // 2, f"only {busy_kills} kills hit running sagas"
    report = await store.verify()
    await store.close()
    assert report.ok, report.first_broken
    assert statuses == {"completed": 160, "compensated": 40}
