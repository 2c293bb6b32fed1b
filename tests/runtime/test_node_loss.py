"""Node loss on real servers: kill any process, at any time, and only latency changes.

Three ``orchestrator run --role engine`` and three ``--role worker`` processes share a
PostgreSQL store and a broker (Kafka or Redis). While 1,000 sagas of the example
workflows run, a random process is SIGKILLed every few seconds; some are restarted,
some stay dead, but at least one engine and one worker always live. In the end:

- every saga ends with the status its input implies (no compensation it did not ask
  for), with no step outcome and no compensation recorded twice;
- every hash chain verifies;
- the broker is empty: nothing pending, nothing unconsumed (Kafka: committed offsets
  at the end of every partition).

It prints the kills, the adoptions, and the p50/p95 time from an engine's kill to the
first adoption by a survivor.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from brokers import MessagingConfig
from eventstore import EventStore
from orchestrator.runtime.client import read_saga, request_saga
from orchestrator.runtime.saga_log import STREAM_PREFIX
from orchestrator.runtime.wire import Topics

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "workflows"
SAGAS = 1000
ENGINES = 3
WORKERS = 3
KILL_EVERY = (2.0, 4.0)
"""Seconds between kills, drawn uniformly."""
CHAOS_SECONDS = 24.0
"""How long processes are killed; the sagas are requested over the first part of it."""
FINISH_WITHIN = 150.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _input(n: int) -> tuple[str, dict[str, Any], str]:
    """The n-th saga: its workflow, input, and the status that input implies."""
    order = {
        "order_id": f"o-{n}",
        "sku": "widget",
        "quantity": 1,
        "card": "4242424242424242",
        "address": "1 Main St",
    }
    kind = n % 10
    if kind == 0:  # declined at the pivot: the reservation is released
        return "order_fulfilment", {**order, "card": "4000000000000002"}, "compensated"
    if kind == 1:  # every shipping attempt fails after the pivot: a person must look
        return "order_fulfilment", {**order, "fail_at": "ship"}, "failed"
    if kind == 2:
        report = {"company": f"C{n}", "year": 2025, "activities": {"scope1": {"diesel_l": 10}}}
        return "esg_report", {**report, "fail_at": "scope3"}, "compensated"
    if kind == 3:
        report = {"company": f"C{n}", "year": 2025, "activities": {"scope1": {"diesel_l": 10}}}
        return "esg_report", report, "completed"
    return "order_fulfilment", order, "completed"


@dataclass
class Proc:
    role: str
    index: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class Cluster:
    config: Path
    tmp: Path
    procs: list[Proc] = field(default_factory=list)
    kills: list[tuple[float, str]] = field(default_factory=list)

    def spawn(self, proc: Proc) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with proc.log.open("ab") as out:
            proc.popen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "orchestrator.cli",
                    "run",
                    "--config",
                    str(self.config),
                    "--workflows",
                    str(WORKFLOWS),
                    "--role",
                    proc.role,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.tmp,
            )
        proc.starts.append(time.time())

    def kill(self, proc: Proc) -> None:
        assert proc.popen is not None
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(10)
        self.kills.append((time.time(), proc.name))

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.alive:
                assert proc.popen is not None
                proc.popen.terminate()
        for proc in self.procs:
            if proc.popen is not None:
                try:
                    proc.popen.wait(15)
                except subprocess.TimeoutExpired:
                    proc.popen.kill()
                    proc.popen.wait(5)

    def logs(self, chars: int = 3000) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.log.read_text(errors='replace')[-chars:]}" for p in self.procs
        )


_ADOPTED = re.compile(r"^(\S+ \S+) INFO orchestrator: adopted (\d+) sagas", re.M)


def _adoptions(cluster: Cluster) -> list[tuple[float, int]]:
    out = []
    for proc in cluster.procs:
        if proc.role != "engine":
            continue
        for stamp, count in _ADOPTED.findall(proc.log.read_text(errors="replace")):
            when = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
            out.append((when, int(count)))
    return sorted(out)


async def _chaos(cluster: Cluster, rng: random.Random, until: float) -> None:
    while time.time() < until:
        await asyncio.sleep(rng.uniform(*KILL_EVERY))
        engines = [p for p in cluster.procs if p.role == "engine" and p.alive]
        workers = [p for p in cluster.procs if p.role == "worker" and p.alive]
        candidates = [
            *(engines if len(engines) > 1 else []),
            *(workers if len(workers) > 1 else []),
        ]
        if candidates:
            victim = rng.choice(candidates)
            cluster.kill(victim)
        for dead in [p for p in cluster.procs if not p.alive]:
            if rng.random() < 0.5:  # some come back, some stay dead
                cluster.spawn(dead)


async def _run_node_loss(
    stack: str, messaging: dict[str, Any], postgres_url: str, tmp: Path
) -> None:
    config = tmp / "sagaflow.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "store": postgres_url,
                **messaging,
                # Faster than the defaults so that the test stays short: a dead
                # engine's leases expire after ~5 s, a dead worker's messages are
                # claimed after 5 s (Kafka: its session timeout).
                "consumer": {"visibility_timeout": 5, "membership_ttl": 4, "block_time": 0.5},
                "engine": {"sweep_interval": 2, "reissue_after": 20},
            }
        )
    )
    store = await EventStore.open(postgres_url)  # creates the schema before the engines race
    cluster = Cluster(config, tmp)
    for role, count in (("engine", ENGINES), ("worker", WORKERS)):
        for i in range(count):
            cluster.procs.append(Proc(role, i, tmp / f"{role}-{i}.log"))
    rng = random.Random(20261202)
    expected: dict[str, str] = {}
    try:
        for proc in cluster.procs:
            cluster.spawn(proc)
        chaos_end = time.time() + CHAOS_SECONDS
        chaos = asyncio.create_task(_chaos(cluster, rng, chaos_end))
        for n in range(SAGAS):  # requested over ~10 s, while processes die
            workflow, data, status = _input(n)
            saga_id = await request_saga(store, workflow, data, saga_id=f"n{n:04d}")
            expected[saga_id] = status
            if n % 100 == 99:
                await asyncio.sleep(1.0)
        await chaos
        for proc in cluster.procs:  # the survivors of the chaos, and one of each again
            if not proc.alive and proc.index == 0:
                cluster.spawn(proc)
        deadline = time.time() + FINISH_WITHIN
        unfinished = len(expected)
        while time.time() < deadline:
            heads = await store.streams(STREAM_PREFIX, limit=SAGAS + 10)
            unfinished = sum(h.last_type != "saga.finish" for h in heads) + SAGAS - len(heads)
            if unfinished == 0:
                break
            await asyncio.sleep(1.0)
        assert unfinished == 0, f"{unfinished} sagas unfinished\n{cluster.logs()}"
        await _check_broker_empty(stack, messaging, cluster)
    finally:
        cluster.stop_all()

    statuses: Counter[str] = Counter()
    for saga_id, status in expected.items():
        state, _ = await read_saga(store, saga_id)
        assert state is not None
        statuses[state.status.value] += 1
        assert state.status == status, (saga_id, state.status, state.failure_summary)
        records = await store.read_stream(f"{STREAM_PREFIX}{saga_id}")
        outcomes = Counter(
            (r.type, r.data.get("step"), r.data.get("attempt"))
            for r in records
            if r.kind == "event"
        )
        assert all(n == 1 for n in outcomes.values()), (saga_id, outcomes)
        for kind in ("saga.step_succeeded", "saga.compensation_succeeded"):
            per_step = Counter(r.data["step"] for r in records if r.type == kind)
            assert all(n == 1 for n in per_step.values()), (saga_id, kind, per_step)
    report = await store.verify()
    await store.close()
    assert report.ok, report.first_broken

    adoptions = _adoptions(cluster)
    engine_kills = [when for when, name in cluster.kills if name.startswith("engine")]
    delays = []
    for killed_at in engine_kills:
        after = [when for when, count in adoptions if when >= killed_at and count > 0]
        if after:
            delays.append(after[0] - killed_at)
    print(
        f"\n[{stack}] {SAGAS} sagas {dict(statuses)}; {len(cluster.kills)} kills "
        f"({len(engine_kills)} engines): {[name for _, name in cluster.kills]}; "
        f"{sum(c for _, c in adoptions)} sagas adopted in {len(adoptions)} adoptions"
    )
    if delays:
        p95 = statistics.quantiles(delays, n=20)[-1] if len(delays) > 1 else delays[0]
        print(
            f"[{stack}] kill → first adoption: p50 {statistics.median(delays):.1f} s, "
            f"p95 {p95:.1f} s over {len(delays)} engine kills"
        )
    assert len(cluster.kills) >= 5, cluster.kills
    assert engine_kills, "no engine was killed: the test proves nothing about adoption"
    assert statuses["completed"] and statuses["compensated"] and statuses["failed"]


async def _check_broker_empty(stack: str, messaging: dict[str, Any], cluster: Cluster) -> None:
    """Nothing pending, nothing unconsumed, on every topic and group the sagas used."""
    broker = MessagingConfig.load(messaging).create_broker()
    await broker.connect()
    topics = Topics()
    checks = [(topics.replies, "saga-engine")] + [
        (topics.steps(name), "saga-workers") for name in ("order_fulfilment", "esg_report")
    ]
    try:
        deadline = time.time() + 60
        lags: dict[str, int] = {}
        while time.time() < deadline:
            lags = {f"{t}/{g}": await broker.get_consumer_lag(t, g) for t, g in checks}
            if not any(lags.values()):
                return
            await asyncio.sleep(1.0)
        raise AssertionError(f"[{stack}] the broker is not empty: {lags}\n{cluster.logs(1500)}")
    finally:
        await broker.disconnect()


async def test_node_loss_on_redis_and_postgres(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    await _run_node_loss(
        "redis",
        {"broker_type": "redis", "redis": {"url": redis_url}},
        postgres_url,
        tmp_path,
    )


async def test_node_loss_on_kafka_and_postgres(
    postgres_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = f"nl{uuid.uuid4().hex[:6]}."
    await _run_node_loss(
        "kafka",
        {
            "broker_type": "kafka",
            "kafka": {"bootstrap_servers": [kafka_bootstrap], "topic_prefix": prefix},
        },
        postgres_url,
        tmp_path,
    )
