"""Session-wide real servers: PostgreSQL and redis-server on free loopback ports.

A fixture that cannot start its server raises; nothing here ever skips.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import hypothesis.internal.conjecture.engine
import hypothesis.stateful
import hypothesis.strategies
import pytest

from tests.kafka_server import KafkaServer
from tests.servers import PostgresServer, RedisServer

# Imported here, at the top of the stack, on purpose: CPython 3.11.7 can raise
# "SystemError: AST constructor recursion depth mismatch" when pytest's assertion
# rewriter first parses hypothesis's modules deep inside a collection (gh-106905).
assert hypothesis.stateful and hypothesis.strategies

# The property tests' scale (tests/orchestrator/test_core_properties.py): ``ci``, the
# default, simulates 10,000 sagas; ``deep`` 100,000, by hand:
#   .venv/bin/pytest tests/orchestrator/test_core_properties.py --hypothesis-profile deep
hypothesis.settings.register_profile("ci", print_blob=True)
hypothesis.settings.register_profile("deep", print_blob=True)
hypothesis.settings.load_profile("ci")

# A failing property is reported within about 20 s of shrinking, not hypothesis's 300:
# the broken rule is named either way, and a shorter history a minute later is not worth
# a CI timeout. (An internal constant: the assert fails loudly if hypothesis renames it.)
assert hasattr(hypothesis.internal.conjecture.engine, "MAX_SHRINKING_SECONDS")
hypothesis.internal.conjecture.engine.MAX_SHRINKING_SECONDS = 20  # type: ignore[attr-defined]

_db_counter = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    return postgres_server.create_database(f"test_{next(_db_counter)}")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The session's redis-server, flushed before each test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture(scope="session")
def kafka_server() -> Iterator[KafkaServer]:
    """One Apache Kafka (KRaft) for the whole session; it fails loudly if it cannot start."""
    server = KafkaServer()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_server: KafkaServer) -> str:
    """``host:port`` of the session's Kafka; tests isolate themselves by topic prefix."""
    return kafka_server.bootstrap
