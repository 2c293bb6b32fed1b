"""The configuration files of docs/DEPLOY.md run as written: each stack it describes is
started on local servers, with the file's settings (only the addresses changed, and a
replication factor of 1 for the one local Kafka broker), two engine and two worker
processes, and sagas of the example workflows end as their inputs say."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from eventstore import EventStore
from orchestrator.runtime.client import request_saga
from tests.runtime.cluster import (
    Cluster,
    check_broker_empty,
    check_sagas,
    saga_input,
    wait_all_finished,
)

DEPLOY = Path(__file__).resolve().parents[1] / "docs" / "DEPLOY.md"
SAGAS = 60

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def deploy_configs() -> dict[str, dict[str, Any]]:
    """The YAML blocks of DEPLOY.md, by the stack named in the marker before each."""
    text = DEPLOY.read_text()
    found = re.findall(r"<!-- deploy: ([\w-]+) -->\s*```yaml\n(.*?)```", text, flags=re.S)
    return {name: yaml.safe_load(body) for name, body in found}


def test_the_deploy_doc_describes_both_stacks() -> None:
    assert set(deploy_configs()) == {"kafka-postgres", "redis-postgres"}


async def _run(config: dict[str, Any], tmp: Path) -> None:
    path = tmp / "sagaflow.yaml"
    path.write_text(yaml.safe_dump(config))
    store = await EventStore.open(config["store"])
    cluster = Cluster.of(path, tmp, engines=2, workers=2)
    expected: dict[str, str] = {}
    messaging = {k: v for k, v in config.items() if k not in ("store", "workflows", "engine")}
    try:
        cluster.start()
        for n in range(SAGAS):
            workflow, data, status = saga_input(n)
            expected[await request_saga(store, workflow, data, saga_id=f"d{n:03d}")] = status
        unfinished = await wait_all_finished(store, SAGAS, 150)
        assert unfinished == 0, f"{unfinished} sagas unfinished\n{cluster.logs()}"
        await check_broker_empty(messaging)
    finally:
        cluster.stop()
    statuses = await check_sagas(store, expected)
    await store.close()
    assert sum(statuses.values()) == SAGAS


async def test_the_kafka_postgres_file_runs(
    postgres_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    config = deploy_configs()["kafka-postgres"]
    config["store"] = postgres_url
    config["kafka"]["bootstrap_servers"] = [kafka_bootstrap]
    config["kafka"]["topic_prefix"] = f"deploy{uuid.uuid4().hex[:6]}."
    config["kafka"]["replication_factor"] = 1
    await _run(config, tmp_path)


async def test_the_redis_postgres_file_runs(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    config = deploy_configs()["redis-postgres"]
    config["store"] = postgres_url
    config["redis"]["url"] = redis_url
    await _run(config, tmp_path)
