"""Node loss on real servers: kill any process, at any time, and only latency changes.

Three ``orchestrator run --role engine`` and three ``--role worker`` processes share a
PostgreSQL store and a broker (Kafka or Redis). While 1,000 sagas of the example
workflows run, a random process is SIGKILLed every few seconds; some are restarted,
some stay dead, but at least one engine and one worker always live. In the end every
saga ends with the status its input implies, no step outcome and no compensation is
recorded twice, every chain verifies, and the broker is empty.

It prints the kills, the adoptions, and the p50/p95 time from an engine's kill to the
first adoption by a survivor.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from pathlib import Path
from typing import Any

import pytest

from eventstore import EventStore
from orchestrator.runtime.client import request_saga
from tests.runtime.cluster import (
    Cluster,
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

SAGAS = 1000

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


async def _run_node_loss(
    stack: str, messaging: dict[str, Any], postgres_url: str, tmp: Path
) -> None:
    messaging = {
        **messaging,
        # Faster than the defaults so that the test stays short: a dead engine's
        # leases expire after ~5 s (Kafka: its session timeout), a dead worker's
        # messages are claimed after 5 s.
        "consumer": {"visibility_timeout": 5, "membership_ttl": 4, "block_time": 0.5},
    }
    config = write_config(
        tmp / "sagaflow.yaml", postgres_url, messaging, sweep_interval=2, reissue_after=20
    )
    store = await EventStore.open(postgres_url)  # the schema, before the engines race
    cluster = Cluster.of(config, tmp, engines=3, workers=3)
    kills: list[tuple[float, str, str]] = []
    expected: dict[str, str] = {}
    try:
        cluster.start()
        churn = asyncio.create_task(
            chaos(
                cluster.targets(),
                random.Random(20261202),
                24.0,
                every=(2.0, 4.0),
                keep_alive=at_least_one_process_of_each_role,
                log=kills,
            )
        )
        for n in range(SAGAS):  # requested over ~10 s, while processes die
            workflow, data, status = saga_input(n)
            expected[await request_saga(store, workflow, data, saga_id=f"n{n:04d}")] = status
            if n % 100 == 99:
                await asyncio.sleep(1.0)
        await churn
        cluster.revive_one_of_each()
        unfinished = await wait_all_finished(store, SAGAS, 150)
        assert unfinished == 0, f"{unfinished} sagas unfinished\n{cluster.logs()}"
        try:
            await check_broker_empty(messaging)
        except AssertionError as exc:
            raise AssertionError(f"[{stack}] {exc}\n{cluster.logs(1500)}") from None
    finally:
        cluster.stop()
    statuses = await check_sagas(store, expected)
    await store.close()

    adoptions = cluster.adoptions()
    engine_kills = [k for k in kills if k[1] == "engine"]
    delays = recovery_times(engine_kills, [when for when, count in adoptions if count > 0])
    print(
        f"\n[{stack}] {SAGAS} sagas {dict(statuses)}; {len(kills)} kills "
        f"({len(engine_kills)} engines): {[name for _, _, name in kills]}; "
        f"{sum(c for _, c in adoptions)} sagas adopted in {len(adoptions)} adoptions\n"
        f"[{stack}] kill → first adoption: {p50_p95(delays)}"
    )
    assert len(kills) >= 5, kills
    assert engine_kills, "no engine was killed: the test proves nothing about adoption"
    assert statuses["completed"] and statuses["compensated"] and statuses["failed"]


async def test_node_loss_on_redis_and_postgres(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    messaging = {"broker_type": "redis", "redis": {"url": redis_url}}
    await _run_node_loss("redis", messaging, postgres_url, tmp_path)


async def test_node_loss_on_kafka_and_postgres(
    postgres_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = f"nl{uuid.uuid4().hex[:6]}."
    messaging = {
        "broker_type": "kafka",
        "kafka": {
            "bootstrap_servers": [kafka_bootstrap],
            "topic_prefix": prefix,
            "session_timeout": 6,  # the server's minimum: a dead member moves on sooner
        },
    }
    await _run_node_loss("kafka", messaging, postgres_url, tmp_path)
