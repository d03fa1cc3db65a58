"""Forwarding ISIS run starts: consume ``<INST>_runInfo``, enrich (``isis``), produce for the writer.

At-least-once: a run start's offset is committed only after the enriched copy's delivery report,
so a crash re-forwards at most the message in flight and never drops one. A partition without a
committed offset (a new group, a topic created after start, a restart before the first commit)
starts ``[isis] new_group_lookback`` seconds back instead of at the end, so the run starts
published meanwhile are not lost; older ones are never forwarded (a writer would start a job for
a run that is long over). A bad message (not a
pl72, undecodable, nexus_structure not a JSON object) is logged with topic/partition/offset and
committed without forwarding, so that it is not re-read forever.

The Kafka side lives here and the structure logic in ``isis``, so that the merge stays pure and
testable without a broker. What the EPICS forwarder forwards (replayed from its fc00/rf5k
configuration topic) is here too: only the forwarding loop asks for it, to discover the
sample-environment blocks of an instrument.
"""

from __future__ import annotations

import logging
import re
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from types import FrameType
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka import KafkaError as _LibKafkaError
from confluent_kafka import Message as KafkaMessage

from ..config import Config
from ..errors import ConfigError, KafkaError
from ..kafka import Position, make_consumer, make_producer, produce_sync, read_topic
from ..messages import DecodeError, decode
from ._template import load_template, parse_template
from .structure import EnrichError, build_structure, instrument_from_topic, serialise_enriched

_POLL_SECONDS = 0.5
#: The same client error is logged again only after this long.
_REPEAT_SECONDS = 60.0
#: How often the subscription looks for new (or newly created) topics, unless [kafka] sets it:
#: librdkafka's default (5 min) would leave a ``<INST>_runInfo`` created after start unread that long.
_METADATA_REFRESH_MS = 5000

#: Receives one dry-run record (input position, output topic, the decoded enriched pl72).
DryRunSink = Callable[[dict[str, Any]], None]


# --- the forwarder's configuration -------------------------------------------------------------

@dataclass(frozen=True)
class ForwardedStream:
    """One PV the forwarder forwards: its channel (PV name), flatbuffer schema and output topic."""

    channel: str
    schema: str
    topic: str


#: fc00/rf5k UpdateType values.
_ADD, _REMOVE, _REMOVEALL, _REPLACE = 0, 1, 2, 3


def forwarded_streams(updates: Iterable[Any]) -> list[ForwardedStream]:
    """The PVs being forwarded after replaying fc00/rf5k updates (``ConfigurationUpdate``) in order.

    ADD adds streams, REMOVE removes matching ones (fnmatch wildcards; empty topic/schema match any),
    REMOVEALL clears, REPLACE replaces the whole set.
    """
    current: dict[tuple[str, str, str], ForwardedStream] = {}
    for update in updates:
        change = int(update.config_change)
        streams = [ForwardedStream(s.channel or "", s.schema or "", s.topic or "") for s in update.streams or []]
        if change == _REMOVEALL:
            current.clear()
        elif change == _REPLACE:
            current = {(s.channel, s.schema, s.topic): s for s in streams}
        elif change == _ADD:
            current.update({(s.channel, s.schema, s.topic): s for s in streams})
        elif change == _REMOVE:
            for pattern in streams:
                current = {k: s for k, s in current.items() if not _matches(pattern, s)}
    return list(current.values())


def _matches(pattern: ForwardedStream, stream: ForwardedStream) -> bool:
    return (fnmatchcase(stream.channel, pattern.channel or "*")
            and fnmatchcase(stream.topic, pattern.topic or "*")
            and fnmatchcase(stream.schema, pattern.schema or "*"))


def blocks_on_topic(streams: Iterable[ForwardedStream], topic: str) -> list[str]:
    """The PV names forwarded to ``topic`` (e.g. ``ZOOM_sampleEnv``), sorted."""
    return sorted({s.channel for s in streams if s.topic == topic and s.channel})


# --- the forwarding loop -----------------------------------------------------------------------

log = logging.getLogger("sfi.forward")


def _log(text: str, level: int = logging.INFO) -> None:
    """One log line through the one formatter of long-running commands (``-v/-q``, ``--log-format json``)."""
    log.log(level, text)


