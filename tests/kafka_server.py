"""A real Apache Kafka (4.x, KRaft, one combined controller+broker) for the tests.

The broker's jars come from Maven Central through ``tests/kafka/pom.xml``
(``mvn dependency:copy-dependencies``) into a cache outside the work tree,
``~/.cache/sagaflow/kafka-<version>`` (``SAGAFLOW_KAFKA_CACHE`` overrides it), fetched
once. Each server formats its own storage in a temporary directory, listens on free
loopback ports and is stopped (or SIGKILLed) afterwards. Missing ``java``/``mvn``, a
failed fetch or a broker that will not start raise :class:`ServerUnavailable` with the
exact error: never a skip. :class:`ChildLoop` runs a ``KafkaBroker`` consume loop in a
process of its own, for the tests that kill or freeze a group member; :class:`GroupOffsets`
reads a group's committed offsets as Kafka's own tools do.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.servers import ServerUnavailable, free_port, port_open, wait_until

POM = Path(__file__).parent / "kafka" / "pom.xml"
TEN_MB = 10 * 1024 * 1024
# Kafka's limits sit a little above the 10 MiB messages the broker accepts, for the
# record batch and header overhead.
KAFKA_MAX_BYTES = TEN_MB + 1024 * 1024


def kafka_version() -> str:
    found = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    if found is None:
        raise ServerUnavailable(f"no <kafka.version> in {POM}")
    return found.group(1)


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ServerUnavailable(
            f"{name!r} not found on PATH; scripts/test installs it "
            "(apt-get install openjdk-17-jre-headless maven)"
        )
    return found


def kafka_jars() -> Path:
    """The directory holding the broker's jars, fetched with Maven on first use."""
    version = kafka_version()
    base = Path(os.environ.get("SAGAFLOW_KAFKA_CACHE", Path.home() / ".cache" / "sagaflow"))
    cache = base / f"kafka-{version}"
    if (cache / ".complete").exists():
        return cache
    mvn = _tool("mvn")
    partial = base / f"kafka-{version}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={partial}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise ServerUnavailable(
            f"fetching Apache Kafka {version} jars failed ({proc.returncode}): "
            f"{' '.join(cmd)}\n{(proc.stdout + proc.stderr).strip()[-4000:]}"
        )
    (partial / ".complete").write_text(version)
    try:
        partial.rename(cache)
    except OSError:  # another process won the race: use its copy
        shutil.rmtree(partial, ignore_errors=True)
    return cache


