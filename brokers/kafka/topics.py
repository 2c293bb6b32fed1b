"""The Kafka topics behind a broker's topics and groups: their names and their creation.

For topic ``t`` and group ``g``, each behind the broker's ``topic_prefix``: ``t`` (the
messages, ``partitions`` partitions), ``t.priority.n`` (priority lane ``n`` of 1 …
priority_levels - 1: messages published with that priority; ``t`` is lane 0),
``t.retry.g`` (the group's retries and reprocessed
dead letters), ``t.dlq`` (dead letters: one partition, compacted, kept for the DLQ
TTL) and ``t.dlq.discarded`` (the discard archive: dead letters someone discarded, with
who, when and why; configured as ``t.dlq``). Characters Kafka does not allow in topic
names are spelled ``_xx`` (hex). Topics are created on first use, with
``max.message.bytes`` set for the broker's size limit.
"""

from __future__ import annotations

import contextlib
import re

from aiokafka import TopicPartition
from aiokafka import errors as kerr
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from brokers.kafka.clients import RECORD_OVERHEAD, KafkaIO

_NAME_OK = re.compile(r"[^A-Za-z0-9._-]")


def topic_name(name: str) -> str:
    # Kafka topic names are [A-Za-z0-9._-]; anything else is spelled as _xx (hex).
    return _NAME_OK.sub(lambda m: f"_{ord(m.group()):02x}", name)


class Topics:
    """Names the topics of one broker and creates them once, remembering their
    partition counts."""

    def __init__(
        self,
        prefix: str,
        partitions: int,
        replication_factor: int,
        max_message_bytes: int,
        dlq_ttl: float,
        message_ttl: float | None = None,
    ) -> None:
        """``message_ttl`` and ``dlq_ttl`` (seconds) become the ``retention.ms`` of the
        topics this creates: main and retry topics, and DLQs (``None``: the server's
        default for main and retry topics)."""
        self.prefix = prefix
        self.partitions = partitions
        self.replication_factor = replication_factor
        self._max_message_bytes = max_message_bytes
        self._dlq_ttl = dlq_ttl
        self._message_ttl = message_ttl
        self._counts: dict[str, int] = {}

    def main(self, topic: str) -> str:
        return self.prefix + topic_name(topic)

    def lane(self, topic: str, lane: int) -> str:
        """The Kafka topic of priority lane ``lane`` of ``topic`` (lane 0: ``main``)."""
        return self.main(topic) if lane == 0 else f"{self.main(topic)}.priority.{lane}"

    def retry(self, topic: str, group: str) -> str:
        return f"{self.main(topic)}.retry.{topic_name(group)}"

    def dlq(self, topic: str) -> str:
        return f"{self.main(topic)}.dlq"

    def discarded(self, topic: str) -> str:
        return f"{self.dlq(topic)}.discarded"

    def dlq_candidates(self, names: list[str]) -> list[str]:
        """Those of the cluster's topic ``names`` that may be this broker's DLQs (behind
        its prefix, ending ``.dlq``); a user topic may end so too, so read to be sure."""
        return [n for n in names if n.startswith(self.prefix) and n.endswith(".dlq")]

    def topic_of_dlq(self, name: str) -> str:
        """The topic a DLQ topic belongs to, as far as its Kafka name tells (characters
        spelled ``_xx`` stay so: the records name the topic exactly)."""
        return name[len(self.prefix) :].removesuffix(".dlq")

    def group_id(self, group: str) -> str:
        return self.prefix + group

    def partition_count(self, name: str) -> int:
        """How many partitions ``name`` has (the configured count until it is known)."""
        return self._counts.get(name, self.partitions)

    def partitions_of(self, name: str) -> list[TopicPartition]:
        """The partitions of a topic created or found by :meth:`ensure`."""
        return [TopicPartition(name, p) for p in range(self._counts.get(name, 0))]

    def forget(self) -> None:
        self._counts.clear()

    def deleted(self, *names: str) -> None:
        """The topics were deleted: create them again when next needed."""
        for name in names:
            self._counts.pop(name, None)

    async def exists(self, admin: AIOKafkaAdminClient | None, io: KafkaIO, name: str) -> bool:
        """Whether topic ``name`` exists on the server (asked once it is known to)."""
        if name in self._counts:
            return True
        assert admin is not None
        # list_topics, not describe_topics: a metadata request for one topic may create
        # it on a server with auto.create.topics.enable (Kafka's default).
        if name not in await io(admin.list_topics):
            return False
        (info,) = await io(lambda: admin.describe_topics([name]))
        if info.get("error_code") or not info.get("partitions"):
            return False
        self._counts[name] = len(info["partitions"])
        return True

    async def ensure(
        self, admin: AIOKafkaAdminClient | None, io: KafkaIO, *names: str, dlq: bool = False
    ) -> None:
        """Create the topics among ``names`` not known yet (one that exists is fine)."""
        missing = [name for name in names if name not in self._counts]
        if not missing:
            return
        assert admin is not None
        limit = str(self._max_message_bytes + RECORD_OVERHEAD)
        configs = {"max.message.bytes": limit}
        if dlq:
            configs |= {
                "cleanup.policy": "compact,delete",
                "retention.ms": str(int(self._dlq_ttl * 1000)),
            }
        elif self._message_ttl is not None:
            configs["retention.ms"] = str(int(self._message_ttl * 1000))
        count = 1 if dlq else self.partitions
        new = [
            NewTopic(name, count, self.replication_factor, topic_configs=dict(configs))
            for name in missing
        ]

        async def create() -> None:
            with contextlib.suppress(kerr.TopicAlreadyExistsError):
                await admin.create_topics(new)

        await io(create)
        described = await io(lambda: admin.describe_topics(missing))
        for info in described:
            if not info.get("error_code") and info.get("partitions"):
                self._counts[str(info["topic"])] = len(info["partitions"])
