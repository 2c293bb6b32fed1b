"""How a Kafka consumer group's partitions are shared among its consume loops.

The group's leader runs :func:`assign_sticky` (assignor ``sagaflow-sticky-inflight``):

* **Balanced.** Each topic's partitions are split evenly: every member gets
  ``partitions // members`` of them, and the members with the most claims (below) one
  more, until the remainder is used up. So a busy member cannot keep a joining one idle.
* **Sticky for work in flight, within that share.** Each member tells the group (in its
  join metadata) which partitions it holds delivered, un-acknowledged messages of; the
  leader leaves those where they are, up to the member's share, so a rebalance does not
  hand a message still being worked on to a second member, and the first one's
  acknowledgement stays valid. What a member has to give up beyond its share is
  delivered again by its new holder (at-least-once). The other partitions go, in order,
  to the members below their share.
* **Retries and priority lanes beside their messages.** Partition ``p`` of a retry
  topic ``t.retry.g`` or of a priority lane ``t.priority.n`` goes to the member holding
  partition ``p`` of ``t`` (a claim on either counts for both), so the loop that holds
  a key's partition also receives the key's retries and its messages of every
  priority.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import orjson
from aiokafka import TopicPartition
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

COMPANION_INFIXES = (".retry.", ".priority.")
"""A retry topic is named ``<main>.retry.<group>``, a priority lane ``<main>.priority.<n>``
(:mod:`brokers.kafka.topics`)."""


class StickyInFlightAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    """The group protocol of every KafkaBroker consume loop (see the module docstring).
    ``claims()`` are the partitions its member holds messages in flight of."""

    name = "sagaflow-sticky-inflight"
    version = 0

    def __init__(self, claims: Callable[[], list[TopicPartition]]) -> None:
        self._claims = claims

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        held = [[tp.topic, tp.partition] for tp in self._claims()]
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), orjson.dumps(held))

    def assign(
        self,
        cluster: ClusterMetadata,
        members: Mapping[str, ConsumerProtocolMemberMetadata],
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        return assign_sticky(
            {m: list(meta.subscription) for m, meta in members.items()},
            {m: _claims(meta.user_data) for m, meta in members.items()},
            {
                topic: sorted(cluster.partitions_for_topic(topic) or ())
                for meta in members.values()
                for topic in meta.subscription
            },
            self.version,
        )

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        return None


def _claims(user_data: bytes | None) -> list[TopicPartition]:
    try:
        return [TopicPartition(str(t), int(p)) for t, p in orjson.loads(user_data or b"[]")]
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return []


def main_of(topic: str, topics: Iterable[str]) -> str | None:
    """The topic among ``topics`` that ``topic`` is the retry topic or a priority lane
    of, if any."""
    found = [
        m
        for m in topics
        if m != topic and any(topic.startswith(m + infix) for infix in COMPANION_INFIXES)
    ]
    return max(found, key=len) if found else None


def assign_sticky(
    subscriptions: Mapping[str, list[str]],
    claims: Mapping[str, list[TopicPartition]],
    partitions: Mapping[str, list[int]],
    version: int = 0,
) -> dict[str, ConsumerProtocolMemberAssignment]:
    """Member → its partitions (see the module docstring)."""
    retry_of = {t: m for t in partitions if (m := main_of(t, partitions)) is not None}
    owner: dict[TopicPartition, str] = {}

    def subscribed(topic: str) -> list[str]:
        return sorted(m for m, topics in subscriptions.items() if topic in topics)

    def spread(topic: str, members: list[str], load: dict[str, int]) -> None:
        for p in partitions[topic]:
            tp = TopicPartition(topic, p)
            if tp not in owner:
                chosen = min(members, key=lambda m: (load[m], m))
                owner[tp] = chosen
                load[chosen] += 1

    for topic in sorted(t for t in partitions if t not in retry_of):
        members = subscribed(topic)
        if not members:
            continue
        known = set(partitions[topic])
        claimed = {m: _claimed(claims.get(m, ()), topic, retry_of, known) for m in members}
        # An even split; the members with the most claims take the remainder.
        base, extra = divmod(len(known), len(members))
        ranked = sorted(members, key=lambda m: (-len(claimed[m]), m))
        quota = {m: base + (i < extra) for i, m in enumerate(ranked)}
        load = dict.fromkeys(members, 0)
        for member in members:  # in-flight work stays, up to the member's quota
            for p in claimed[member]:
                tp = TopicPartition(topic, p)
                if tp not in owner and load[member] < quota[member]:
                    owner[tp] = member
                    load[member] += 1
        for p in partitions[topic]:
            tp = TopicPartition(topic, p)
            if tp not in owner:
                chosen = min(members, key=lambda m: (load[m] >= quota[m], load[m], m))
                owner[tp] = chosen
                load[chosen] += 1
    for topic, main in sorted(retry_of.items()):
        members = subscribed(topic)
        if not members:
            continue
        load = dict.fromkeys(members, 0)
        for p in partitions[topic]:
            beside = owner.get(TopicPartition(main, p))
            if beside in load:
                owner[TopicPartition(topic, p)] = beside
                load[beside] += 1
        spread(topic, members, load)
    per_member: dict[str, dict[str, list[int]]] = {m: {} for m in subscriptions}
    for tp, member in owner.items():
        per_member[member].setdefault(tp.topic, []).append(tp.partition)
    return {
        member: ConsumerProtocolMemberAssignment(
            version, sorted((t, sorted(ps)) for t, ps in topics.items()), b""
        )
        for member, topics in per_member.items()
    }


def _claimed(
    held: Iterable[TopicPartition], topic: str, retry_of: Mapping[str, str], known: set[int]
) -> list[int]:
    """The partitions of ``topic`` a member claims: in flight on it or on its retry topic."""
    found = {tp.partition for tp in held if tp.topic == topic or retry_of.get(tp.topic) == topic}
    return sorted(found & known)
