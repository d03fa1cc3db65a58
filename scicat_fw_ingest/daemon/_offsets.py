"""Which offsets of each partition may be committed: the at-least-once bookkeeping of ``sfi listen``.

Why its own module: this rule is what "offsets are committed only after the outcome is durably
recorded" comes down to, so it is kept small and tested on its own. A message's offset is added when
it is read and marked done when its outcome is recorded; the commit point of a partition is its
lowest offset still in flight (or one past the highest read), so commits move in offset order even
though files finish in any order.
"""

from __future__ import annotations

from collections import defaultdict

from confluent_kafka import TopicPartition


class OffsetTracker:
    """Per-partition offsets that are done; the commit point is the lowest offset still in flight."""

    def __init__(self) -> None:
        self._inflight: dict[tuple[str, int], set[int]] = defaultdict(set)
        self._next: dict[tuple[str, int], int] = {}
        self._committed: dict[tuple[str, int], int] = {}

    def add(self, tp: tuple[str, int], offset: int) -> None:
        self._inflight[tp].add(offset)
        self._next[tp] = max(self._next.get(tp, 0), offset + 1)

    def done(self, tp: tuple[str, int], offset: int) -> None:
        self._inflight[tp].discard(offset)

    def inflight(self, tps: list[tuple[str, int]] | None = None) -> int:
        return sum(len(v) for k, v in self._inflight.items() if tps is None or k in tps)

    def to_commit(self, tps: list[tuple[str, int]] | None = None) -> list[TopicPartition]:
        out = []
        for tp, nxt in self._next.items():
            if tps is not None and tp not in tps:
                continue
            pending = self._inflight.get(tp)
            point = min(pending) if pending else nxt
            if point > self._committed.get(tp, -1):
                out.append(TopicPartition(tp[0], tp[1], point))
        return out

    def committed(self, offsets: list[TopicPartition]) -> None:
        for tp in offsets:
            self._committed[(tp.topic, tp.partition)] = tp.offset

    def forget(self, tps: list[tuple[str, int]]) -> None:
        for tp in tps:
            self._inflight.pop(tp, None)
            self._next.pop(tp, None)
            self._committed.pop(tp, None)