@dataclass
class _Forwarder:
    """The effective settings of one run, and the per-instrument templates already loaded."""

    cfg: Config
    output_topic: str
    dry_run: bool
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    stop: bool = False

    def template(self, instrument: str) -> dict[str, Any]:
        if instrument not in self.templates:
            self.templates[instrument], source = load_template(instrument, self.cfg.isis.template_dir)
            _log(f"{instrument}: template {source}")
        return self.templates[instrument]

    def _per_instrument(self, table: dict[str, list[str]], instrument: str) -> list[str]:
        return list(table.get(instrument, table.get("*", [])))

    def sample_env(self, instrument: str) -> list[str]:
        blocks = self._per_instrument(self.cfg.isis.sample_env, instrument)
        topic = self.cfg.isis.forwarder_config_topic
        if topic:
            try:
                streams = forwarded_streams(_forwarder_updates(self.cfg, topic))
            except KafkaError as exc:
                _log(f"forwarder configuration not read ({exc}); using the configured blocks only", logging.WARNING)
                return blocks
            blocks += [pv for pv in blocks_on_topic(streams, f"{instrument}_sampleEnv") if pv not in blocks]
        return blocks

    def enrich(self, topic: str, value: bytes) -> tuple[Any, str, dict[str, Any], bytes]:
        """(run start, instrument, structure, pl72 bytes) or ``SfiError`` for a bad message."""
        message = decode(value, expect="pl72")
        instrument = instrument_from_topic(topic)
        run_start = message.value
        structure = build_structure(
            run_start, instrument, self.template(instrument), sample_env_blocks=self.sample_env(instrument),
            runlog_blocks=self._per_instrument(self.cfg.isis.runlog, instrument),
            monitors=self._per_instrument(self.cfg.isis.monitors, instrument))
        if "metadata" in message.json_errors:
            _log(f"job {run_start.job_id}: metadata is not valid JSON; forwarded verbatim, root fields from "
                 f"the run name", logging.WARNING)
        return run_start, instrument, structure, serialise_enriched(run_start, instrument, structure)


def _forwarder_updates(cfg: Config, topic: str) -> list[Any]:
    """Every fc00/rf5k update on the forwarder's configuration topic, oldest first."""
    updates = []
    for record in read_topic(cfg, topic, position=Position(), idle_timeout=5.0):
        try:
            message = decode(record.value)
        except DecodeError:
            continue
        if message.schema in ("fc00", "rf5k"):
            updates.append(message.value)
    return updates


def _subscription(cfg: Config) -> tuple[list[str], str | None]:
    """(topics, pattern): exactly one of ``[isis] instruments`` and ``[isis] topic_pattern``."""
    instruments = [i.strip() for i in cfg.isis.instruments if i.strip()]
    pattern = cfg.isis.topic_pattern or None
    if bool(instruments) == bool(pattern):
        raise ConfigError("forward-runinfo: give exactly one of --instruments ([isis] instruments) and "
                          "--topic-pattern ([isis] topic_pattern)")
    if pattern:
        anchored = pattern if pattern.startswith("^") else "^" + pattern
        try:
            re.compile(anchored)
        except re.error as exc:
            raise ConfigError(f"--topic-pattern '{pattern}': not a valid regular expression: {exc}") from None
        return [anchored], anchored
    return [f"{inst}_runInfo" for inst in instruments], None


def _check_templates(cfg: Config, instruments: list[str]) -> None:
    """Fail at start-up, not at the first run start, when a template is unusable."""
    folder = cfg.isis.template_dir
    if folder is not None:
        if not Path(folder).is_dir():
            raise ConfigError(f"[isis] template_dir {folder}: not a directory")
        for path in sorted(Path(folder).glob("*.json")):
            try:
                parse_template(path.read_text("utf-8"), str(path))
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"template {path}: cannot read: {exc}") from None
    for instrument in instruments:
        load_template(instrument, folder)


