"""Kafka adapter: clients built from the config, and reading a topic from a chosen position.

Every client gets the ``[kafka]`` table verbatim (security, SASL, SSL...) plus what its role
needs. Errors become ``KafkaError`` with the broker named, never a librdkafka traceback.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka import KafkaError as _LibKafkaError
from confluent_kafka.admin import AdminClient, NewTopic

from .config import Config
from .errors import KafkaError

#: Consumer-group timings that make joins take ~3 s instead of ~20 s; overridable in [kafka].
GROUP_DEFAULTS = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}


def base_config(cfg: Config) -> dict[str, Any]:
    if not cfg.bootstrap:
        raise KafkaError("no Kafka broker given: use -b/--broker, SFI_KAFKA_BOOTSTRAP or [kafka] bootstrap.servers")
    return dict(cfg.kafka)


def _logger_quiet() -> dict[str, Any]:
    # librdkafka's own stderr log repeats a connection failure every ~50 ms while a broker is down.
    # sfi reports Kafka problems itself (one line per command; rate-limited warnings in daemons),
    # from the error events librdkafka delivers through poll(), so its log is switched off.
    return {"log_level": 0}


def make_consumer(cfg: Config, group: str | None = None, *, offset_reset: str = "earliest",
                  **extra: Any) -> Consumer:
    conf = {**GROUP_DEFAULTS, **base_config(cfg), **_logger_quiet()}
    conf.setdefault("group.id", group or f"sfi-reader-{uuid.uuid4()}")
    if group:
        conf["group.id"] = group
    conf.setdefault("auto.offset.reset", offset_reset)
    conf.setdefault("enable.auto.commit", False)
    conf.update(extra)
    try:
        return Consumer(conf)
    except KafkaException as exc:
        raise KafkaError(f"Kafka consumer config rejected: {exc.args[0].str() if exc.args else exc}") from None


def make_producer(cfg: Config, *, idempotent: bool = True, **extra: Any) -> Producer:
    conf = {**base_config(cfg), **_logger_quiet(), "enable.idempotence": idempotent, "linger.ms": 5}
    conf.update(extra)
    try:
        return Producer(conf)
    except KafkaException as exc:
        raise KafkaError(f"Kafka producer config rejected: {exc.args[0].str() if exc.args else exc}") from None


def make_admin(cfg: Config) -> AdminClient:
    return AdminClient({**base_config(cfg), **_logger_quiet()})


def topic_partitions(client: Consumer | AdminClient, topic: str, bootstrap: str, timeout: float = 10.0) -> list[int]:
    """The partitions of ``topic``; ``KafkaError`` when the broker is unreachable or the topic absent."""
    try:
        md = client.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise KafkaError(f"cannot reach Kafka at {bootstrap}: {_reason(exc)}") from None
    info = md.topics.get(topic)
    if info is None or (info.error is not None and info.error.code() == _LibKafkaError.UNKNOWN_TOPIC_OR_PART):
        raise KafkaError(f"topic '{topic}' does not exist on {bootstrap}")
    if info.error is not None:
        raise KafkaError(f"topic '{topic}' on {bootstrap}: {info.error.str()}")
    return sorted(info.partitions)


def ensure_topics(cfg: Config, topics: list[str], partitions: int = 1, timeout: float = 10.0) -> None:
    """Create the topics that do not exist yet (tests, demo and produce-test)."""
    admin = make_admin(cfg)
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise KafkaError(f"cannot reach Kafka at {cfg.bootstrap}: {_reason(exc)}") from None
    wanted = [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics if t not in existing]
    if not wanted:
        return
    for topic, future in admin.create_topics(wanted).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == _LibKafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise KafkaError(f"cannot create topic '{topic}' on {cfg.bootstrap}: {_reason(exc)}") from None


def _headers(raw: dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]] | None,
             ) -> list[tuple[str, bytes | None]]:
    """A consumed message's headers as (name, bytes) pairs (confluent-kafka types them as it accepts them when
    producing: a dict or pairs, values text or bytes; a consumed message has pairs of bytes)."""
    pairs = list(raw.items()) if isinstance(raw, dict) else raw or []
    return [(k, v.encode() if isinstance(v, str) else bytes(v) if v is not None else None) for k, v in pairs]


def _reason(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else None
    return str(err.str()) if err is not None and hasattr(err, "str") else str(exc)


@dataclass(frozen=True)
class Position:
    """Where to start reading each partition: ``offset`` (absolute), the ``last`` N messages, messages
    from ``from_time_ms`` on, or the beginning/end."""

    offset: int | None = None
    last: int | None = None
    from_end: bool = False
    from_time_ms: int | None = None


#: Messages asked of librdkafka per call when reading a topic.
READ_BATCH = 1000


class Record(NamedTuple):
    """One message read from a topic, with where it came from.

    A NamedTuple, not a frozen dataclass: made once per message read, and a frozen dataclass's
    ``__init__`` (``object.__setattr__`` per field) cost several times a tuple's.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int | None  # ms since epoch, as the broker reports it
    value: bytes
    key: bytes | None
    headers: list[tuple[str, bytes | None]]


