"""``sfi list-status``: what the file writers, their jobs and the commands sent to them are doing.

Reads the writers' command/status and control topics (names or ``^regex`` patterns) without a
consumer group (partitions are assigned directly, nothing is committed), feeds every decoded
message to ``status.Tracker`` and shows its snapshot as tables, a live view or JSON.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

import typer
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition
from confluent_kafka import KafkaError as _LibKafkaError
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..errors import KafkaError, SfiError
from ..kafka import make_consumer
from ..messages import DecodeError, decode, iso_from_ms
from ..status import Timeouts, Tracker
from ._app import app
from ._common import BrokerOpt, ConfigOpt, JsonOpt, load, stdout, warn

DEFAULT_SINCE = "1h"
#: Stop waiting for end-of-partition events after this long without any event (a broker gone quiet).
_IDLE_TIMEOUT = 10.0
#: How often ``^regex`` topics are looked up again while listening (each job gets a new control topic).
_REDISCOVER_EVERY = 2.0
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_STATE_STYLE = {"writing": "cyan", "idle": "green", "done": "green", "success": "green", "error": "red",
                "failure": "red", "timeout": "yellow", "unknown": "yellow", "waiting": "blue", "pending": "blue"}


class TopicError(SfiError):
    """A --topic that is not there, or a pattern that is not a valid regular expression."""


def parse_since(text: str) -> float:
    """Seconds in '30s', '15m', '2h', '1d' (a bare number is seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text.lower())
    if not match:
        raise typer.BadParameter(f"'{text}' is not a duration like 30s, 15m, 2h or 1d", param_hint="--since")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _patterns(topics: list[str]) -> tuple[list[str], list[re.Pattern[str]]]:
    names, regexes = [], []
    for topic in topics:
        if topic.startswith("^"):
            try:
                regexes.append(re.compile(topic))
            except re.error as exc:
                raise TopicError(f"--topic '{topic}': not a valid regular expression: {exc}") from None
        else:
            names.append(topic)
    return names, regexes


@dataclass
class _Reader:
    """The topics being read and how far each partition has got (EOF events, not watermarks)."""

    consumer: Consumer
    bootstrap: str
    names: list[str]
    regexes: list[re.Pattern[str]]
    partitions: set[tuple[str, int]] = field(default_factory=set)
    at_end: set[tuple[str, int]] = field(default_factory=set)

    def _metadata(self) -> dict[str, list[int]]:
        try:
            md = self.consumer.list_topics(timeout=10)
        except KafkaException as exc:
            raise KafkaError(f"cannot reach Kafka at {self.bootstrap}: {exc.args[0].str() if exc.args else exc}") \
                from None
        return {name: sorted(info.partitions) for name, info in md.topics.items() if info.error is None}

    def discover(self, *, first: bool) -> list[tuple[str, int]]:
        """Partitions of the wanted topics not assigned yet; on the first call named topics must exist."""
        topics = self._metadata()
        if first:
            missing = [name for name in self.names if name not in topics]
            if missing:
                raise TopicError(f"topic '{missing[0]}' does not exist on {self.bootstrap}")
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


@dataclass
class _Counts:
    messages: int = 0
    undecodable: int = 0
    before_since: int = 0
    other: int = 0