def _position(msg: KafkaMessage) -> tuple[str, int, int]:
    """Topic, partition and offset of a consumed message (the client types them optional: produced ones lack them)."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    if topic is None or partition is None or offset is None:
        raise KafkaError(f"a consumed message without a position (topic {topic}, partition {partition}, "
                         f"offset {offset})")
    return topic, partition, offset


def _commit(consumer: Consumer, msg: KafkaMessage) -> None:
    topic, partition, offset = _position(msg)
    try:
        consumer.commit(offsets=[TopicPartition(topic, partition, offset + 1)], asynchronous=False)
    except KafkaException as exc:
        err = exc.args[0] if exc.args else exc
        _log(f"commit of {msg.topic()}/{msg.partition()}@{msg.offset()} failed "
             f"({err.str() if hasattr(err, 'str') else err}); it may be forwarded again after a restart",
             logging.WARNING)


class _ErrorLog:
    """Client errors as log lines, each distinct one at most once a minute: librdkafka retries
    a lost broker every few milliseconds, and an operator needs one line, not thousands."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._last: dict[str, float] = {}

    def __call__(self, err: _LibKafkaError) -> None:  # librdkafka's error_cb
        self.log(f"Kafka at {self.bootstrap}: {err.str()}; retrying")

    def log(self, text: str) -> None:
        now = time.monotonic()
        if now - self._last.get(text, -_REPEAT_SECONDS) >= _REPEAT_SECONDS:
            self._last[text] = now
            _log(text, logging.ERROR)

    def message(self, msg: KafkaMessage) -> None:
        err = msg.error()
        if err is None:
            return
        if err.fatal():
            raise KafkaError(f"consuming on {self.bootstrap}: {err.str()}")
        if err.code() == _LibKafkaError.UNKNOWN_TOPIC_OR_PART:
            self.log(f"topic '{msg.topic()}' does not exist (yet) on {self.bootstrap}; waiting for it")
        else:
            self.log(f"{msg.topic()}: {err.str()}" if msg.topic() else err.str())


