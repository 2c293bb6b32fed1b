"""One chaos run: sagas on a stack while engines, workers and servers are killed at
random; then every invariant checked and the figures gathered (``ChaosReport``).

Used by the short runs in the suite (``test_chaos.py``) and by ``bench/chaos.py``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from eventstore import EventStore, StoreUnavailableError
from orchestrator.runtime.client import request_saga
from tests.runtime.cluster import (
    Cluster,
    Proc,
    Target,
    at_least_one_process_of_each_role,
    chaos,
    check_broker_empty,
    check_sagas,
    p50_p95,
    recovery_times,
    saga_input,
    wait_all_finished,
    write_config,
)
from tests.runtime.stacks import start_stack


@dataclass
class ChaosReport:
    stack: str
    sagas: int
    seconds: float
    statuses: Counter[str] = field(default_factory=Counter)
    kills: list[tuple[float, str, str]] = field(default_factory=list)
    recovery: dict[str, list[float]] = field(default_factory=dict)
    """Kind of kill → seconds from each kill to the first saga finished after it."""
    adopted: int = 0
    duplicates: int = 0
    """Replies and timers that changed nothing (redeliveries absorbed), counted by the
    engines that stopped cleanly at the end: a lower bound."""
    lost: int = 0
    """Sagas not finished when the run ended (must be 0)."""

    def lines(self) -> list[str]:
        kinds = Counter(kind for _, kind, _ in self.kills)
        out = [
            f"stack {self.stack}: {self.sagas} sagas in {self.seconds:.0f} s "
            f"{dict(sorted(self.statuses.items()))}",
            f"kills: {len(self.kills)} {dict(sorted(kinds.items()))}; "
            f"sagas adopted by surviving engines: {self.adopted}",
            f"redelivered events absorbed as duplicates (at least): {self.duplicates}",
        ]
        for kind, times in sorted(self.recovery.items()):
            out.append(f"  after a {kind} kill, first saga finished: {p50_p95(times)}")
        out.append(f"lost: {self.lost} (unfinished sagas); invariants: all held")
        return out


async def _finish_times(store: EventStore) -> list[float]:
    out: list[float] = []
    position = 0
    while True:
        page = await store.read_all(position, 2000, types={"saga.finish"})
        out.extend(datetime.fromisoformat(r.recorded_at).timestamp() for r in page)
        if len(page) < 2000:
            return sorted(out)
        position = page[-1].position


def _restartable(victim: Target, targets: list[Target]) -> bool:
    return victim.kind == "both" or at_least_one_process_of_each_role(victim, targets)


async def run_chaos(
    stack_name: str,
    workdir: Path,
    *,
    sagas: int,
    seconds: float,
    engines: int = 3,
    workers: int = 3,
    kill_every: tuple[float, float] = (2.0, 5.0),
    servers: bool = True,
    seed: int = 1,
    finish_within: float = 240.0,
) -> ChaosReport:
    """Request ``sagas`` sagas evenly over ``seconds`` while chaos kills processes (and,
    with ``servers``, the stack's servers); then wait for every saga to end and check
    every invariant (``AssertionError`` names the first that failed)."""
    rng = random.Random(seed)
    with ExitStack() as stack:
        deployed = start_stack(stack_name, workdir, stack)
        messaging = {
            **deployed.messaging,
            "consumer": {"visibility_timeout": 5, "membership_ttl": 4, "block_time": 0.5},
        }
        config = write_config(
            workdir / "sagaflow.yaml",
            deployed.store,
            messaging,
            sweep_interval=2,
            reissue_after=20,
        )
        if deployed.multi_process:
            cluster = Cluster.of(config, workdir, engines=engines, workers=workers)
        else:  # the in-memory broker: one process runs the engine and its workers
            cluster = Cluster(config, workdir, [Proc("both", 0, workdir / "both-0.log")])
        store = await EventStore.open(deployed.store)
        report = ChaosReport(stack_name, sagas, seconds)
        targets = cluster.targets() + (deployed.servers if servers else [])
        expected: dict[str, str] = {}
        started = time.time()
        try:
            cluster.start()
            churn = asyncio.create_task(
                chaos(
                    targets,
                    rng,
                    seconds,
                    every=kill_every,
                    keep_alive=_restartable,
                    log=report.kills,
                )
            )
            for n in range(sagas):
                workflow, data, status = saga_input(n)
                saga_id = f"c{n:06d}"
                while True:  # the client retries while the store is down, like any client
                    try:
                        await request_saga(store, workflow, data, saga_id=saga_id)
                        break
                    except StoreUnavailableError:
                        await asyncio.sleep(0.5)
                expected[saga_id] = status
                await asyncio.sleep(max(0.0, started + seconds * (n + 1) / sagas - time.time()))
            await churn
            cluster.revive_one_of_each()
            report.lost = await wait_all_finished(store, sagas, finish_within)
            assert report.lost == 0, f"{report.lost} sagas unfinished\n{cluster.logs()}"
            if deployed.multi_process:
                await check_broker_empty(messaging)
        finally:
            cluster.stop()
        report.seconds = time.time() - started
        report.statuses = await check_sagas(store, expected)
        finished = await _finish_times(store)
        await store.close()
        for kind in sorted({kind for _, kind, _ in report.kills}):
            kills = [k for k in report.kills if k[1] == kind]
            report.recovery[kind] = recovery_times(kills, finished)
        report.adopted = sum(count for _, count in cluster.adoptions())
        report.duplicates = cluster.counts()["duplicates"]
        return report
