"""Scaling out: 1, 2 and 3 engine processes (and as many workers) on one store and broker.

Run by hand (not in the test suite):

    python bench/scale.py [--stack kafka-postgres|redis-postgres|both] [--sagas 400]
                          [--rounds 3] [--in-flight 200] [--keep-logs]

The servers are started here on loopback ports (``tests/runtime/stacks.py``:
PostgreSQL with synchronous commits, redis-server with AOF ``appendfsync always``, or
Kafka in KRaft mode), and the processes are ``orchestrator run --role engine`` and
``--role worker`` (``tests/runtime/cluster.py``) on a YAML config with the default
engine and consumer settings (Kafka: 4 partitions; Redis: 16 virtual partitions).
Each round runs 1, 2 and 3 engines (with as many workers), each on a fresh PostgreSQL
database and, on Kafka, a fresh topic prefix (on Redis a freshly flushed logical
database), once the engines hold all partitions and a warm-up of ``--warmup`` sagas
has finished.

The load is the ``order_fulfilment`` example workflow with valid inputs (the
completing order inputs of ``saga_input``): reserve_stock → charge_payment (pivot) →
ship, all succeeding at the first attempt. ``--sagas`` sagas are requested through the
store (``request_saga``) with at most ``--in-flight`` requested and not finished: as
soon as sagas finish, as many new ones are requested at once (concurrently, so the
bench's own appends group-commit). Then ``--alone`` sagas run one at a time. Every
figure comes from the records' ``recorded_at`` in the store, once every saga has
finished, or from the servers:

* sagas/s: sagas / (last ``saga.finish`` - first ``saga.start``); p50/p95 latency:
  ``saga.start`` (requested) → ``saga.finish``; "alone": the same, one saga at a time;
* share of the time: per step, ``saga.execute_step`` → its outcome, and intake,
  ``saga.start`` → ``saga.started``, summed over the sagas / their summed latency;
* append batches: the engines' writers run in other processes, so their
  ``EventStore.stats`` cannot be read here. A write transaction reads the clock once,
  under the store's write lock, and stamps every record it writes with it, at
  consecutive positions: a maximal run of consecutive positions with the same
  ``recorded_at`` is one transaction. The bench's own transactions (only
  ``saga.start`` records) are checked against its in-process ``EventStore.stats`` and
  left out of the engines' figures;
* the write lock: ``pg_locks`` sampled every 20 ms for the database's advisory lock
  (held, and how many transactions wait for it); held time / transactions gives the
  time one transaction holds it;
* PostgreSQL's own counters per saga: transactions (reads included) and scans of the
  records table (``pg_stat_database``, ``pg_stat_user_tables``);
* from the engines' logs: their counts at exit (conflicts, sagas started by each: the
  busiest engine's share) and the write batches retried append by append;
* CPU: ticks of every process over the measured part (``/proc``), in cores, per kind:
  engines, workers, the bench, PostgreSQL, Kafka or redis-server, and everything else
  on the machine (other people's work on a shared machine).

Medians over ``--rounds`` rounds, and the round with the most sagas/s; ratios are 2
and 3 engines against 1. The engines' and workers' logs are scanned for ERROR lines,
tracebacks and warnings, reported under each run (start-up or measured part).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import redis.asyncio as aioredis

from eventstore import EventStore, Record
from orchestrator.runtime.client import request_saga
from tests.runtime.cluster import Cluster, saga_input, write_config
from tests.runtime.stacks import Stack, start_stack

ENGINE_COUNTS = (1, 2, 3)
STEPS = ("reserve_stock", "charge_payment", "ship")
OUTCOMES = {"saga.step_succeeded", "saga.step_failed", "saga.step_timed_out"}
TICK = os.sysconf("SC_CLK_TCK")


def order_inputs() -> Iterator[dict[str, Any]]:
    """The completing order_fulfilment inputs of ``saga_input``, forever."""
    n = 0
    while True:
        workflow, data, status = saga_input(n)
        n += 1
        if workflow == "order_fulfilment" and status == "completed":
            yield data


def stamp(record: Record) -> float:
    return datetime.fromisoformat(record.recorded_at).timestamp()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# -- CPU from /proc ------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[int, int, str] | None:
    """(ppid, utime + stime ticks, comm) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[11]) + int(fields[12]), comm


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class CpuSnapshot:
    ticks: dict[int, tuple[str, int]]
    machine: tuple[int, int]