class _Lookback:
    """Start positions of partitions without committed offset: ``seconds`` back instead of the end.

    Some brokers (Tansu) answer ``offsets_for_times`` with the earliest offset whatever the time, so
    messages older than the look-back are also skipped here, by their timestamp, until the first
    younger one. Skipped messages are not committed: a restart before the first forward looks back
    again from its own start.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._since: dict[tuple[str, int], int] = {}
        self._skipped: dict[tuple[str, int], int] = {}

    def on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        _log("assigned " + ", ".join(f"{p.topic}[{p.partition}]" for p in parts))
        if self.seconds <= 0 or not parts:
            return
        committed = consumer.committed(parts, timeout=10)
        fresh = [tp for tp in committed if tp.offset < 0]
        if not fresh:
            return
        since = int((time.time() - self.seconds) * 1000)
        found = consumer.offsets_for_times([TopicPartition(tp.topic, tp.partition, since) for tp in fresh],
                                           timeout=10)
        starts = {}
        for tp in found:
            offset = tp.offset
            if offset < 0:  # nothing that young yet: start at the current end (not "end at assign time")
                offset = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)[1]
            starts[(tp.topic, tp.partition)] = offset
        for tp in parts:
            key = (tp.topic, tp.partition)
            if key in starts:
                tp.offset = starts[key] if starts[key] >= 0 else OFFSET_END
                self._since[key] = since
        consumer.assign(parts)
        _log(f"no committed offset for {', '.join(f'{t}[{p}]' for t, p in starts)}: starting at run starts "
             f"younger than {self.seconds:g} s")

    def too_old(self, msg: KafkaMessage) -> bool:
        topic, partition, _ = _position(msg)
        key = (topic, partition)
        since = self._since.get(key)
        if since is None:
            return False
        ts_type, ts = msg.timestamp()
        if ts_type and ts < since:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return True
        del self._since[key]
        if self._skipped.get(key):
            _log(f"{key[0]}[{key[1]}]: skipped {self._skipped[key]} run start(s) older than the look-back")
        return False


def _dry_run_record(msg: KafkaMessage, output_topic: str, payload: bytes) -> dict[str, Any]:
    """What a dry run shows instead of producing: where the run start came from and what would go out."""
    return {"input": f"{msg.topic()}/{msg.partition()}@{msg.offset()}", "output_topic": output_topic,
            **decode(payload).to_jsonable(full=True)}


def run_forwarder(cfg: Config, *, dry_run: bool = False, count: int | None = None,
                  on_dry_run: DryRunSink | None = None) -> int:
    """Consume, enrich and forward until ``count`` run starts are forwarded or SIGTERM/SIGINT; the count.

    With ``dry_run`` nothing is produced or committed; each enriched run start goes to
    ``on_dry_run`` instead (the caller decides how to show it). A client failure is raised as
    ``KafkaError`` naming the broker, so that callers deal with ``SfiError`` only.
    """
    try:
        return _run(cfg, dry_run=dry_run, count=count, on_dry_run=on_dry_run)
    except KafkaException as exc:
        err = exc.args[0] if exc.args else exc
        raise KafkaError(f"Kafka at {cfg.bootstrap}: {err.str() if hasattr(err, 'str') else err}") from None


def _run(cfg: Config, *, dry_run: bool, count: int | None, on_dry_run: DryRunSink | None) -> int:
    topics, pattern = _subscription(cfg)
    instruments = [] if pattern else [instrument_from_topic(t) for t in topics]
    _check_templates(cfg, instruments)
    fwd = _Forwarder(cfg, cfg.isis.output_topic, dry_run)
    bootstrap = cfg.bootstrap or ""
    extra: dict[str, Any] = {}
    if "topic.metadata.refresh.interval.ms" not in cfg.kafka:
        extra["topic.metadata.refresh.interval.ms"] = _METADATA_REFRESH_MS
    errors = _ErrorLog(bootstrap)
    quiet: dict[str, Any] = {"log_level": 0, "error_cb": errors}  # client errors come through ``errors``, rate-limited
    consumer = make_consumer(cfg, cfg.isis.group, offset_reset=cfg.isis.auto_offset_reset, **quiet, **extra)
    producer: Producer | None = None if dry_run else make_producer(cfg, **quiet)

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        fwd.stop = True
        _log(f"{signal.Signals(signum).name} received; stopping")

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    forwarded = 0
    lookback = _Lookback(cfg.isis.new_group_lookback if cfg.isis.auto_offset_reset == "latest" else 0.0)
    try:
        consumer.subscribe(
            topics,
            on_assign=lookback.on_assign,
            on_revoke=lambda _c, parts: _log("revoked " + ", ".join(f"{p.topic}[{p.partition}]" for p in parts)),
        )
        mode = "dry run, nothing produced or committed" if dry_run else f"group {cfg.isis.group}"
        start = (f"{lookback.seconds:g} s back" if lookback.seconds > 0 else cfg.isis.auto_offset_reset)
        _log(f"forwarding {', '.join(topics)} -> {fwd.output_topic} ({mode}; "
             f"a partition without committed offset starts {start})")
        while not fwd.stop and (count is None or forwarded < count):
            msg = consumer.poll(_POLL_SECONDS)
            if msg is None:
                continue
            if msg.error() is not None:
                errors.message(msg)
                continue
            topic, partition, offset = _position(msg)
            where = f"{topic}/{partition}@{offset}"
            if lookback.too_old(msg):
                continue
            if topic == fwd.output_topic:  # a pattern also matching our own output: never loop
                if not dry_run:
                    _commit(consumer, msg)
                continue
            try:
                run_start, instrument, _structure, payload = fwd.enrich(topic, msg.value() or b"")
            except (DecodeError, EnrichError) as exc:
                _log(f"skipped {where}: {exc}", logging.WARNING)
                if not dry_run:
                    _commit(consumer, msg)
                continue
            if dry_run:
                record = _dry_run_record(msg, fwd.output_topic, payload)
                if on_dry_run is not None:
                    on_dry_run(record)
            else:
                assert producer is not None
                produce_sync(producer, fwd.output_topic, payload, key=msg.key())
                _commit(consumer, msg)
            forwarded += 1
            verb = "would forward" if dry_run else "forwarded"
            _log(f"{verb} {where} -> {fwd.output_topic}: {instrument} job {run_start.job_id} "
                 f"file {run_start.filename}")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        consumer.close()
        if producer is not None:
            producer.flush(10)
    _log(f"stopped after {forwarded} run start(s)")
    return forwarded