class KafkaServer:
    """One Kafka process in KRaft mode (controller and broker), on free loopback ports."""

    def __init__(self, *, heap: str = "512m", settings: Mapping[str, str] | None = None) -> None:
        """``settings``: server properties on top of (or instead of) the suite's own."""
        self._java = _tool("java")
        self._settings = dict(settings or {})
        self.jars = kafka_jars()
        self.port = free_port()
        self.controller_port = free_port()
        self.heap = heap
        self.dir = Path(tempfile.mkdtemp(prefix="sagaflow-kafka-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = self.dir / "server.log"
        self._formatted = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _properties(self) -> Path:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.dir / "data"),
            "num.partitions": "4",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Tests tune consumer session timeouts far below the 6 s default minimum.
            "group.min.session.timeout.ms": "100",
            "message.max.bytes": str(KAFKA_MAX_BYTES),
            "replica.fetch.max.bytes": str(KAFKA_MAX_BYTES),
            "socket.request.max.bytes": str(4 * KAFKA_MAX_BYTES),
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
            "log.flush.interval.messages": str(2**62),
            **self._settings,
        }
        path = self.dir / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in props.items()))
        return path

    def _java_cmd(self, main: str, *args: str) -> list[str]:
        return [
            self._java, f"-Xmx{self.heap}", "-Xms64m", "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1", "-Xshare:auto", "-Djava.awt.headless=true",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-Dorg.slf4j.simpleLogger.log.kafka.server.KafkaRaftServer=info",
            "-cp", f"{self.jars}/*", main, *args,
        ]  # fmt: skip

    def _format(self, config: Path) -> None:
        cmd = self._java_cmd(
            "kafka.tools.StorageTool", "format", f"--cluster-id={_cluster_id()}", "-c", str(config),
            "--ignore-formatted",
        )  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
        if proc.returncode != 0:
            raise ServerUnavailable(
                f"kafka-storage format failed ({proc.returncode}): "
                f"{(proc.stdout + proc.stderr).strip()[-4000:]}"
            )
        self._formatted = True

    def start(self, timeout: float = 90.0) -> None:
        config = self._properties()
        if not self._formatted:
            self._format(config)
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(
                self._java_cmd("kafka.Kafka", str(config)),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(self._ready, timeout, f"Apache Kafka on {self.bootstrap} (log {self._log})")

    def _ready(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise ServerUnavailable(
                f"Apache Kafka exited with {self._proc.returncode}: {self.log_tail()}"
            )
        if not port_open(self.port):
            return False
        return "Kafka Server started" in self._log.read_text(errors="replace")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self._log.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"(no log: {exc})"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the broker: no controlled shutdown."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(30)
            self._proc = None

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(30)
            self._proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _cluster_id() -> str:
    # A Kafka cluster id is 16 random bytes in URL-safe base64 without padding. It can
    # start with "-", so it is passed as --cluster-id=<id>, never as a separate word.
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


# -- a KafkaBroker consume loop in a process of its own (to kill or freeze it) ----------

CHILD_LOOP = """
import asyncio, json, sys
from brokers import ConsumerOptions, KafkaBroker

async def main(bootstrap, prefix, topic, group, mode, session):
    options = ConsumerOptions(visibility_timeout=0.3, block_time=0.05)
    broker = KafkaBroker(bootstrap, topic_prefix=prefix, session_timeout=float(session),
                         consumer_options=options)
    await broker.connect()

    def say(**line):
        print(json.dumps(line), flush=True)

    async def on_assigned(assignment):
        say(assigned=sorted(assignment.partitions), count=assignment.count)

    async def ack(message, delay):
        await asyncio.sleep(delay)
        await broker.acknowledge(message)
        say(acked=message.id)

    pending = set()
    async for message in broker.consume(topic, group, consumer="child", on_assigned=on_assigned):
        name, partition, offset = message.delivery.entry_id.rsplit(":", 2)
        say(got=message.id, topic=name, partition=int(partition), offset=int(offset),
            key=message.headers.saga_id)
        if mode == "all" or (mode == "odd" and int(offset) % 2):
            await ack(message, 0)
        elif mode == "slow":  # each one a second later, from a task of its own
            task = asyncio.create_task(ack(message, 1.0))
            pending.add(task)
            task.add_done_callback(pending.discard)

asyncio.run(main(*sys.argv[1:]))
"""


class ChildLoop:
    """``KafkaBroker.consume(topic, group, on_assigned=...)`` in a child process that
    writes what happens as JSON lines: ``assigned`` (its partitions), ``got`` (a message
    delivered: topic, partition, offset, key) and ``acked``. ``mode``: ``all`` acknowledges
    each message at once, ``odd`` only those at odd offsets (the others stay in flight),
    ``slow`` each one a second later."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.assignments: list[frozenset[int]] = []
        self.got: list[dict[str, Any]] = []
        self.acked: set[str] = set()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(
        cls, bootstrap: str, prefix: str, topic: str, group: str, *, mode: str, session: float
    ) -> ChildLoop:
        args = (bootstrap, prefix, topic, group, mode, str(session))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD_LOOP, *args,
            stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).parents[1],
        )  # fmt: skip
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            event = json.loads(line)
            if "assigned" in event:
                self.assignments.append(frozenset(event["assigned"]))
            elif "got" in event:
                self.got.append(event)
            else:
                self.acked.add(event["acked"])

    @property
    def held(self) -> frozenset[int] | None:
        return self.assignments[-1] if self.assignments else None

    def signal(self, sig: signal.Signals) -> None:
        """SIGKILL (a crash), SIGSTOP (a process frozen past its session), SIGCONT."""
        self.proc.send_signal(sig)

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
        await self._reader


class GroupOffsets:
    """A group's committed offset and the end offset of every partition of a broker's
    topic and of its retry topic, read through Kafka's admin API (what
    ``kafka-consumer-groups --describe`` shows). It remembers any committed offset it
    saw go backwards."""

    def __init__(self, broker: Any, topic: str, group: str) -> None:
        self.group = broker.topic_prefix + group  # the group id, as KafkaBroker names it
        main = broker.kafka_topic(topic)
        count = broker.partitions
        retry = f"{main}.retry.{group}"
        self.tps = [TopicPartition(name, p) for name in (main, retry) for p in range(count)]
        self._admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        self._reader = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap_servers)
        self._highest: dict[TopicPartition, int] = {}
        self.backwards: list[tuple[TopicPartition, int, int]] = []

    async def __aenter__(self) -> GroupOffsets:
        await self._admin.start()
        await self._reader.start()
        self._watch = asyncio.create_task(self._watch_forever())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._watch.cancel()
        await asyncio.wait([self._watch])
        await self._reader.stop()
        await self._admin.close()

    async def _watch_forever(self) -> None:
        """Read all along, so that an offset moved back and forth again is seen."""
        while True:
            await self.read()
            await asyncio.sleep(0.02)

    async def read(self) -> dict[TopicPartition, tuple[int, int]]:
        """Partition → (committed offset, -1 for none; end offset)."""
        end = await self._reader.end_offsets(self.tps)
        found = await self._admin.list_consumer_group_offsets(self.group, partitions=self.tps)
        out = {}
        for tp in self.tps:
            meta = found.get(tp)
            committed = meta.offset if meta is not None else -1
            highest = self._highest.get(tp, -1)
            if committed < highest and (tp, highest, committed) not in self.backwards:
                self.backwards.append((tp, highest, committed))
            self._highest[tp] = max(committed, highest)
            out[tp] = (committed, end[tp])
        return out

    @staticmethod
    def at_end(offsets: dict[TopicPartition, tuple[int, int]]) -> bool:
        """Lag 0 everywhere (a partition never written to needs no commit)."""
        return all(c == e or (c == -1 and e == 0) for c, e in offsets.values())

    async def wait_for(
        self, check: Callable[[dict[TopicPartition, tuple[int, int]]], bool], what: str
    ) -> None:
        """Poll until ``check(read())`` holds; fail after 30 s naming ``what``."""
        last: dict[TopicPartition, tuple[int, int]] = {}
        try:
            async with asyncio.timeout(30):
                while not check(last := await self.read()):  # noqa: ASYNC110 (server state)
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"never happened: {what}; (committed, end): {last}") from None

    async def settled(self) -> None:
        """Wait until every committed offset is its end offset; none went backwards."""
        await self.wait_for(self.at_end, "lag 0 everywhere")
        assert self.backwards == [], f"committed offsets went backwards: {self.backwards}"