def cpu_snapshot(kinds: dict[int, str], postgres_port: int) -> CpuSnapshot:
    """Ticks of every process, each labelled: the kinds given by pid, the servers,
    anything else ``other``."""
    stats: dict[int, tuple[int, int, str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            found = _proc_stat(int(entry))
            if found is not None:
                stats[int(entry)] = found
    me = os.getpid()
    postmaster = next(
        (
            pid
            for pid, (_, _, comm) in stats.items()
            if comm == "postgres" and f"-p {postgres_port} " in _cmdline(pid)
        ),
        None,
    )
    ticks: dict[int, tuple[str, int]] = {}
    for pid, (ppid, used, comm) in stats.items():
        if pid in kinds:
            kind = kinds[pid]
        elif pid == me:
            kind = "bench"
        elif pid == postmaster or (ppid == postmaster and postmaster is not None):
            kind = "postgres"
        elif ppid == me and comm == "java":
            kind = "kafka"
        elif ppid == me and comm.startswith("redis-server"):
            kind = "redis"
        else:
            kind = "other"
        ticks[pid] = (kind, used)
    return CpuSnapshot(ticks, _machine_busy())


def cpu_used(before: CpuSnapshot, after: CpuSnapshot, seconds: float) -> dict[str, float]:
    """Cores busy on average over the interval, per kind (``other``: the machine's busy
    time minus ours, so it includes processes that ended meanwhile)."""
    used: Counter[str] = Counter()
    for pid, (kind, ticks) in after.ticks.items():
        if kind == "other":
            continue
        start = before.ticks.get(pid, (kind, 0))[1]
        used[kind] += max(0, ticks - start)
    out = {kind: value / TICK / seconds for kind, value in used.items()}
    busy = (after.machine[0] - before.machine[0]) / TICK / seconds
    out["other"] = max(0.0, busy - sum(out.values()))
    out["machine"] = busy
    return out


# -- the write lock ------------------------------------------------------------------


async def sample_lock(dsn: str, stop: asyncio.Event, samples: list[tuple[int, int]]) -> None:
    """(held, waiting) counts of the database's advisory locks, every 20 ms."""
    conn = await asyncpg.connect(dsn)
    query = (
        "SELECT count(*) FILTER (WHERE granted), count(*) FILTER (WHERE NOT granted) "
        "FROM pg_locks WHERE locktype = 'advisory' AND database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    try:
        while not stop.is_set():
            row = await conn.fetchrow(query)
            samples.append((int(row[0]), int(row[1])))
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


async def pg_counters(dsn: str) -> dict[str, int]:
    """PostgreSQL's own counts for the database: transactions (reads included) and
    index scans of the records table (each read of a stream, each head lookup, each
    poll of a subscription)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        xacts = await conn.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        scans = await conn.fetchval(
            "SELECT coalesce(idx_scan, 0) + coalesce(seq_scan, 0) FROM pg_stat_user_tables "
            "WHERE relname = 'records'"
        )
    finally:
        await conn.close()
    return {"transactions": int(xacts), "scans of records": int(scans or 0)}


# -- one run -------------------------------------------------------------------------


@dataclass
class Run:
    engines: int
    figures: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def fresh_messaging(stack: Stack, tag: str, index: int) -> dict[str, Any]:
    messaging = {k: dict(v) if isinstance(v, dict) else v for k, v in stack.messaging.items()}
    if messaging["broker_type"] == "kafka":
        messaging["kafka"]["topic_prefix"] = f"{tag}."
    else:
        url = urlsplit(messaging["redis"]["url"])
        messaging["redis"]["url"] = urlunsplit(url._replace(path=f"/{index % 16}"))
    return messaging


def _last_assignment(log: str) -> tuple[int, int] | None:
    for line in reversed(log.splitlines()):
        if "engine holds " in line:
            words = line.split("engine holds ", 1)[1].split()
            return int(words[0]), int(words[2])
    return None


async def wait_ready(cluster: Cluster, seconds: float = 180) -> None:
    """Every process says it runs, and the engines' partitions are all held, each
    engine holding some (when there are enough partitions)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        logs = {p.name: p.log.read_text(errors="replace") for p in cluster.procs if p.log.exists()}
        dead = [p.name for p in cluster.procs if not p.alive]
        if dead:
            raise RuntimeError(f"{dead} exited at start\n{cluster.logs()}")
        running = all(
            ("engine running" if p.role == "engine" else "step workers running")
            in logs.get(p.name, "")
            for p in cluster.procs
        )
        held = [_last_assignment(logs.get(p.name, "")) for p in cluster.procs if p.role == "engine"]
        known = [h for h in held if h is not None]
        if running and len(known) == len(held):
            count = known[0][1]
            spread = len(known) > count or all(h[0] > 0 for h in known)
            if sum(h[0] for h in known) == count and spread:
                return
        await asyncio.sleep(0.25)
    raise RuntimeError(f"the cluster did not settle in {seconds:.0f} s\n{cluster.logs()}")


async def drive(
    store: EventStore,
    count: int,
    in_flight: int,
    inputs: Iterator[dict[str, Any]],
    prefix: str,
    seconds: float = 600,
) -> tuple[int, int]:
    """Request ``count`` sagas, at most ``in_flight`` unfinished; wait for them all
    (``RuntimeError`` after ``seconds``). Returns the store positions before the first
    request and at the last finish."""
    start_position = seen = await store.last_position()
    requested = finished = 0
    deadline = time.time() + seconds

    async def one(n: int) -> None:
        await request_saga(store, "order_fulfilment", next(inputs), saga_id=f"{prefix}{n:06d}")

    while finished < count:
        free = min(in_flight - (requested - finished), count - requested)
        if free > 0:
            await asyncio.gather(*(one(requested + i) for i in range(free)))
            requested += free
        page = await store.read_all(seen, 5000, types={"saga.finish"})
        mine = [r for r in page if r.stream_id.startswith(f"saga-{prefix}")]
        finished += len(mine)
        if page:
            seen = page[-1].position
        else:
            if time.time() > deadline:
                raise RuntimeError(f"{count - finished} of {count} sagas unfinished")
            await asyncio.sleep(0.02)
    return start_position, await store.last_position()


async def read_between(store: EventStore, after: int, upto: int) -> list[Record]:
    out: list[Record] = []
    while after < upto:
        page = await store.read_all(after, 5000)
        if not page:
            break
        out.extend(r for r in page if r.position <= upto)
        after = page[-1].position
    return out


def saga_latencies(records: list[Record], prefix: str) -> tuple[list[float], list[float]]:
    """Seconds from each saga's ``saga.start`` to its ``saga.finish``, and to its
    ``saga.started`` (intake)."""
    began: dict[str, float] = {}
    out: list[float] = []
    intake: list[float] = []
    for r in records:
        if not r.stream_id.startswith(f"saga-{prefix}"):
            continue
        if r.type == "saga.start":
            began[r.stream_id] = stamp(r)
        elif r.type == "saga.started":
            intake.append(stamp(r) - began[r.stream_id])
        elif r.type == "saga.finish":
            out.append(stamp(r) - began[r.stream_id])
    return out, intake


def analyse(records: list[Record], prefix: str, run: Run, bench_tx: int) -> None:
    f = run.figures
    sagas: dict[str, list[Record]] = {}
    for r in records:
        if r.stream_id.startswith(f"saga-{prefix}"):
            sagas.setdefault(r.stream_id, []).append(r)
    begins, ends, latencies = [], [], []
    phase: Counter[str] = Counter()
    phase_ms: dict[str, list[float]] = {}
    for stream in sagas.values():
        by_type: dict[str, float] = {}
        commands: dict[tuple[str, int], float] = {}
        for r in stream:
            by_type.setdefault(r.type, stamp(r))
            if r.type == "saga.execute_step":
                commands[(r.data["step"], r.data["attempt"])] = stamp(r)
            elif r.type in OUTCOMES:
                key = (r.data["step"], r.data["attempt"])
                took = stamp(r) - commands[key]
                phase[key[0]] += took
                phase_ms.setdefault(key[0], []).append(took * 1000)
        start, finish = by_type["saga.start"], by_type["saga.finish"]
        intake = by_type["saga.started"] - start
        phase["intake"] += intake
        phase_ms.setdefault("intake", []).append(intake * 1000)
        begins.append(start)
        ends.append(finish)
        latencies.append(finish - start)
    total = sum(latencies)
    f["sagas"] = len(sagas)
    f["sagas/s"] = len(sagas) / (max(ends) - min(begins))
    f["p50 latency ms"] = pct(latencies, 0.5) * 1000
    f["p95 latency ms"] = pct(latencies, 0.95) * 1000
    for name in ("intake", *STEPS):
        f[f"{name} % of latency"] = 100 * phase[name] / total
        f[f"{name} p50 ms"] = statistics.median(phase_ms[name])
    f["rest % of latency"] = 100 - sum(100 * phase[n] / total for n in ("intake", *STEPS))

    # transactions: runs of consecutive positions stamped alike
    groups: list[list[Record]] = []
    for r in records:
        last = groups[-1][-1] if groups else None
        if (
            last is not None
            and r.recorded_at == last.recorded_at
            and r.position == last.position + 1
        ):
            groups[-1].append(r)
        else:
            groups.append([r])
    client = [g for g in groups if all(r.type == "saga.start" for r in g)]
    engine = [g for g in groups if not all(r.type == "saga.start" for r in g)]
    if len(client) != bench_tx:
        run.problems.append(
            f"grouping by recorded_at found {len(client)} client transactions, "
            f"EventStore.stats counted {bench_tx}"
        )
    sizes = [len(g) for g in engine]
    appends = [
        sum(1 for i, r in enumerate(g) if i == 0 or r.stream_id != g[i - 1].stream_id)
        for g in engine
    ]
    span = stamp(records[-1]) - stamp(records[0])
    f["engine tx/s"] = len(engine) / span
    f["all tx/s"] = len(groups) / span
    f["records/tx mean"] = statistics.fmean(sizes)
    f["records/tx p95"] = pct(sizes, 0.95)
    f["records/tx max"] = max(sizes)
    f["appends/tx mean"] = statistics.fmean(appends)
    f["client records/tx mean"] = statistics.fmean(len(g) for g in client)
    gaps = [stamp(b[0]) - stamp(a[0]) for a, b in itertools.pairwise(groups)]
    f["gap between tx p50 ms"] = statistics.median(gaps) * 1000


def log_sizes(cluster: Cluster) -> dict[str, int]:
    return {p.name: p.log.stat().st_size if p.log.exists() else 0 for p in cluster.procs}


_COUNT = re.compile(r"'([a-z_]+)': (\d+)")


def scan_logs(cluster: Cluster, run: Run, measured_from: dict[str, int], sagas: int) -> None:
    """ERROR/CRITICAL lines and tracebacks (and WARNING lines) of every process, told
    apart: before the measured part (start-up, warm-up) or from it on; and from the
    engines' logs, their counts printed at exit (conflicts, sagas started by each) and
    the write batches their store retried append by append (stale stream heads)."""
    started: list[int] = []
    conflicts = stale = 0
    for proc in cluster.procs:
        if not proc.log.exists():
            continue
        raw = proc.log.read_bytes()
        cut = measured_from.get(proc.name, 0)
        if proc.role == "engine":
            text = raw.decode(errors="replace")
            counts = dict(_COUNT.findall(text.rsplit("stopping;", 1)[-1]))
            started.append(int(counts.get("started", 0)))
            conflicts += int(counts.get("conflicts", 0))
            stale += raw.count(b"stale stream heads")
        for phase, chunk in (("start-up", raw[:cut]), ("measured", raw[cut:])):
            lines = chunk.decode(errors="replace").splitlines()
            for level in ("error", "warning"):
                if level == "error":
                    hits = [
                        line
                        for line in lines
                        if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback")
                    ]
                else:
                    hits = [line for line in lines if " WARNING " in line]
                if hits:
                    run.problems.append(
                        f"{proc.name}, {phase}: {len(hits)} {level} lines, first: "
                        f"{hits[0].split(' ', 2)[-1][:240]}"
                    )
    if sagas:
        run.figures["conflicts per saga"] = conflicts / sagas
        run.figures["batches redone per saga"] = stale / sagas
    if sum(started):
        run.figures["busiest engine's starts %"] = 100 * max(started) / sum(started)


async def run_once(
    stack: Stack, workdir: Path, engines: int, index: int, args: argparse.Namespace
) -> Run:
    tag = f"scale{index}{uuid.uuid4().hex[:6]}"
    run = Run(engines)
    base = stack.store.rsplit("/", 1)[0]
    admin_dsn = base.replace("postgresql+asyncpg://", "postgresql://")
    admin = await asyncpg.connect(f"{admin_dsn}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{tag}"')
    finally:
        await admin.close()
    store_url = f"{base}/{tag}"
    messaging = fresh_messaging(stack, tag, index)
    if messaging["broker_type"] == "redis":
        client = aioredis.from_url(messaging["redis"]["url"])
        await client.flushdb()
        await client.aclose()
    rundir = workdir / tag
    rundir.mkdir()
    config = write_config(rundir / "sagaflow.yaml", store_url, messaging)
    store = await EventStore.open(store_url)  # creates the schema before the processes
    cluster = Cluster.of(config, rundir, engines=engines, workers=engines)
    inputs = order_inputs()
    measured_from: dict[str, int] = {}
    try:
        cluster.start()
        await wait_ready(cluster)
        await drive(store, args.warmup, min(args.warmup, args.in_flight), inputs, "warm")
        await asyncio.sleep(1.0)
        measured_from = log_sizes(cluster)
        kinds = {p.popen.pid: p.role for p in cluster.procs if p.popen is not None}
        port = urlsplit(admin_dsn).port or 5432
        samples: list[tuple[int, int]] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_lock(f"{admin_dsn}/{tag}", stop, samples))
        tx_before = store.stats.transactions
        pg_before = await pg_counters(f"{admin_dsn}/{tag}")
        cpu_before = cpu_snapshot(kinds, port)
        began = time.time()
        first, last = await drive(store, args.sagas, args.in_flight, inputs, "s")
        seconds = time.time() - began
        cpu_after = cpu_snapshot(kinds, port)
        bench_tx = store.stats.transactions - tx_before
        await asyncio.sleep(1.0)  # PostgreSQL flushes its statistics within a second
        pg_after = await pg_counters(f"{admin_dsn}/{tag}")
        for key, value in pg_after.items():
            run.figures[f"pg {key} per saga"] = (value - pg_before[key]) / args.sagas
        stop.set()
        await sampler
        records = await read_between(store, first, last)
        analyse(records, "s", run, bench_tx)
        first, last = await drive(store, args.alone, 1, inputs, "a")
        alone, intake = saga_latencies(await read_between(store, first, last), "a")
        run.figures["alone p50 ms"] = pct(alone, 0.5) * 1000
        run.figures["alone p95 ms"] = pct(alone, 0.95) * 1000
        run.figures["alone intake p50 ms"] = pct(intake, 0.5) * 1000
        if samples:
            held = sum(h > 0 for h, _ in samples) / len(samples)
            run.figures["write lock held %"] = 100 * held
            run.figures["lock held per tx ms"] = 1000 * held / run.figures["all tx/s"]
            run.figures["waiting for it, mean"] = statistics.fmean(w for _, w in samples)
        for kind, cores in cpu_used(cpu_before, cpu_after, seconds).items():
            run.figures[f"cpu {kind}"] = cores
    finally:
        cluster.stop()
        await store.close()
        total = args.warmup + args.sagas + args.alone
        scan_logs(cluster, run, measured_from or log_sizes(cluster), total)
    return run


# -- the table -----------------------------------------------------------------------

ROWS: list[tuple[str, str]] = [
    ("sagas/s", "{:,.1f}"),
    ("sagas/s, best round", "{:,.1f}"),
    ("cpu other, best round", "{:.2f}"),
    ("p50 latency ms", "{:,.0f}"),
    ("p95 latency ms", "{:,.0f}"),
    ("alone p50 ms", "{:,.0f}"),
    ("alone p95 ms", "{:,.0f}"),
    ("alone intake p50 ms", "{:,.0f}"),
    ("intake p50 ms", "{:,.1f}"),
    ("reserve_stock p50 ms", "{:,.1f}"),
    ("charge_payment p50 ms", "{:,.1f}"),
    ("ship p50 ms", "{:,.1f}"),
    ("intake % of latency", "{:.0f} %"),
    ("reserve_stock % of latency", "{:.0f} %"),
    ("charge_payment % of latency", "{:.0f} %"),
    ("ship % of latency", "{:.0f} %"),
    ("rest % of latency", "{:.0f} %"),
    ("busiest engine's starts %", "{:.0f} %"),
    ("conflicts per saga", "{:.2f}"),
    ("batches redone per saga", "{:.3f}"),
    ("pg transactions per saga", "{:.1f}"),
    ("pg scans of records per saga", "{:.1f}"),
    ("engine tx/s", "{:,.0f}"),
    ("all tx/s", "{:,.0f}"),
    ("records/tx mean", "{:.1f}"),
    ("records/tx p95", "{:.0f}"),
    ("records/tx max", "{:.0f}"),
    ("appends/tx mean", "{:.2f}"),
    ("client records/tx mean", "{:.1f}"),
    ("gap between tx p50 ms", "{:.2f}"),
    ("write lock held %", "{:.0f} %"),
    ("lock held per tx ms", "{:.1f}"),
    ("waiting for it, mean", "{:.2f}"),
    ("cpu engine", "{:.2f}"),
    ("cpu worker", "{:.2f}"),
    ("cpu bench", "{:.2f}"),
    ("cpu postgres", "{:.2f}"),
    ("cpu kafka", "{:.2f}"),
    ("cpu redis", "{:.2f}"),
    ("cpu other", "{:.2f}"),
    ("cpu machine", "{:.2f}"),
]
RATIOS = {
    "sagas/s",
    "sagas/s, best round",
    "p50 latency ms",
    "p95 latency ms",
    "records/tx mean",
    "engine tx/s",
}


def table(name: str, runs: list[Run], rounds: int) -> str:
    medians: dict[int, dict[str, float]] = {}
    for engines in ENGINE_COUNTS:
        mine = [r for r in runs if r.engines == engines]
        keys = {k for r in mine for k in r.figures}
        medians[engines] = {
            k: statistics.median(r.figures[k] for r in mine if k in r.figures) for k in keys
        }
        best = max(mine, key=lambda r: r.figures.get("sagas/s", 0.0), default=None)
        if best is not None and "sagas/s" in best.figures:
            medians[engines]["sagas/s, best round"] = best.figures["sagas/s"]
            medians[engines]["cpu other, best round"] = best.figures.get("cpu other", 0.0)
    head = f"{'':<30}" + "".join(
        f"{f'{e} engine' + ('s' if e > 1 else ''):>14}" for e in ENGINE_COUNTS
    )
    head += f"{'2 / 1':>9}{'3 / 1':>9}"
    lines = [f"== {name}: median of {rounds} rounds (engines = workers)", head]
    for key, fmt in ROWS:
        if not any(key in medians[e] for e in ENGINE_COUNTS):
            continue
        cells = "".join(
            f"{fmt.format(medians[e][key]) if key in medians[e] else '-':>14}"
            for e in ENGINE_COUNTS
        )
        if key in RATIOS:
            one = medians[1].get(key) or float("nan")
            cells += "".join(f"{medians[e].get(key, float('nan')) / one:>9.2f}" for e in (2, 3))
        lines.append(f"{key:<30}{cells}")
    return "\n".join(lines)


async def bench_stack(name: str, args: argparse.Namespace) -> None:
    with ExitStack() as servers:
        if args.keep_logs:
            workdir = Path(tempfile.mkdtemp(prefix=f"sagaflow-scale-{name}-"))
            print(f"{name}: logs kept in {workdir}", flush=True)
        else:
            workdir = Path(
                servers.enter_context(tempfile.TemporaryDirectory(prefix="sagaflow-scale-"))
            )
        began = time.time()
        stack = start_stack(name, workdir, servers)
        print(f"{name}: servers up in {time.time() - began:.0f} s", flush=True)
        runs: list[Run] = []
        index = 0
        for round_ in range(args.rounds):
            for engines in ENGINE_COUNTS:
                index += 1
                began = time.time()
                run = await run_once(stack, workdir, engines, index, args)
                runs.append(run)
                f = run.figures
                print(
                    f"  round {round_ + 1}, {engines} engine(s): {f.get('sagas/s', 0):.1f} "
                    f"sagas/s, p95 {f.get('p95 latency ms', 0):.0f} ms, "
                    f"{f.get('records/tx mean', 0):.1f} records/tx, "
                    f"other load {f.get('cpu other', 0):.2f} cores "
                    f"({time.time() - began:.0f} s)",
                    flush=True,
                )
                for problem in run.problems:
                    print(f"    ! {problem}", flush=True)
    print()
    print(table(name, runs, args.rounds))
    print()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--stack", choices=["kafka-postgres", "redis-postgres", "both"], default="both"
    )
    parser.add_argument("--sagas", type=int, default=400, help="measured sagas per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20, help="sagas before measuring")
    parser.add_argument(
        "--alone", type=int, default=10, help="sagas run one at a time after, for latency"
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the processes' logs (path printed)"
    )
    args = parser.parse_args()
    names = ["kafka-postgres", "redis-postgres"] if args.stack == "both" else [args.stack]
    for name in names:
        await bench_stack(name, args)


if __name__ == "__main__":
    asyncio.run(main())
