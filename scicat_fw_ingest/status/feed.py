"""Feeding ``status.Tracker`` from Kafka, for ``sfi list-status``.

Why no consumer group: list-status only looks, so partitions are assigned directly and nothing is
committed. "Caught up" comes from end-of-partition events, not watermarks: every assigned
partition has reported its end. ``status.tracker`` stays Kafka-free; this module is the bridge, and it
prints nothing (warnings go to the caller's ``on_warning``, progress to ``on_progress``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition, libversion
from confluent_kafka import KafkaError as _LibKafkaError

from ..config import Config
from ..errors import KafkaError, SfiError
from ..kafka import make_consumer
from ..messages import DecodeError, decode
from .tracker import Tracker

#: Stop waiting for end-of-partition events after this long without any event (a broker gone quiet).
_IDLE_TIMEOUT = 10.0
#: How often ``^regex`` topics are looked up again while listening (each job gets a new control topic).
_REDISCOVER_EVERY = 2.0
#: ``on_progress`` at most this often: the --follow view promises a refresh every second.
_PROGRESS_EVERY = 1.0
#: librdkafka's read-ahead for a catch-up. Its default queue (64 MiB) held most of a 5,000-job backlog's
#: run starts at once, a third of list-status's peak memory; 2 MiB keeps the loop fed when the next fetch
#: follows at once (``fetch.queue.backoff.ms``: its default second of back-off made a small queue 3x slower).
#: (The back-off setting exists from librdkafka 2.4 on; older ones keep their default queue.)
_PREFETCH: dict[str, Any] = (
    {"queued.max.messages.kbytes": 2048, "fetch.queue.backoff.ms": 10} if libversion()[1] >= 0x02040000 else {})
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class TopicError(SfiError):
    """A --topic that is not there, or a pattern that is not a valid regular expression."""


def parse_since(text: str) -> float:
    """Seconds in '30s', '15m', '2h', '1d' (a bare number is seconds); ``ValueError`` says what is wrong."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text.lower())
    if not match:
        raise ValueError(f"'{text}' is not a duration like 30s, 15m, 2h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class TopicSelection:
    """The topics asked for: exact names must exist at the start, ``^regex`` patterns may match later.

    Parsed before anything touches Kafka so that a bad pattern fails without a broker.
    """

    given: list[str]
    names: list[str]
    regexes: list[re.Pattern[str]]

    @classmethod
    def parse(cls, topics: list[str]) -> TopicSelection:
        names, regexes = [], []
        for topic in topics:
            if topic.startswith("^"):
                try:
                    regexes.append(re.compile(topic))
                except re.error as exc:
                    raise TopicError(f"--topic '{topic}': not a valid regular expression: {exc}") from None
            else:
                names.append(topic)
        return cls(list(topics), names, regexes)


@dataclass
class Counts:
    """What was read, for the footer and the closing warning."""

    messages: int = 0
    undecodable: int = 0
    before_since: int = 0
    other: int = 0


@dataclass
class _Reader:
    """The topics being read and how far each partition has got (EOF events, not watermarks)."""

    consumer: Consumer
    bootstrap: str
    names: list[str]
    regexes: list[re.Pattern[str]]
    partitions: set[tuple[str, int]] = field(default_factory=set)
    at_end: set[tuple[str, int]] = field(default_factory=set)
    #: Named topics not on the broker at the last lookup (waited for while listening).
    missing: list[str] = field(default_factory=list)

    def _metadata(self) -> dict[str, list[int]]:
        try:
            md = self.consumer.list_topics(timeout=10)
        except KafkaException as exc:
            raise KafkaError(f"cannot reach Kafka at {self.bootstrap}: {exc.args[0].str() if exc.args else exc}") \
                from None
        return {name: sorted(info.partitions) for name, info in md.topics.items() if info.error is None}

    def discover(self, *, strict: bool) -> list[tuple[str, int]]:
        """Partitions of the wanted topics not assigned yet; with ``strict`` named topics must exist."""
        topics = self._metadata()
        self.missing = [name for name in self.names if name not in topics]
        if strict and self.missing:
            raise TopicError(f"topic '{self.missing[0]}' does not exist on {self.bootstrap}")
        wanted = {name for name in self.names if name in topics}
        wanted |= {name for name in topics if not name.startswith("__") and any(r.search(name) for r in self.regexes)}
        return [(name, p) for name in sorted(wanted) for p in topics[name] if (name, p) not in self.partitions]

    def assign(self, parts: list[tuple[str, int]], since_ms: int | None) -> None:
        if not parts:
            return
        tps = [TopicPartition(t, p, since_ms if since_ms is not None else OFFSET_BEGINNING) for t, p in parts]
        if since_ms is not None:
            try:
                found = self.consumer.offsets_for_times(tps, timeout=10)
            except KafkaException as exc:
                raise KafkaError(f"cannot look up offsets by time on {self.bootstrap}: "
                                 f"{exc.args[0].str() if exc.args else exc}") from None
            # -1: no message at or after the time, so start at the end.
            tps = [TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
                   for tp in found]
        self.consumer.incremental_assign(tps)
        self.partitions.update(parts)

    @property
    def caught_up(self) -> bool:
        return self.at_end >= self.partitions


class StatusFeed:
    """One group-less consumer feeding ``tracker``; a context manager that closes the consumer.

    ``on_warning`` gets one line per problem worth telling an operator (undecodable message, a
    broker gone quiet) and decides where it goes: this module prints nothing.
    """

    def __init__(self, cfg: Config, selection: TopicSelection, tracker: Tracker, *, since_s: float | None,
                 on_warning: Callable[[str], None]) -> None:
        self.tracker = tracker
        self.counts = Counts()
        self._selection = selection
        self._warn = on_warning
        self._since_s = since_s
        self._since_ms: int | None = None
        extra: dict[str, Any] = {"enable.partition.eof": True, **_PREFETCH}  # dotted librdkafka keys
        consumer = make_consumer(cfg, None, **extra)
        self._reader = _Reader(consumer, cfg.bootstrap or "", selection.names, selection.regexes)

    @property
    def topic_count(self) -> int:
        """Topics assigned so far (patterns can add more while listening)."""
        return len({t for t, _ in self._reader.partitions})

    def start(self, *, wait_for_topics: bool) -> None:
        """Assign the wanted partitions from ``since_s`` ago (or the beginning).

        A missing named topic, or nothing matching yet, fails unless ``wait_for_topics``: a topic
        created later (named or matching a pattern) is then picked up and read whole.
        """
        reader = self._reader
        self._since_ms = None if self._since_s is None else int((time.time() - self._since_s) * 1000)
        parts = reader.discover(strict=not wait_for_topics)
        given = ", ".join(self._selection.given)
        if not parts and not wait_for_topics:
            raise TopicError(f"no topic on {reader.bootstrap} matches {given}")
        for name in reader.missing:
            self._warn(f"topic '{name}' does not exist yet; waiting for it")
        if not parts and not reader.missing:
            self._warn(f"no topic matches {given} yet; waiting for one")
        reader.assign(parts, self._since_ms)

    def read(self, *, duration: float | None, follow: bool,
             on_progress: Callable[[bool], None] | None = None) -> None:
        """Feed the tracker until caught up (plus ``duration`` seconds), or until Ctrl-C with ``follow``.

        ``on_progress(caught_up)`` is called about once a second so a live view can redraw while
        the loop keeps reading; Ctrl-C surfaces as ``KeyboardInterrupt`` for the caller to handle.
        """
        reader, counts, tracker, since_ms = self._reader, self.counts, self.tracker, self._since_ms
        consumer = reader.consumer
        caught_up_at: float | None = None
        last_event = last_discovery = last_progress = time.monotonic()
        listening = follow or duration is not None
        if not reader.partitions:
            caught_up_at = time.monotonic()  # nothing to catch up with (a pattern waiting for its first topic)
        while True:
            now = time.monotonic()
            if caught_up_at is not None:
                if duration is not None and now - caught_up_at >= duration:
                    return
                if not follow and duration is None:
                    return
            if on_progress is not None and now - last_progress >= _PROGRESS_EVERY:
                on_progress(caught_up_at is not None)
                last_progress = now
            if listening and (reader.regexes or reader.missing) and now - last_discovery >= _REDISCOVER_EVERY:
                # A topic created after we started holds only news: read it whole.
                reader.assign(reader.discover(strict=False), None)
                last_discovery = now
            msg = consumer.poll(0.2)
            if msg is None:
                if caught_up_at is None and time.monotonic() - last_event > _IDLE_TIMEOUT:
                    self._warn(f"no end-of-partition event from {reader.bootstrap} for {_IDLE_TIMEOUT:.0f} s; "
                               "showing what was read")
                    caught_up_at = time.monotonic()
                continue
            last_event = time.monotonic()
            err = msg.error()
            topic = msg.topic() or ""  # a message a consumer returns always names its partition
            where = (topic, msg.partition() or 0)
            if err is not None:
                if err.code() == _LibKafkaError._PARTITION_EOF:
                    reader.at_end.add(where)
                    if caught_up_at is None and reader.caught_up:
                        caught_up_at = time.monotonic()
                    continue
                if err.fatal() or err.code() in (_LibKafkaError.UNKNOWN_TOPIC_OR_PART,
                                                 _LibKafkaError._ALL_BROKERS_DOWN):
                    raise KafkaError(f"reading {msg.topic() or 'topics'} on {reader.bootstrap}: {err.str()}")
                continue
            reader.at_end.discard(where)
            ts_type, ts = msg.timestamp()
            if since_ms is not None and ts_type and ts < since_ms:
                counts.before_since += 1  # some brokers (Tansu) answer offsets_for_times with the earliest offset
                continue
            counts.messages += 1
            try:
                message = decode(msg.value() or b"", json_fields=Tracker.JSON_FIELDS)
            except DecodeError as exc:
                counts.undecodable += 1
                self._warn(f"{msg.topic()}/{msg.partition()}@{msg.offset()}: undecodable: {exc}")
                continue
            if not tracker.feed(message, topic=topic, timestamp_ms=ts if ts_type else None):
                counts.other += 1

    def close(self) -> None:
        self._reader.consumer.close()

    def __enter__(self) -> StatusFeed:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
