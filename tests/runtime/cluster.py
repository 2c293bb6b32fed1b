"""A deployment of real processes for chaos tests and ``bench/chaos.py``.

``Cluster`` runs ``orchestrator run --role engine`` and ``--role worker`` processes on
one configuration (a store URL and a broker), kills them with SIGKILL and starts them
again; ``Target``s add the servers (redis-server, Kafka, PostgreSQL) to what chaos may
kill. ``saga_input`` gives the n-th saga of a load of the example workflows and the
status its input implies; ``check_sagas`` and ``check_broker_empty`` are the
invariants every run must keep.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from brokers import MessagingConfig
from eventstore import EventStore
from orchestrator.runtime.client import read_saga
from orchestrator.runtime.saga_log import STREAM_PREFIX
from orchestrator.runtime.wire import Topics

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "workflows"
WORKFLOW_NAMES = ("order_fulfilment", "esg_report")


def saga_input(n: int) -> tuple[str, dict[str, Any], str]:
    """The n-th saga: its workflow, its input, and the status that input implies
    (completed 70 %, compensated 20 %, failed after the pivot 10 %)."""
    order = {
        "order_id": f"o-{n}",
        "sku": "widget",
        "quantity": 1,
        "card": "4242424242424242",
        "address": "1 Main St",
    }
    report = {"company": f"C{n}", "year": 2025, "activities": {"scope1": {"diesel_l": 10}}}
    kind = n % 10
    if kind == 0:  # declined at the pivot: the reservation is released
        return "order_fulfilment", {**order, "card": "4000000000000002"}, "compensated"
    if kind == 1:  # every shipping attempt fails after the pivot: a person must look
        return "order_fulfilment", {**order, "fail_at": "ship"}, "failed"
    if kind == 2:
        return "esg_report", {**report, "fail_at": "scope3"}, "compensated"
    if kind == 3:
        return "esg_report", report, "completed"
    return "order_fulfilment", order, "completed"


def write_config(path: Path, store: str, messaging: dict[str, Any], **engine: Any) -> Path:
    """A YAML file for ``orchestrator run --config``."""
    path.write_text(yaml.safe_dump({"store": store, **messaging, "engine": engine}))
    return path


@dataclass
class Proc:
    role: str
    index: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class Target:
    """Something chaos may kill: a process of the cluster, or a server."""

    name: str
    kind: str
    """``engine``, ``worker``, ``both``, ``redis``, ``kafka`` or ``postgres``."""
    kill: Callable[[], None]
    start: Callable[[], None]
    alive: Callable[[], bool]


@dataclass
class Cluster:
    config: Path
    workdir: Path
    procs: list[Proc] = field(default_factory=list)

    @classmethod
    def of(cls, config: Path, workdir: Path, engines: int, workers: int) -> Cluster:
        cluster = cls(config, workdir)
        for role, count in (("engine", engines), ("worker", workers)):
            for i in range(count):
                cluster.procs.append(Proc(role, i, workdir / f"{role}-{i}.log"))
        return cluster

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
                cwd=self.workdir,
            )

    def start(self) -> None:
        for proc in self.procs:
            self.spawn(proc)

    def kill(self, proc: Proc) -> None:
        assert proc.popen is not None
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(10)

    def targets(self) -> list[Target]:
        """Every process, as something chaos may kill."""
        return [
            Target(
                p.name,
                p.role,
                lambda p=p: self.kill(p),
                lambda p=p: self.spawn(p),
                lambda p=p: p.alive,
            )
            for p in self.procs
        ]

    def revive_one_of_each(self) -> None:
        """After chaos, make sure at least one process of each role runs."""
        for role in {p.role for p in self.procs}:
            if not any(p.alive for p in self.procs if p.role == role):
                self.spawn(next(p for p in self.procs if p.role == role))

    def stop(self) -> None:
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

    def counts(self) -> Counter[str]:
        """The engines' counts, summed over every engine that stopped cleanly (a killed
        one prints none: these are lower bounds)."""
        total: Counter[str] = Counter()
        for proc in self.procs:
            if proc.role in ("engine", "both") and proc.log.exists():
                for found in _COUNTS.findall(proc.log.read_text(errors="replace")):
                    total.update(json.loads(found))
        return total

    def adoptions(self) -> list[tuple[float, int]]:
        """(when, how many sagas) of every adoption the engines logged."""
        out = []
        for proc in self.procs:
            if proc.role in ("engine", "both") and proc.log.exists():
                for stamp, count in _ADOPTED.findall(proc.log.read_text(errors="replace")):
                    when = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
                    out.append((when, int(count)))
        return sorted(out)


PROCESS_KINDS = ("engine", "worker", "both")

_COUNTS = re.compile(r"^stopping; counts (\{.*\})$", re.M)

_ADOPTED = re.compile(r"^(\S+ \S+) INFO orchestrator: adopted (\d+) sagas", re.M)


async def chaos(
    targets: list[Target],
    rng: random.Random,
    seconds: float,
    *,
    every: tuple[float, float],
    keep_alive: Callable[[Target, list[Target]], bool],
    log: list[tuple[float, str, str]],
    down_for: tuple[float, float] = (1.0, 4.0),
) -> None:
    """For ``seconds``: every ``every`` seconds, SIGKILL a random live target that
    ``keep_alive`` allows killing, and note (when, kind, name) in ``log``; a dead server
    comes back after ``down_for`` seconds, a dead process half the time at each round
    (some stay dead)."""
    until = time.time() + seconds
    servers_down: list[tuple[float, Target]] = []
    while time.time() < until:
        await asyncio.sleep(rng.uniform(*every))
        for when, server in list(servers_down):
            if time.time() >= when:
                await asyncio.to_thread(server.start)
                servers_down.remove((when, server))
        live = [t for t in targets if t.alive() and keep_alive(t, targets)]
        if live:
            victim = rng.choice(live)
            victim.kill()
            log.append((time.time(), victim.kind, victim.name))
            if victim.kind not in PROCESS_KINDS:
                servers_down.append((time.time() + rng.uniform(*down_for), victim))
        for target in targets:
            if target.kind not in PROCESS_KINDS or target.alive():
                continue
            if target.kind == "both" or rng.random() < 0.5:  # a lone process always
                target.start()
    for _, server in servers_down:
        await asyncio.to_thread(server.start)


def at_least_one_process_of_each_role(victim: Target, targets: list[Target]) -> bool:
    if victim.kind not in ("engine", "worker"):
        return True
    return sum(t.alive() for t in targets if t.kind == victim.kind) > 1


async def wait_all_finished(store: EventStore, count: int, seconds: float) -> int:
    """Wait until ``count`` saga streams end with ``saga.finish``; returns how many do
    not after ``seconds``."""
    deadline = time.time() + seconds
    unfinished = count
    while time.time() < deadline:
        try:
            heads = await store.streams(STREAM_PREFIX, limit=count + 10)
        except Exception:  # the store may be restarting
            await asyncio.sleep(1.0)
            continue
        unfinished = sum(h.last_type != "saga.finish" for h in heads) + count - len(heads)
        if unfinished == 0:
            return 0
        await asyncio.sleep(1.0)
    return unfinished


async def check_sagas(store: EventStore, expected: dict[str, str]) -> Counter[str]:
    """Every saga ended as its input says; no outcome and no compensation recorded
    twice; every chain verifies. Returns the statuses."""
    statuses: Counter[str] = Counter()
    for saga_id, status in expected.items():
        state, _ = await read_saga(store, saga_id)
        assert state is not None, saga_id
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
    assert report.ok, report.first_broken
    return statuses


async def check_broker_empty(messaging: dict[str, Any], seconds: float = 60) -> dict[str, int]:
    """Nothing pending, nothing unconsumed, on every topic and group the sagas used;
    returns the lags (all 0) or fails with them."""
    broker = MessagingConfig.load(messaging).create_broker()
    await broker.connect()
    topics = Topics()
    checks = [(topics.replies, "saga-engine")] + [
        (topics.steps(name), "saga-workers") for name in WORKFLOW_NAMES
    ]
    try:
        deadline = time.time() + seconds
        lags: dict[str, int] = {}
        while time.time() < deadline:
            lags = {f"{t}/{g}": await broker.get_consumer_lag(t, g) for t, g in checks}
            if not any(lags.values()):
                return lags
            await asyncio.sleep(1.0)
        raise AssertionError(f"the broker is not empty: {lags}")
    finally:
        await broker.disconnect()


def recovery_times(kills: list[tuple[float, str, str]], events: list[float]) -> list[float]:
    """For each kill, seconds until the first event after it."""
    out = []
    for killed_at, _, _ in kills:
        after = [when for when in events if when >= killed_at]
        if after:
            out.append(after[0] - killed_at)
    return out


def p50_p95(values: list[float]) -> str:
    if not values:
        return "n/a"
    p95 = statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]
    return f"p50 {statistics.median(values):.1f} s, p95 {p95:.1f} s (n={len(values)})"
