"""The stacks a deployment runs on, with their servers started on loopback ports, for
chaos runs (``tests/runtime/test_chaos.py``, ``bench/chaos.py``).

=================  ======================  =========================================
stack              store                   broker
=================  ======================  =========================================
``embedded``       a SQLite file           in-memory (one ``--role both`` process)
``redis-sqlite``   a SQLite file           redis-server, AOF ``appendfsync always``
``redis-postgres`` PostgreSQL              redis-server, AOF ``appendfsync always``
``kafka-postgres`` PostgreSQL              Apache Kafka (KRaft)
=================  ======================  =========================================

PostgreSQL waits for every commit to reach its log (``synchronous_commit=on``), so a
kill loses nothing it acknowledged; Redis writes every command to its AOF first.
"""

from __future__ import annotations

import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.kafka_server import KafkaServer
from tests.runtime.cluster import Target
from tests.servers import PostgresServer, RedisServer

STACKS = ("embedded", "redis-sqlite", "redis-postgres", "kafka-postgres")


@dataclass
class Stack:
    name: str
    store: str
    messaging: dict[str, Any]
    servers: list[Target] = field(default_factory=list)
    """The servers chaos may kill (each restarts on its own port and data)."""

    @property
    def multi_process(self) -> bool:
        """Whether engines and workers can run as separate processes."""
        return self.messaging["broker_type"] != "memory"


def start_stack(name: str, workdir: Path, stack: ExitStack) -> Stack:
    """Start the servers of stack ``name``; ``stack`` stops them."""
    if name not in STACKS:
        raise ValueError(f"unknown stack {name!r} (one of {', '.join(STACKS)})")
    store = f"sqlite:///{workdir / 'sagas.sqlite'}"
    servers: list[Target] = []
    if name.endswith("postgres"):
        postgres = PostgresServer(durable_commits=True)
        postgres.start()
        stack.callback(postgres.stop)
        store = postgres.create_database("chaos")
        servers.append(
            Target(
                "postgres",
                "postgres",
                postgres.kill,
                postgres.start,
                lambda: postgres.running,
            )
        )
    messaging: dict[str, Any] = {"broker_type": "memory"}
    if name.startswith("redis"):
        redis = RedisServer(appendonly=True)
        redis.start()
        stack.callback(redis.cleanup)
        messaging = {"broker_type": "redis", "redis": {"url": redis.url}}
        servers.append(Target("redis", "redis", redis.kill, redis.start, lambda: redis.running))
    elif name.startswith("kafka"):
        kafka = KafkaServer()
        kafka.start()
        stack.callback(kafka.cleanup)
        messaging = {
            "broker_type": "kafka",
            "kafka": {
                "bootstrap_servers": [kafka.bootstrap],
                "topic_prefix": f"chaos{uuid.uuid4().hex[:6]}.",
                "session_timeout": 6,  # the server's minimum: a dead member moves on sooner
            },
        }
        servers.append(Target("kafka", "kafka", kafka.kill, kafka.start, lambda: kafka.running))
    return Stack(name, store, messaging, servers)
