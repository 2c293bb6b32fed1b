"""Acknowledgements that arrive after their consume loop has left the group.

A loop that ends commits what is contiguous and leaves; the trackers of its partitions
with messages still in flight are kept here. An acknowledgement that comes later is
committed for the group (by a consumer that joins no group: Kafka accepts its commit
while the group has no members), as long as no other member has been assigned the
partition since; once one has, it delivers the message again and the late
acknowledgement is dropped. A late commit only ever moves the group's offset forward:
if another process's member has committed further meanwhile, the tracker is dropped.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka import errors as kerr
from aiokafka.structs import OffsetAndMetadata

from brokers.kafka.clients import KafkaIO
from brokers.kafka.member import Member
from brokers.kafka.offsets import OffsetTracker

logger = logging.getLogger("brokers")


class LateAcks:
    """The trackers members left behind, per (group id, partition), and the consumers
    that commit for them."""

    def __init__(self, common: dict[str, Any], io: KafkaIO) -> None:
        self._common = common
        self._io = io
        self._orphans: dict[tuple[str, TopicPartition], tuple[str, OffsetTracker]] = {}
        self._committers: dict[str, AIOKafkaConsumer] = {}

    def adopt(self, member: Member) -> None:
        """Keep the trackers of a closing member's partitions with messages in flight."""
        for tp, tracker in member.trackers.items():
            if member.buffer.inflight.get(tp):
                self._orphans[(member.group, tp)] = (member.token, tracker)

    def taken(self, member: Member, assigned: set[TopicPartition]) -> None:
        """``member`` was assigned ``assigned``."""
        for tp in assigned:  # a live owner now: older members' trackers are moot
            self._orphans.pop((member.group, tp), None)

    async def ack(
        self, group: str, token: str, tp: TopicPartition, offset: int, tracked: bool
    ) -> None:
        """Acknowledge ``offset`` of member ``token``, which has left group ``group``;
        ``tracked`` when its tracker has taken the acknowledgement already."""
        orphan = self._orphans.get((group, tp))
        if orphan is None or orphan[0] != token:
            return  # its partition has a new owner, who will deliver it again
        tracker = orphan[1]
        if (tracked or tracker.ack(offset)) and tracker.dirty:
            await self._commit_as_group(group, tp, tracker)

    async def _commit_as_group(
        self, group: str, tp: TopicPartition, tracker: OffsetTracker
    ) -> None:
        """Commit for a member that has left: accepted while the group has no members."""
        offset = tracker.committable
        if offset is None:
            return
        committer = self._committers.get(group)
        if committer is None:
            committer = AIOKafkaConsumer(**self._common, group_id=group, enable_auto_commit=False)
            await self._io(committer.start)
            self._committers[group] = committer
        committer.assign([tp])
        committer.pause(tp)
        try:
            now = await committer.committed(tp)
            if now is not None and now >= offset:  # someone went further: not ours to move
                self._orphans.pop((group, tp), None)
                return
            await committer.commit({tp: OffsetAndMetadata(offset, "")})
        except kerr.KafkaError as exc:
            logger.debug(
                "commit of %s:%s for %s after its consumer left: %s", tp, offset, group, exc
            )
            return
        tracker.committed(offset)

    def release(self) -> list[AIOKafkaConsumer]:
        """Forget every tracker; the committers, for the caller to stop."""
        committers = list(self._committers.values())
        self._committers.clear()
        self._orphans.clear()
        return committers