def _read(reader: _Reader, tracker: Tracker, counts: _Counts, *, since_ms: int | None, duration: float | None,
          follow: bool, on_tick: Callable[[bool], None] | None) -> None:
    """Feed the tracker until caught up (plus ``duration`` seconds), or until Ctrl-C with ``follow``."""
    consumer = reader.consumer
    caught_up_at: float | None = None
    last_event = last_discovery = last_tick = time.monotonic()
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
        if on_tick is not None and now - last_tick >= 1.0:
            on_tick(caught_up_at is not None)
            last_tick = now
        if listening and reader.regexes and now - last_discovery >= _REDISCOVER_EVERY:
            # A topic created after we started holds only news: read it whole.
            reader.assign(reader.discover(first=False), None)
            last_discovery = now
        msg = consumer.poll(0.2)
        if msg is None:
            if caught_up_at is None and time.monotonic() - last_event > _IDLE_TIMEOUT:
                warn(f"list-status: no end-of-partition event from {reader.bootstrap} for {_IDLE_TIMEOUT:.0f} s; "
                     "showing what was read")
                caught_up_at = time.monotonic()
            continue
        last_event = time.monotonic()
        err = msg.error()
        where = (msg.topic(), msg.partition())
        if err is not None:
            if err.code() == _LibKafkaError._PARTITION_EOF:
                reader.at_end.add(where)
                if caught_up_at is None and reader.caught_up:
                    caught_up_at = time.monotonic()
                continue
            if err.fatal() or err.code() in (_LibKafkaError.UNKNOWN_TOPIC_OR_PART, _LibKafkaError._ALL_BROKERS_DOWN):
                raise KafkaError(f"reading {msg.topic() or 'topics'} on {reader.bootstrap}: {err.str()}")
            continue
        reader.at_end.discard(where)
        ts_type, ts = msg.timestamp()
        if since_ms is not None and ts_type and ts < since_ms:
            counts.before_since += 1  # some brokers (Tansu) answer offsets_for_times with the earliest offset
            continue
        counts.messages += 1
        try:
            message = decode(msg.value() or b"")
        except DecodeError as exc:
            counts.undecodable += 1
            warn(f"list-status: {msg.topic()}/{msg.partition()}@{msg.offset()}: undecodable: {exc}")
            continue
        if not tracker.feed(message, topic=msg.topic(), timestamp_ms=ts if ts_type else None):
            counts.other += 1


def _when(ms: int | None) -> str:
    text = iso_from_ms(ms)
    return text.replace("T", " ")[:19] if text else ""


def _state(state: str) -> Text:
    return Text(state, style=_STATE_STYLE.get(state, ""))


def _tables(tracker: Tracker, now_ms: int) -> list[Table]:
    workers = Table(title="workers", title_justify="left", expand=False)
    for name in ("service_id", "host", "state", "last seen (UTC)", "file being written"):
        workers.add_column(name, overflow="fold")
    for w in tracker.workers(now_ms):
        workers.add_row(escape(w.service_id), escape(w.host), _state(w.state), _when(w.last_seen),
                        escape(w.file_being_written or ""))
    jobs = Table(title="jobs", title_justify="left")
    for name in ("job_id", "run name", "file", "state", "start (UTC)", "stop (UTC)", "error"):
        jobs.add_column(name, overflow="fold")
    for j in tracker.jobs(now_ms):
        jobs.add_row(escape(j.job_id), escape(j.run_name or ""), escape(j.file_written or j.filename or ""),
                     _state(j.state), _when(j.start), _when(j.stop), escape(j.error or ""))
    commands = Table(title="commands", title_justify="left")
    for name in ("command_id", "job_id", "action", "outcome", "status", "message", "state"):
        commands.add_column(name, overflow="fold")
    for c in tracker.commands(now_ms):
        commands.add_row(escape(c.command_id), escape(c.job_id or ""), c.action, c.outcome or "",
                         "" if c.status_code is None else str(c.status_code), escape(c.message or ""),
                         _state(c.state))
    return [workers, jobs, commands]


def _view(tracker: Tracker, reader: _Reader, counts: _Counts, phase: str) -> Group:
    now_ms = int(time.time() * 1000)
    topics = len({t for t, _ in reader.partitions})
    footer = f"{counts.messages} messages from {topics} topic(s), {counts.undecodable} undecodable — {phase}"
    return Group(*_tables(tracker, now_ms), Text(footer, style="dim"))


