"""The ingestion daemon: file-writer channels in, each finished file in SciCat exactly once.

Why it is shaped like this:
- One thread owns the Kafka consumer and never blocks on SciCat or the disk, so it keeps polling
  (no max.poll.interval.ms eviction) whatever SciCat does. Ingestion runs on a worker pool, so a
  slow checksum of one big file does not hold back the others.
- An offset is committed only after what its message asked for is durably recorded in the state
  store (run start cached; file ingested, skipped, failed or queued for retry), and commits move in
  offset order per partition. At-least-once delivery plus idempotent ingestion = exactly once.
- Retryable failures (SciCat down, file not visible yet) go to the durable retry queue with
  exponential backoff; the queue survives restarts. Bad messages are recorded and committed.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message as KafkaMessage, TopicPartition
from confluent_kafka import KafkaError as _LibKafkaError

from .config import Config
from .ingest import IngestResult, Ingestor, RunInfo, open_sink
from ._offsets import OffsetTracker
from .kafka import make_admin, make_consumer
from .messages import DecodeError, Message, decode
from .metrics import LISTEN_METRICS, Metrics
from .state import DONE, FAILED, QUEUED, StateStore

log = logging.getLogger("sfi.listen")

#: Consumer settings the listener prefers unless [kafka] says otherwise. A short fetch wait bounds
#: the time from wrdn to dataset on brokers that do not answer a long poll as soon as data arrives
#: (Tansu waits out fetch.wait.max.ms: 500 ms by default); ~10 idle fetches/s cost nothing.
CONSUMER_DEFAULTS: dict[str, int] = {"fetch.wait.max.ms": 100}
#: With a ``^regex`` subscription, new matching topics (a control topic per job) are found at the next
#: metadata refresh: every 10 s instead of librdkafka's 5 minutes.
PATTERN_DEFAULTS: dict[str, int] = {"topic.metadata.refresh.interval.ms": 10_000}

#: The control-channel schemas the listener understands; anything else on its topics is recorded as bad.
HANDLED = ("pl72", "wrdn", "answ", "x5f2", "6s4t")


@dataclass
class ListenOptions:
    topics: list[str]
    group: str = "sfi-listen"
    auto_offset_reset: str = "earliest"
    on_writer_error: str = "skip"
    workers: int = 4
    #: Seconds a finished file may take to appear at its mapped path before it goes to the retry queue.
    wait_missing: float = 30.0
    retry_base: float = 2.0
    retry_max: float = 300.0
    commit_interval: float = 1.0
    drain_timeout: float = 30.0
    #: Cached run starts older than this are pruned (at start, then hourly).
    run_start_max_age: float = 30 * 86400.0
    #: Exit once nothing arrived for this long, nothing is in flight and the retry queue is empty.
    exit_when_idle: float | None = None


@dataclass
class _Work:
    """One file being ingested, and the offsets (possibly several duplicate wrdns) waiting on it."""

    key: str
    offsets: list[tuple[tuple[str, int], int]] = field(default_factory=list)
    future: Future | None = None


class Listener:
    def __init__(self, cfg: Config, options: ListenOptions, *, ingestor: Any, state: StateStore,
                 metrics: Metrics | None = None) -> None:
        self.cfg, self.options, self.ingestor, self.state = cfg, options, ingestor, state
        self.metrics = metrics or Metrics(LISTEN_METRICS)
        self._stop = threading.Event()
        self._offsets = OffsetTracker()
        self._work: dict[str, _Work] = {}
        self._pool = ThreadPoolExecutor(max_workers=max(1, options.workers), thread_name_prefix="sfi-ingest")
        self._consumer: Consumer | None = None
        self._last_message = time.monotonic()
        self._last_commit = 0.0
        self._last_retry_scan = 0.0
        self._last_lag = 0.0
        self._last_prune = -1e18
        self._assigned = False
        self._kafka_errors: dict[int, float] = {}
        self._admin: Any = None
        self._admin_lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    @property
    def consumer(self) -> Consumer | None:
        return self._consumer

    def run(self) -> None:
        opts = self.options
        wanted = {**CONSUMER_DEFAULTS, **(PATTERN_DEFAULTS if any(t.startswith("^") for t in opts.topics) else {})}
        defaults = {k: v for k, v in wanted.items() if k not in self.cfg.kafka}
        self._consumer = make_consumer(self.cfg, opts.group, offset_reset=opts.auto_offset_reset, **defaults)
        self._consumer.subscribe(opts.topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_revoke)
        log.info("listening on %s as group %s (%d workers)", ", ".join(opts.topics), opts.group, opts.workers)
        try:
            while not self._stop.is_set():
                msg = self._consumer.poll(0.2)
                if msg is not None:
                    self._handle(msg)
                self._reap()
                now = time.monotonic()
                if now - self._last_retry_scan >= 1.0:
                    self._last_retry_scan = now
                    self._schedule_retries()
                if now - self._last_commit >= opts.commit_interval:
                    self._commit()
                if now - self._last_prune >= 3600.0:
                    self._last_prune = now
                    pruned = self.state.prune_run_starts(opts.run_start_max_age)
                    if pruned:
                        log.info("pruned %d cached run start(s) older than %.0f days", pruned,
                                 opts.run_start_max_age / 86400)
                if now - self._last_lag >= 10.0:
                    self._last_lag = now
                    self._update_lag()
                if opts.exit_when_idle is not None and self._idle(now):
                    log.info("idle for %.0f s with nothing pending: stopping", opts.exit_when_idle)
                    break
        finally:
            self._drain()

    def _idle(self, now: float) -> bool:
        limit = self.options.exit_when_idle or 0
        if not self._assigned:  # a topic that does not exist is never assigned; a group join takes seconds
            limit = max(limit, 10.0)
        return now - self._last_message >= limit and not self._work and not self.state.counts().get(QUEUED)

    def _drain(self) -> None:
        log.info("stopping: finishing %d file(s) in flight", len(self._work))
        deadline = time.monotonic() + self.options.drain_timeout
        while self._work and time.monotonic() < deadline:
            time.sleep(0.05)
            self._reap()
        self._commit()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._consumer is not None:
            self._consumer.close()
        log.info("stopped")

    # -- messages -----------------------------------------------------------------------------
    def _handle(self, msg: KafkaMessage) -> None:
        err = msg.error()
        if err is not None:
            now = time.monotonic()
            if err.code() != _LibKafkaError._PARTITION_EOF and now - self._kafka_errors.get(err.code(), -1e9) > 30:
                self._kafka_errors[err.code()] = now  # the same problem at most every 30 s in the log
                log.warning("Kafka: %s", err.str())
            return
        self._last_message = time.monotonic()
        tp, offset = (msg.topic(), msg.partition()), msg.offset()
        source = f"{tp[0]}/{tp[1]}@{offset}"
        payload = msg.value() or b""
        self._offsets.add(tp, offset)
        try:
            message = decode(payload)
        except DecodeError as exc:
            self._bad(source, str(exc), payload)
            self._offsets.done(tp, offset)
            return
        self.metrics.inc("sfi_messages_consumed_total", schema=message.schema)
        if message.schema not in HANDLED:
            self._bad(source, f"schema '{message.schema}' is not a file-writer control message", payload)
        elif message.json_errors:
            problems = "; ".join(f"{k}: {v}" for k, v in message.json_errors.items())
            self._bad(source, f"{message.schema} {problems}", payload)
        if message.schema == "pl72":
            self.state.put_run_start(message.value.job_id, payload, source)
            log.info("run start %s job %s file %s", source, message.value.job_id, message.value.filename)
        elif message.schema == "wrdn":
            if self._finished(message, payload, source, tp, offset):
                return  # the offset is done when the file's outcome is recorded
        elif message.schema == "answ":
            value = message.value
            level = logging.INFO if value.status_code < 400 else logging.WARNING
            log.log(level, "answer %s job %s: %s %s", source, value.job_id, value.status_code, value.message)
        elif message.schema in ("x5f2", "6s4t"):
            log.debug("%s %s", message.schema, source)
        self._offsets.done(tp, offset)

    def _bad(self, source: str, reason: str, payload: bytes) -> None:
        log.warning("bad message %s: %s", source, reason)
        self.metrics.inc("sfi_messages_invalid_total")
        self.state.record_bad_message(source, reason, payload)

    def _finished(self, message: Message, payload: bytes, source: str, tp: tuple[str, int], offset: int) -> bool:
        """Start ingesting a finished file; False when its offset is already done."""
        wrdn = message.value
        key = wrdn.file_name
        if not key:
            self._bad(source, "wrdn without file_name", payload)
            return False
        if key in self._work:  # a duplicate while the first is still being ingested
            self._work[key].offsets.append((tp, offset))
            return True
        record = self.state.get_file(key)
        if record is not None and record.status in DONE:
            log.info("already done %s: %s (%s)", source, key, record.status)
            return False
        if record is not None and record.status == QUEUED:
            log.info("already queued %s: %s", source, key)
            return False
        if wrdn.error_encountered and self.options.on_writer_error == "skip":
            self.state.record_file(key, job_id=wrdn.job_id, writer_path=key, status="skipped", source=source,
                                   wrdn=payload, error=f"writer error: {wrdn.message or 'no message'}")
            self.metrics.inc("sfi_datasets_total", outcome="skipped")
            log.warning("writer reported an error for %s (%s): not ingested (on_writer_error=skip)", key,
                        wrdn.message)
            return False
        work = _Work(key, [(tp, offset)])
        self._submit(work, payload, source, wait_missing=self.options.wait_missing)
        return True

    # -- ingestion ----------------------------------------------------------------------------
    def _submit(self, work: _Work, wrdn_payload: bytes, source: str, *, wait_missing: float) -> None:
        self._work[work.key] = work
        self.metrics.set("sfi_inflight_files", len(self._work))
        work.future = self._pool.submit(self._ingest, work.key, wrdn_payload, source, wait_missing)

    def _ingest(self, key: str, wrdn_payload: bytes, source: str, wait_missing: float) -> IngestResult:
        """Worker thread: ingest one file and durably record what happened."""
        result = ingest_and_record(self.ingestor, self.state, key, wrdn_payload, source,
                                   wait_missing=wait_missing, retry_base=self.options.retry_base,
                                   retry_max=self.options.retry_max)
        if result.status in DONE:
            self.metrics.set("sfi_last_success_timestamp_seconds", time.time())
        outcome = result.status if result.status in DONE else ("queued" if result.retryable else "failed")
        self.metrics.inc("sfi_datasets_total", outcome=outcome)
        return result

    def _reap(self) -> None:
        """Mark the offsets of finished work as done (their outcome is recorded by now)."""
        for key in [k for k, w in self._work.items() if w.future is not None and w.future.done()]:
            work = self._work.pop(key)
            for tp, offset in work.offsets:
                self._offsets.done(tp, offset)
        self.metrics.set("sfi_inflight_files", len(self._work))

    def _schedule_retries(self) -> None:
        now = time.time()
        for record in self.state.due(now, limit=max(1, self.options.workers * 2)):
            if record.file_key in self._work:
                continue
            log.info("retrying %s (attempt %d)", record.file_key, record.attempts + 1)
            self._submit(_Work(record.file_key), record.wrdn, record.source, wait_missing=0.0)
        self.metrics.set("sfi_retry_queue_depth", self.state.counts().get(QUEUED, 0))

    # -- offsets ------------------------------------------------------------------------------
    def _commit(self, tps: list[tuple[str, int]] | None = None) -> None:
        self._last_commit = time.monotonic()
        offsets = self._offsets.to_commit(tps)
        if not offsets or self._consumer is None:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
            self._offsets.committed(offsets)
        except KafkaException as exc:
            log.warning("offset commit failed (will retry): %s", exc.args[0].str() if exc.args else exc)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned = True
        self._last_message = time.monotonic()  # idleness counts from having something to read
        log.info("partitions assigned: %s", ", ".join(f"{p.topic}/{p.partition}" for p in partitions) or "none")

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        deadline = time.monotonic() + self.options.drain_timeout
        while self._offsets.inflight(tps) and time.monotonic() < deadline:
            time.sleep(0.05)
            self._reap()
        self._commit(tps)
        self._offsets.forget(tps)
        log.info("partitions revoked: %s", ", ".join(f"{t}/{p}" for t, p in tps))

    def _update_lag(self) -> None:
        if self._consumer is None:
            return
        try:
            assigned = self._consumer.assignment()
            self.metrics.clear("sfi_consumer_lag")  # revoked partitions must not keep stale values
            for tp in self._consumer.position(assigned):
                _low, high = self._consumer.get_watermark_offsets(tp, timeout=1.0)
                if tp.offset >= 0:
                    self.metrics.set("sfi_consumer_lag", max(0, high - tp.offset), topic=tp.topic,
                                     partition=str(tp.partition))
        except KafkaException:
            return

    def health(self) -> dict[str, tuple[bool, str]]:
        checks: dict[str, tuple[bool, str]] = {}
        try:
            with self._admin_lock:  # its own client: the consumer belongs to the polling thread
                if self._admin is None:
                    self._admin = make_admin(self.cfg)
                n = len(self._admin.list_topics(timeout=2.0).brokers)
            checks["kafka"] = (n > 0, f"{n} broker(s) reachable")
        except Exception as exc:  # any failure here is the answer, not a crash
            checks["kafka"] = (False, _reason(exc))
        sink: Any = self.ingestor.sink
        try:
            sink.ping()
            checks["scicat"] = (True, "reachable")
        except Exception as exc:
            checks["scicat"] = (False, _reason(exc))
        try:
            self.state.ping()
            checks["state"] = (True, str(self.state.path))
        except Exception as exc:
            checks["state"] = (False, _reason(exc))
        return checks


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def run_info_for(state: StateStore, wrdn_payload: bytes) -> RunInfo:
    """What Kafka said about a file: its wrdn and, when cached, its run start."""
    wrdn = decode(wrdn_payload, expect="wrdn").value
    cached = state.get_run_start(wrdn.job_id) if wrdn.job_id else None
    run_start = None
    if cached is not None:
        try:
            run_start = decode(cached, expect="pl72").value
        except DecodeError:
            run_start = None
    return RunInfo.from_messages(run_start, wrdn)


def ingest_and_record(ingestor: Any, state: StateStore, key: str, wrdn_payload: bytes, source: str, *,
                      wait_missing: float, retry_base: float = 2.0, retry_max: float = 300.0) -> IngestResult:
    """Ingest one finished file and durably record its outcome (done, queued with backoff, or failed)."""
    run = run_info_for(state, wrdn_payload)
    try:
        # skip_existing=False: the state store already knows what is done, and upsert looks the pid up
        result = ingestor.ingest(key, run, wait_missing=wait_missing, skip_existing=False)
    except Exception as exc:  # a bug must not lose the file: queue it like a retryable failure
        log.exception("unexpected error ingesting %s", key)
        result = IngestResult(file=key, pid=None, status="failed", error=f"internal error: {exc}", retryable=True)
    previous = state.get_file(key)
    attempts = (previous.attempts if previous else 0) + 1
    common = dict(job_id=run.job_id, writer_path=key, pid=result.pid, source=source, wrdn=wrdn_payload)
    if result.status in DONE:
        state.record_file(key, status=result.status, **common)
        log.info("%s %s -> pid %s", result.status, key, result.pid)
    elif result.retryable:
        delay = min(retry_max, retry_base * 2 ** (attempts - 1)) * random.uniform(0.8, 1.2)
        state.record_file(key, status=QUEUED, error=result.error, next_attempt=time.time() + delay, **common)
        log.warning("will retry %s in %.0f s (attempt %d): %s", key, delay, attempts, result.error)
    else:
        state.record_file(key, status=FAILED, error=result.error, **common)
        log.error("failed %s: %s", key, result.error)
    return result


def retry_now(cfg: Config, state: StateStore) -> list[IngestResult]:
    """``sfi retry --now``: ingest every due file of the queue in this process."""
    sink, _ = open_sink(cfg)
    ingestor = Ingestor(cfg, sink)
    try:
        return [ingest_and_record(ingestor, state, r.file_key, r.wrdn, r.source, wait_missing=0.0)
                for r in state.due(time.time(), limit=1_000_000)]
    finally:
        sink.close()
