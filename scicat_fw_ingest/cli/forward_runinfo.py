"""``sfi forward-runinfo``: enrich ISIS run starts (``<INST>_runInfo``) and forward them to the writer.

At-least-once: a run start's offset is committed only after the enriched copy's delivery report,
so a crash re-forwards at most the message in flight and never drops one. A bad message (not a
pl72, undecodable, nexus_structure not a JSON object) is logged with topic/partition/offset and
committed without forwarding, so that it is not re-read forever.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from confluent_kafka import Consumer, KafkaException, Message as KafkaMessage, Producer, TopicPartition
from confluent_kafka import KafkaError as _LibKafkaError

from ..config import Config
from ..errors import ConfigError, KafkaError, SfiError
from ..isis import (
    EnrichError,
    blocks_on_topic,
    build_structure,
    forwarded_streams,
    instrument_from_topic,
    load_template,
    parse_template,
    serialise_enriched,
)
from ..kafka import Position, make_consumer, make_producer, produce_sync, read_topic
from ..messages import DecodeError, decode
from ._app import app
from ._common import BrokerOpt, ConfigOpt, load

_POLL_SECONDS = 0.5
#: The same client error is logged again only after this long.
_REPEAT_SECONDS = 60.0
#: How often a pattern subscription looks for new ``<INST>_runInfo`` topics (unless [kafka] sets it).
_PATTERN_REFRESH_MS = 5000


def _log(text: str) -> None:
    """One human-readable line on stderr, time-stamped: this command runs as a service."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    sys.stderr.write(f"{now} forward-runinfo: {text}\n")
    sys.stderr.flush()


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
                _log(f"forwarder configuration not read ({exc}); using the configured blocks only")
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
                 f"the run name")
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


def _commit(consumer: Consumer, msg: KafkaMessage) -> None:
    try:
        consumer.commit(offsets=[TopicPartition(msg.topic(), msg.partition(), msg.offset() + 1)],
                        asynchronous=False)
    except KafkaException as exc:
        err = exc.args[0] if exc.args else exc
        _log(f"commit of {msg.topic()}/{msg.partition()}@{msg.offset()} failed "
             f"({err.str() if hasattr(err, 'str') else err}); it may be forwarded again after a restart")


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
            _log(text)

    def message(self, msg: KafkaMessage) -> None:
        err = msg.error()
        if err.fatal():
            raise KafkaError(f"consuming on {self.bootstrap}: {err.str()}")
        if err.code() == _LibKafkaError.UNKNOWN_TOPIC_OR_PART:
            self.log(f"topic '{msg.topic()}' does not exist (yet) on {self.bootstrap}; waiting for it")
        else:
            self.log(f"{msg.topic()}: {err.str()}" if msg.topic() else err.str())


