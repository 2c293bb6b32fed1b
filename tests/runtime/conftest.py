"""Engines on every store x broker pairing the runtime must work on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from brokers import Broker, ConsumerOptions, InMemoryBroker, RedisStreamsBroker
from eventstore import EventStore
from orchestrator.runtime.engine import Engine, EngineOptions
from tests.runtime.flows import WORKFLOWS

FAST = ConsumerOptions(visibility_timeout=2.0, block_time=0.05)

PAIRS = ["sqlite-memory+memory", "sqlite-file+redis", "postgres+memory", "postgres+redis"]


@pytest.fixture(params=PAIRS)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Callable[[], Broker]]:
    store_kind, broker_kind = request.param.split("+")
    if store_kind == "sqlite-memory":
        url = "sqlite:///:memory:"
    elif store_kind == "sqlite-file":
        url = f"sqlite:///{tmp_path / 'sagas.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    if broker_kind == "redis":
        redis_url: str = request.getfixturevalue("redis_url")
        return url, lambda: RedisStreamsBroker(redis_url=redis_url, consumer_options=FAST)
    return url, lambda: InMemoryBroker(consumer_options=FAST)


@pytest.fixture
async def store(pair: tuple[str, Callable[[], Broker]]) -> AsyncIterator[EventStore]:
    opened = await EventStore.open(pair[0])
    yield opened
    await opened.close()


@pytest.fixture
async def broker(pair: tuple[str, Callable[[], Broker]]) -> AsyncIterator[Broker]:
    made = pair[1]()
    await made.connect()
    yield made
    await made.disconnect()


@pytest.fixture
def make_engine(store: EventStore, broker: Broker) -> Callable[..., Engine]:
    def make(**options: Any) -> Engine:
        return Engine(store, broker, WORKFLOWS, options=EngineOptions(**options))

    return make


@pytest.fixture
async def engine(make_engine: Callable[..., Engine]) -> AsyncIterator[Engine]:
    async with make_engine() as running:
        yield running