@app.command("list-status")
def list_status(
    topic: Annotated[list[str], typer.Option("--topic", "-t", help="A topic to read, or a ^regex of topics "
                                             "(repeatable), e.g. the status topic and '^.*_control$'.",
                                             show_default=False)],
    broker: BrokerOpt = None,
    since: Annotated[str | None, typer.Option("--since", help="Start this long ago: 30s, 15m, 2h, 1d "
                                              f"(default {DEFAULT_SINCE}).", show_default=False)] = None,
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="Start at the oldest messages.")] = False,
    duration: Annotated[float | None, typer.Option("--duration", help="After catching up, listen this many "
                                                   "seconds more (default: stop when caught up).", min=0,
                                                   show_default=False)] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Live view, refreshed every second, "
                                         "until Ctrl-C (or --duration).")] = False,
    as_json: JsonOpt = False,
    job_grace: Annotated[float, typer.Option("--job-grace", help="Seconds of silence past a job's stop time "
                                             "(or last news) before it counts as timed out.", min=0)] = 60.0,
    command_timeout: Annotated[float, typer.Option("--command-timeout", help="Seconds without a response "
                                                   "before a command counts as timed out.", min=0)] = 30.0,
    worker_intervals: Annotated[float, typer.Option("--worker-intervals", help="A worker unseen for this many "
                                                    "of its status intervals counts as unknown.", min=0)] = 5.0,
    config: ConfigOpt = None,
) -> None:
    """Show the file writers (workers), their jobs and the commands sent to them.

    Reads the given topics from --since (default 1h ago) or --from-beginning up to their end, then
    prints tables, or with --json one object {"workers": [...], "jobs": [...], "commands": [...]}.
    Undecodable messages are reported on stderr, one line each, and skipped.
    """
    if since is not None and from_beginning:
        raise typer.BadParameter("--since and --from-beginning exclude each other")
    if follow and as_json:
        raise typer.BadParameter("--follow is a live view for people; for scripts use --json with --duration")
    since_s = None if from_beginning else parse_since(since or DEFAULT_SINCE)
    names, regexes = _patterns(topic)
    cfg = load(config, kafka={"bootstrap.servers": broker})
    tracker = Tracker(Timeouts(worker_intervals=worker_intervals, job_grace_ms=int(job_grace * 1000),
                               command_ms=int(command_timeout * 1000)))
    counts = _Counts()
    consumer = make_consumer(cfg, None, **{"enable.partition.eof": True})
    reader = _Reader(consumer, cfg.bootstrap or "", names, regexes)
    try:
        since_ms = None if since_s is None else int((time.time() - since_s) * 1000)
        parts = reader.discover(first=True)
        if not parts and not follow:
            raise TopicError(f"no topic on {reader.bootstrap} matches {', '.join(topic)}")
        if not parts:
            warn(f"list-status: no topic matches {', '.join(topic)} yet; waiting for one")
        reader.assign(parts, since_ms)
        if follow:
            with Live(_view(tracker, reader, counts, "catching up"), console=stdout, auto_refresh=False) as live:
                def tick(caught_up: bool) -> None:
                    live.update(_view(tracker, reader, counts, "listening (Ctrl-C stops)" if caught_up
                                      else "catching up"), refresh=True)
                try:
                    _read(reader, tracker, counts, since_ms=since_ms, duration=duration, follow=True,
                          on_tick=tick)
                except KeyboardInterrupt:
                    pass
                live.update(_view(tracker, reader, counts, "stopped"), refresh=True)
        else:
            try:
                _read(reader, tracker, counts, since_ms=since_ms, duration=duration, follow=False,
                      on_tick=None)
            except KeyboardInterrupt:
                pass
            if as_json:
                print(json.dumps(tracker.to_jsonable()), flush=True)
            else:
                stdout.print(_view(tracker, reader, counts, "caught up"))
    finally:
        consumer.close()
    if counts.undecodable:
        warn(f"list-status: {counts.undecodable} undecodable message(s) skipped")