def _emit_dry_run(msg: KafkaMessage, output_topic: str, payload: bytes) -> None:
    record = {"input": f"{msg.topic()}/{msg.partition()}@{msg.offset()}", "output_topic": output_topic,
              **decode(payload).to_jsonable(full=True)}
    sys.stdout.write(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def run_forwarder(cfg: Config, *, dry_run: bool = False, count: int | None = None) -> int:
    """Consume, enrich and forward until ``count`` run starts are forwarded or SIGTERM/SIGINT; the count."""
    topics, pattern = _subscription(cfg)
    instruments = [] if pattern else [instrument_from_topic(t) for t in topics]
    _check_templates(cfg, instruments)
    fwd = _Forwarder(cfg, cfg.isis.output_topic, dry_run)
    bootstrap = cfg.bootstrap or ""
    extra: dict[str, Any] = {}
    if pattern and "topic.metadata.refresh.interval.ms" not in cfg.kafka:
        extra["topic.metadata.refresh.interval.ms"] = _PATTERN_REFRESH_MS
    errors = _ErrorLog(bootstrap)
    quiet = {"log_level": 0, "error_cb": errors}  # client errors come through ``errors``, rate-limited
    consumer = make_consumer(cfg, cfg.isis.group, offset_reset=cfg.isis.auto_offset_reset, **quiet, **extra)
    producer: Producer | None = None if dry_run else make_producer(cfg, **quiet)

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        fwd.stop = True
        _log(f"{signal.Signals(signum).name} received; stopping")

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    forwarded = 0
    try:
        consumer.subscribe(
            topics,
            on_assign=lambda _c, parts: _log("assigned " + ", ".join(f"{p.topic}[{p.partition}]" for p in parts)),
            on_revoke=lambda _c, parts: _log("revoked " + ", ".join(f"{p.topic}[{p.partition}]" for p in parts)),
        )
        mode = "dry run, nothing produced or committed" if dry_run else f"group {cfg.isis.group}"
        _log(f"forwarding {', '.join(topics)} -> {fwd.output_topic} ({mode}; "
             f"new group starts at {cfg.isis.auto_offset_reset})")
        while not fwd.stop and (count is None or forwarded < count):
            msg = consumer.poll(_POLL_SECONDS)
            if msg is None:
                continue
            if msg.error() is not None:
                errors.message(msg)
                continue
            where = f"{msg.topic()}/{msg.partition()}@{msg.offset()}"
            if msg.topic() == fwd.output_topic:  # a pattern also matching our own output: never loop
                if not dry_run:
                    _commit(consumer, msg)
                continue
            try:
                run_start, instrument, _structure, payload = fwd.enrich(msg.topic(), msg.value() or b"")
            except (DecodeError, EnrichError) as exc:
                _log(f"skipped {where}: {exc}")
                if not dry_run:
                    _commit(consumer, msg)
                continue
            if dry_run:
                _emit_dry_run(msg, fwd.output_topic, payload)
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


@app.command("forward-runinfo")
def forward_runinfo_command(
    broker: BrokerOpt = None,
    instruments: Annotated[str | None, typer.Option(
        "--instruments", "-i", help="Comma-separated instruments; reads <INST>_runInfo.", show_default=False)] = None,
    topic_pattern: Annotated[str | None, typer.Option(
        "--topic-pattern", help="Subscribe by regular expression, e.g. '^.*_runInfo$'.", show_default=False)] = None,
    output_topic: Annotated[str | None, typer.Option(
        "--output-topic", help="Where enriched run starts go (default ALL_runInfo).", show_default=False)] = None,
    group: Annotated[str | None, typer.Option(
        "--group", "-g", help="Consumer group (default sfi-forward-runinfo).", show_default=False)] = None,
    from_beginning: Annotated[bool, typer.Option(
        "--from-beginning", help="A group without committed offsets starts at the oldest message.")] = False,
    auto_offset_reset: Annotated[str | None, typer.Option(
        "--auto-offset-reset", help="earliest or latest for a group without committed offsets (default latest).",
        show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the enriched run starts as JSON; produce and commit nothing.")] = False,
    count: Annotated[int | None, typer.Option(
        "--count", "-n", min=1, help="Stop after N run starts forwarded.", show_default=False)] = None,
    once: Annotated[bool, typer.Option("--once", help="Stop after one run start forwarded (--count 1).")] = False,
    template_dir: Annotated[Path | None, typer.Option(
        "--template-dir", help="Folder with <INSTRUMENT>.json / default.json templates.", show_default=False)] = None,
    forwarder_config_topic: Annotated[str | None, typer.Option(
        "--forwarder-config-topic", help="The forwarder's fc00 config topic: its <INST>_sampleEnv PVs become "
        "selog blocks.", show_default=False)] = None,
    config: ConfigOpt = None,
) -> None:
    """Enrich ISIS run starts with the static ISIS NeXus structure and forward them to the file writer.

    Runs until SIGTERM/SIGINT (or --count/--once). Exit 0 when stopped, 1 on a Kafka failure,
    2 for a bad configuration.
    """
    if from_beginning and auto_offset_reset not in (None, "earliest"):
        raise typer.BadParameter("--from-beginning and --auto-offset-reset latest exclude each other")
    if once and count not in (None, 1):
        raise typer.BadParameter("--once and --count exclude each other")
    reset = "earliest" if from_beginning else auto_offset_reset
    instrument_list = None if instruments is None else [i.strip() for i in instruments.split(",") if i.strip()]
    cfg = load(config, kafka={"bootstrap.servers": broker}, isis={
        "instruments": instrument_list, "topic_pattern": topic_pattern, "output_topic": output_topic,
        "group": group, "auto_offset_reset": reset,
        "template_dir": str(template_dir) if template_dir is not None else None,
        "forwarder_config_topic": forwarder_config_topic,
    })
    if instrument_list is not None and topic_pattern is None:
        cfg.isis.topic_pattern = None  # a flag chooses the subscription over the file's other kind
    elif topic_pattern is not None and instrument_list is None:
        cfg.isis.instruments = []
    try:
        run_forwarder(cfg, dry_run=dry_run, count=1 if once else count)
    except SfiError:
        raise
    except KafkaException as exc:
        err = exc.args[0] if exc.args else exc
        raise KafkaError(f"Kafka at {cfg.bootstrap}: {err.str() if hasattr(err, 'str') else err}") from None
