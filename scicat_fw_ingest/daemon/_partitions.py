"""What the listener keeps per partition: assignment, takeover fences, offsets (in flight, held for owed work),
partitions paused for holding too much, and the commits and lag that follow from them.

Why apart from the Kafka loop (``listen``): this is the failover design of docs/listen.md "Running several
listeners" — a taken-over partition's messages wait ``takeover_wait`` before they may reach SciCat, the offsets
of queued or to-be-verified files stay uncommitted so the group (not one host) owns that work, a partition
holding ``held_max`` such files is paused, and a revoked partition's bookkeeping is handed back — kept in one
place with the consumer passed in, so the loop only decides when each step happens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka import Message as KafkaMessage

from ._offsets import OffsetTracker
from .backlog import MemoryBound, publish_unread
from .metrics import Metrics

log = logging.getLogger("sfi.listen")

#: (topic, partition)
TP = tuple[str, int]


def position(msg: KafkaMessage) -> tuple[TP, int]:
    """(topic, partition) and offset of a consumed message (always set on one that is not an error)."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    assert topic is not None and partition is not None and offset is not None
    return (topic, partition), offset


def partition_of(source: str) -> TP | None:
    """(topic, partition) of a recorded message source "topic/partition@offset" (None for other sources)."""
    where, _, offset = source.rpartition("@")
    topic, _, partition = where.rpartition("/")
    return (topic, int(partition)) if topic and partition.isdigit() and offset.isdigit() else None