def _wanted_partitions(consumer: Consumer, topics: list[str], partition: int | None,
                       bootstrap: str) -> list[TopicPartition]:
    """Named topics (must exist) and ``^regex`` patterns (must match one) -> their partitions."""
    try:
        md = consumer.list_topics(timeout=10)
    except KafkaException as exc:
        raise KafkaError(f"cannot reach Kafka at {bootstrap}: {_reason(exc)}") from None
    present = {name: sorted(info.partitions) for name, info in md.topics.items() if info.error is None}
    chosen: list[str] = []
    for topic in topics:
        if topic.startswith("^"):
            try:
                pattern = re.compile(topic)
            except re.error as exc:
                raise KafkaError(f"topic pattern '{topic}': not a valid regular expression: {exc}") from None
            matched = sorted(n for n in present if not n.startswith("__") and pattern.search(n))
            if not matched:
                raise KafkaError(f"no topic on {bootstrap} matches '{topic}'")
            chosen += [n for n in matched if n not in chosen]
        elif topic not in present:
            raise KafkaError(f"topic '{topic}' does not exist on {bootstrap}")
        elif topic not in chosen:
            chosen.append(topic)
    out = []
    for name in chosen:
        parts = present[name]
        if partition is not None:
            if partition not in parts:
                raise KafkaError(f"topic '{name}' has no partition {partition} (it has {len(parts)})")
            parts = [partition]
        out += [TopicPartition(name, p) for p in parts]
    return out


def _last_start(consumer: Consumer, tp: TopicPartition, n: int, bootstrap: str) -> int:
    """The offset of the N-th last message actually in the partition.

    ``high - N`` is not it: offsets can have gaps (compaction, transactions) and some brokers (Tansu)
    report batch-based end offsets. So read the tail, and further back until N messages are found.
    """
    low, high = consumer.get_watermark_offsets(tp, timeout=10)
    if n <= 0 or high <= low:
        return high
    window = n
    while True:
        start = max(low, high - window)
        consumer.assign([TopicPartition(tp.topic, tp.partition, start)])
        seen: deque[int] = deque(maxlen=n)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == _LibKafkaError._PARTITION_EOF:
                    break
                if err.fatal() or err.code() in (_LibKafkaError.UNKNOWN_TOPIC_OR_PART,
                                                 _LibKafkaError._ALL_BROKERS_DOWN):
                    raise KafkaError(f"reading {tp.topic} on {bootstrap}: {err.str()}")
                continue
            offset = msg.offset()
            if offset is not None:  # always set on a message (an event has none)
                seen.append(offset)
            deadline = time.monotonic() + 10.0
        consumer.unassign()
        if len(seen) >= n or start <= low:
            return seen[0] if seen else high
        window *= 4


