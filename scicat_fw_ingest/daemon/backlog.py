"""Backpressure and backlog visibility of the listener: how many files it holds in memory, and what is unread.

Why: without a bound the listener pulled a whole backlog into its worker pool's queue (918 files held with
4 workers) and its memory grew with the backlog, while the consumer lag (measured from the position it had
read to) stayed near zero, so an operator saw no backlog at all. Now at most ``[listen] inflight_max`` files
are held in memory (queued for a worker or being ingested); when that many are held, consumption of every
assigned partition pauses and resumes once a quarter of them are done (hysteresis: no pause/resume per
file). The backlog then stays in Kafka, where it costs no memory and shows as "not yet read"
(``sfi_consumer_lag``: the partition's high watermark minus the listener's read position).

Three gauges, one per place a file can be: ``sfi_messages_unread`` (not yet read, summed over partitions),
``sfi_files_queued_in_memory`` (read, waiting for a worker), ``sfi_files_ingesting`` (a worker has it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from .metrics import Metrics

log = logging.getLogger("sfi.listen")


class MemoryBound:
    """Says whether the files held in memory are at the bound, and says so in the log without flooding it.

    A backlog makes the listener pause and resume once per ``limit - resume_at`` files: the first pause of
    a backlog is a WARNING, the others are counted and summed up in one line when the backlog is gone
    (a resume not followed by another pause within ``quiet`` seconds).
    """

    def __init__(self, limit: int, quiet: float = 60.0) -> None:
        self.limit = max(1, limit)
        #: resume once this many or fewer are held
        self.resume_at = max(0, self.limit - max(1, self.limit // 4))
        self.full = False
        self.quiet = quiet
        self._pauses = 0
        self._resumed_at: float | None = None

    def update(self, held: int) -> bool:
        """``held`` files in memory now: True while consumption is to stay paused for memory."""
        now = time.monotonic()
        if not self.full and held >= self.limit:
            self.full = True
            self._pauses += 1
            if self._pauses == 1:
                log.warning("%d file(s) held in memory ([listen] inflight_max): consumption paused until %d are "
                            "left; the backlog waits in Kafka (sfi_consumer_lag)", held, self.resume_at)
        elif self.full and held <= self.resume_at:
            self.full = False
            self._resumed_at = now
        elif not self.full and self._resumed_at is not None and now - self._resumed_at >= self.quiet:
            log.info("backlog worked off: consumption paused %d time(s) at [listen] inflight_max = %d",
                     self._pauses, self.limit)
            self._pauses, self._resumed_at = 0, None
        return self.full

    @property
    def backlogged(self) -> bool:
        """True from the first pause of a backlog until it is worked off (its resume log lines are left out)."""
        return self._pauses > 0


def publish_in_memory(metrics: Metrics, works: Iterable[Any]) -> None:
    """Set the in-memory gauges from the listener's work items (each with a ``future``, None until submitted)."""
    queued = ingesting = 0
    for work in works:
        future = work.future
        if future is not None and future.running():
            ingesting += 1
        elif future is None or not future.done():
            queued += 1
    metrics.set("sfi_files_queued_in_memory", queued)
    metrics.set("sfi_files_ingesting", ingesting)
    metrics.set("sfi_inflight_files", queued + ingesting)


def publish_unread(metrics: Metrics, consumer: Any, timeout: float = 1.0) -> None:
    """``sfi_consumer_lag`` per assigned partition and ``sfi_messages_unread`` in all: high watermark minus position.

    Where the listener has read nothing yet from a partition (no position), the committed offset stands in,
    or the low watermark when the group never committed there: a paused or newly assigned partition's
    backlog shows in full. The end is the larger of the broker's answer and the last fetch's high watermark.
    ``KafkaException`` propagates (the caller keeps the last figures).
    """
    from confluent_kafka import TopicPartition

    assigned = consumer.assignment()
    positions = consumer.position(assigned)
    missing = [TopicPartition(tp.topic, tp.partition) for tp in positions if tp.offset < 0]
    committed = {(tp.topic, tp.partition): tp.offset
                 for tp in (consumer.committed(missing, timeout=timeout) if missing else [])}
    metrics.clear("sfi_consumer_lag")  # revoked partitions must not keep stale values
    total = 0
    for tp in positions:
        low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
        # Both are lower bounds of the partition's end: the broker's answer (Tansu's lags the log), and the
        # high watermark of the last fetch (stale while a partition is paused). The larger is the nearer.
        _cached_low, cached_high = consumer.get_watermark_offsets(tp, cached=True)
        high = max(high, cached_high)
        at = tp.offset if tp.offset >= 0 else committed.get((tp.topic, tp.partition), -1)
        if at < 0:
            at = low
        unread = max(0, high - at)
        total += unread
        metrics.set("sfi_consumer_lag", unread, topic=tp.topic, partition=str(tp.partition))
    metrics.set("sfi_messages_unread", total)