class PartitionBook:
    """The listener's per-partition state; every method that talks to Kafka is given the consumer."""

    def __init__(self, *, takeover_wait: float, held_max: int, inflight_max: int = 100) -> None:
        self.takeover_wait, self.held_max = takeover_wait, held_max
        #: files held in memory (queued for a worker or being ingested) before every partition pauses (backlog.py)
        self.memory = MemoryBound(inflight_max)
        self.offsets = OffsetTracker()
        #: partitions assigned now (a queued file of another partition is that partition's owner's to retry)
        self.assignment: set[TP] = set()
        #: per taken-over partition: the monotonic time before which its messages must not reach SciCat
        self.fence: dict[TP, float] = {}
        #: file key -> offsets held uncommitted while the file waits for a retry or a verification
        self.queued: dict[str, list[tuple[TP, int]]] = {}
        #: partitions paused because they hold ``held_max`` queued files
        self.held_paused: set[TP] = set()
        self.last_commit = 0.0

    def owns(self, source: str) -> bool:
        """Whether the message a record came from is of a partition assigned here."""
        return partition_of(source) in self.assignment

    def settle(self, key: str, offsets: list[tuple[TP, int]], *, queued: bool) -> None:
        """An outcome recorded late (after a pause): queued -> its offsets wait for the retry, else done."""
        if queued:  # still owed: the offsets wait for the retry (the group owns it)
            self.queued.setdefault(key, []).extend(offsets)
            return
        for tp, offset in offsets:
            self.offsets.done(tp, offset)

    def fence_for(self, tp: TP) -> float | None:
        """The time before which a message of ``tp`` must not reach SciCat, or None (an ended window is cleared)."""
        fence = self.fence.get(tp)
        if fence is not None and time.monotonic() < fence:
            return fence
        if fence is not None:
            del self.fence[tp]  # the window is over
        return None

    def assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions assigned: fenced if taken over, and paused or resumed as the bound says *now*.

        librdkafka keeps a partition's pause through a rebalance: a partition this consumer paused (held files,
        memory bound) that is revoked and assigned to it again comes back paused, while its held-paused mark
        was dropped with the revoke, so nothing would ever resume it. Found by the 300-job failover soak: 139
        files of partitions that moved back and forth were never read. So each assigned partition is resumed
        here, or paused and marked when the memory bound holds."""
        for p in partitions:
            self.assignment.add((p.topic, p.partition))
        if partitions:
            try:
                if self.memory.full:
                    consumer.pause(partitions)
                    self.held_paused |= {(p.topic, p.partition) for p in partitions}
                else:
                    consumer.resume(partitions)
            except KafkaException as exc:
                log.warning("pausing/resuming assigned partitions: %s", exc)
        if self.takeover_wait > 0 and partitions:
            self._set_fences(consumer, partitions)

    def _set_fences(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Fence the partitions an earlier owner worked on (they have a committed offset): the messages read
        from them in the next ``takeover_wait`` seconds wait until then before they may reach SciCat.

        Every message read in that window, not only those below the high watermark at assignment: some brokers
        (Tansu) report a watermark that lags the log, and a new message waits at most ``takeover_wait`` once.

        A partition the group never committed had no earlier owner that got as far as a commit (the first
        commit comes ``commit_interval`` after the first message): it is not fenced, so a first start on a
        backlog is not delayed."""
        until = time.monotonic() + self.takeover_wait
        try:
            committed = consumer.committed([TopicPartition(p.topic, p.partition) for p in partitions], timeout=10.0)
        except KafkaException:
            committed = [TopicPartition(p.topic, p.partition, 0) for p in partitions]  # unknown: fence all
        fenced = []
        for tp in committed:
            if tp.offset >= 0:
                self.fence[(tp.topic, tp.partition)] = until
                fenced.append(f"{tp.topic}/{tp.partition} from {tp.offset}")
        if fenced:
            log.info("taking over %s: these messages reach SciCat after %.0f s (an earlier owner's requests may "
                     "still be stored meanwhile)", ", ".join(fenced), self.takeover_wait)

    def release(self, tps: list[TP]) -> None:
        """Partitions revoked (after their last commit): their owed work is the new owner's to redo."""
        self.offsets.forget(tps)
        for key in list(self.queued):
            self.queued[key] = [(tp, o) for tp, o in self.queued[key] if tp not in tps]
            if not self.queued[key]:
                del self.queued[key]
        for tp in tps:
            self.assignment.discard(tp)
            self.fence.pop(tp, None)
            self.held_paused.discard(tp)

    def commit(self, consumer: Consumer | None, tps: list[TP] | None = None) -> None:
        self.last_commit = time.monotonic()
        offsets = self.offsets.to_commit(tps)
        if not offsets or consumer is None:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
            self.offsets.committed(offsets)
        except KafkaException as exc:
            log.warning("offset commit failed (will retry): %s", exc.args[0].str() if exc.args else exc)

    def bound_held(self, consumer: Consumer, in_flight: Iterable[list[tuple[TP, int]]], in_memory: int) -> None:
        """Pause a partition holding ``held_max`` files uncommitted (queued, or in flight); resume it below that.

        With ``in_memory`` files at ``inflight_max`` every partition pauses (the backlog stays in Kafka); while
        such a backlog is worked off, the per-partition "resumed" line is left out."""
        memory_full = self.memory.update(in_memory)
        per: dict[TP, int] = {}
        # queued files, and those being retried right now (their offsets travel with the work meanwhile)
        for offsets in [*self.queued.values(), *in_flight]:
            for tp in {tp for tp, _ in offsets}:
                per[tp] = per.get(tp, 0) + 1
        held_full = {tp for tp, n in per.items() if n >= self.held_max} & self.assignment
        full = set(self.assignment) if memory_full else held_full
        try:
            if full:  # again each time: a resume after a state-store pause resumed every partition
                consumer.pause([TopicPartition(t, p) for t, p in full])
            if held_full - self.held_paused:
                log.warning("partition(s) %s hold %d queued file(s) each: consumption paused until they are done",
                            ", ".join(f"{t}/{p}" for t, p in sorted(held_full - self.held_paused)), self.held_max)
            if self.held_paused - full:
                consumer.resume([TopicPartition(t, p) for t, p in self.held_paused - full])
                if not self.memory.backlogged:
                    log.info("partition(s) %s resumed",
                             ", ".join(f"{t}/{p}" for t, p in sorted(self.held_paused - full)))
        except KafkaException as exc:
            log.warning("pausing/resuming partitions: %s", exc)
            return
        self.held_paused = full

    @staticmethod
    def update_lag(consumer: Consumer, metrics: Metrics) -> None:
        """Consumer lag and the messages not yet read, against each partition's end (``backlog.publish_unread``)."""
        try:
            publish_unread(metrics, consumer)
        except KafkaException:
            return