def read_topic(cfg: Config, topic: str | list[str], *, partition: int | None = None,
               position: Position = Position(), count: int | None = None, follow: bool = False,
               poll: float = 0.2, idle_timeout: float = 10.0) -> Iterator[Record]:
    """Yield messages of ``topic`` (a name, or a list of names and ``^regex`` patterns; one partition
    or all) from ``position``.

    Without ``follow`` it stops when every partition has reached its end; with ``follow`` it waits
    for more until the caller stops iterating. No group membership, nothing committed: reading is
    side-effect free. End of partition is detected by librdkafka's EOF event, not the watermark
    (some brokers under-report the high watermark after batched produces). With ``from_time_ms``,
    messages older than it are skipped here too: some brokers (Tansu) answer ``offsets_for_times``
    with the earliest offset.
    """
    topics = [topic] if isinstance(topic, str) else list(topic)
    eof: dict[str, Any] = {"enable.partition.eof": True}
    consumer = make_consumer(cfg, None, **eof)
    try:
        bootstrap = cfg.bootstrap or ""
        wanted = _wanted_partitions(consumer, topics, partition, bootstrap)
        assignment = _start_offsets(consumer, wanted, position, bootstrap)
        consumer.assign(assignment)
        parts = {(tp.topic, tp.partition) for tp in assignment}
        at_end: set[tuple[str | None, int | None]] = set()
        seen = 0
        last_activity = time.monotonic()
        from_time = position.from_time_ms
        while count is None or seen < count:
            # Batches, not one poll() per message: the per-call overhead was a fifth of `sfi decode --topic`.
            batch = consumer.consume(READ_BATCH if count is None else min(READ_BATCH, count - seen), poll)
            if not batch:
                if not follow and time.monotonic() - last_activity > idle_timeout:
                    return  # neither data nor EOF for a long time: do not hang a script
                continue
            last_activity = time.monotonic()
            for msg in batch:
                err = msg.error()
                if err is not None:
                    where = (msg.topic(), msg.partition())
                    if err.code() == _LibKafkaError._PARTITION_EOF:
                        at_end.add(where)
                        if not follow and at_end >= parts:
                            return
                        continue
                    if err.fatal() or err.code() in (_LibKafkaError.UNKNOWN_TOPIC_OR_PART,
                                                     _LibKafkaError._ALL_BROKERS_DOWN):
                        raise KafkaError(f"reading {msg.topic() or topics[0]} on {bootstrap}: {err.str()}")
                    continue
                name, part, offset = msg.topic(), msg.partition(), msg.offset()
                if name is None or part is None or offset is None:  # librdkafka sets all three on a message
                    continue
                if at_end:
                    at_end.discard((name, part))
                ts_type, ts = msg.timestamp()
                if from_time is not None and ts_type and ts < from_time:
                    continue
                seen += 1
                yield Record(name, part, offset, ts if ts_type else None, msg.value() or b"", msg.key(),
                             _headers(msg.headers()))
    finally:
        consumer.close()


def _start_offsets(consumer: Consumer, wanted: list[TopicPartition], position: Position,
                   bootstrap: str) -> list[TopicPartition]:
    try:
        if position.from_time_ms is not None:
            query = [TopicPartition(tp.topic, tp.partition, position.from_time_ms) for tp in wanted]
            found = consumer.offsets_for_times(query, timeout=10)
            # -1: no message at or after the time, so start at the end
            return [TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
                    for tp in found]
        out = []
        for tp in wanted:
            if position.offset is not None:
                offset = position.offset
            elif position.last is not None:
                offset = _last_start(consumer, tp, position.last, bootstrap)
            else:
                offset = OFFSET_END if position.from_end else OFFSET_BEGINNING
            out.append(TopicPartition(tp.topic, tp.partition, offset))
        return out
    except KafkaException as exc:
        raise KafkaError(f"cannot read offsets of {wanted[0].topic if wanted else 'topics'} on {bootstrap}: "
                         f"{_reason(exc)}") from None


def produce_sync(producer: Producer, topic: str, value: bytes, key: bytes | None = None, timeout: float = 10.0) -> None:
    """Produce one message and wait for its delivery report; ``KafkaError`` if it is not delivered."""
    errors: list[Any] = []
    producer.produce(topic, value, key=key, on_delivery=lambda err, _msg: errors.append(err) if err else None)
    remaining = producer.flush(timeout)
    if errors:
        raise KafkaError(f"delivery to '{topic}' failed: {errors[0].str()}")
    if remaining:
        raise KafkaError(f"delivery to '{topic}' not confirmed within {timeout:.0f} s")
