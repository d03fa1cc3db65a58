"""The ingestion daemon: file-writer channels in, each finished file in SciCat exactly once.

Why it is shaped like this:
- One thread owns the Kafka consumer and never blocks on SciCat or the disk, so it keeps polling
  (no max.poll.interval.ms eviction) whatever SciCat does. Ingestion runs on a worker pool, so a
  slow checksum of one big file does not hold back the others.
- An offset is committed only after what its message asked for is durably recorded in the state
  store (run start cached; file ingested, skipped, failed, rejected or queued for retry), and
  commits move in offset order per partition. At-least-once delivery plus idempotent ingestion =
  exactly once.
- When the state store cannot record (disk full, locked by another process), nothing is committed:
  the listener pauses consumption with one ERROR naming the state file and the cause, holds the
  outcomes it could not write, probes the store every few seconds and resumes once it is writable.
- Retryable failures (SciCat down, file not visible yet) go to the durable retry queue with
  exponential backoff and are retried in this process, but their offsets stay *uncommitted* until the
  file is done: the queue is owned by the consumer group, not by this host. If this listener dies, the
  partition's next owner reads those wrdns again; other messages are still consumed (the commit stays
  at the lowest unfinished offset) until ``held_max`` files wait in one partition, which then pauses.
  A file missing for ``[ingest] missing_hours`` becomes ``failed`` (committed). Bad messages are
  recorded (truncated) and committed.
- Takeover fence: the messages of a newly assigned partition that had an owner before (a committed
  offset) may be in flight on that owner; what is read from it in the first ``takeover_wait`` seconds
  reaches SciCat only then (the longest an earlier owner's request can still be stored), and those
  datasets are verified again ``verify_after`` later (a POST stored later than any wait is a
  duplicate to repair).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka import KafkaError as _LibKafkaError
from confluent_kafka import Message as KafkaMessage

from ..completion import wrdn
from ..completion.wrdn import run_info_for
from ..config import Config, IngestConfig, ListenConfig, ScicatConfig
from ..ingest.sink import Ingests
from ..kafka import make_consumer
from ..messages import DecodeError, Message, decode
from ._filework import FileWork
from ._partitions import PartitionBook, position
from ._pause import StatePause, _Work
from .health import BrokerProblems, HealthMonitor, ListenerChecks
from .metrics import LISTEN_METRICS, Metrics
from .record import (
    OutcomeNotRecorded,
    finish_in_flight,
    ingest_and_record,
    record_outcome,
    retry_now,
)
from .state import QUEUED, StateError, StateStore

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
    group: str = ListenConfig.group
    auto_offset_reset: str = ListenConfig.auto_offset_reset
    on_writer_error: str = ListenConfig.on_writer_error
    workers: int = ListenConfig.workers
    #: Seconds a finished file may take to appear at its mapped path before it goes to the retry queue.
    wait_missing: float = IngestConfig.file_wait
    retry_base: float = ListenConfig.retry_base
    retry_max: float = ListenConfig.retry_max
    commit_interval: float = 1.0
    drain_timeout: float = 30.0
    #: Cached run starts older than this are pruned (at start, then hourly).
    run_start_max_age: float = ListenConfig.run_start_days * 86400
    #: Exit once nothing arrived for this long, nothing is in flight and the retry queue is empty.
    exit_when_idle: float | None = None
    #: Seconds a missing or unreadable file stays queued before it is ``failed``.
    missing_deadline: float = IngestConfig.missing_hours * 3600
    #: Seconds between background health checks (/health answers from the last one).
    health_interval: float = ListenConfig.health_interval
    #: Queued files a partition holds uncommitted before consumption of that partition pauses.
    held_max: int = ListenConfig.held_max
    #: Files held in memory (queued for a worker or being ingested) before consumption of every partition pauses.
    inflight_max: int = ListenConfig.inflight_max
    #: Seconds a taken-over partition's earlier messages wait before they may reach SciCat.
    takeover_wait: float = ScicatConfig.timeout + ScicatConfig.grace
    #: Seconds until a dataset with an unknown datablock outcome (or taken over) is looked at again.
    verify_after: float = ListenConfig.verify_after


class Listener(ListenerChecks):
    """Consumes control topics and drives each finished file to a recorded outcome (see the module docstring)."""

    options: ListenOptions

    def __init__(self, cfg: Config, options: ListenOptions, *, ingestor: Ingests, state: StateStore,
                 metrics: Metrics | None = None) -> None:
        self.cfg, self.options, self.ingestor, self.state = cfg, options, ingestor, state
        self.metrics = metrics or Metrics(LISTEN_METRICS)
        self._stop = threading.Event()
        self._book = PartitionBook(takeover_wait=options.takeover_wait, held_max=options.held_max,
                                   inflight_max=options.inflight_max)
        self._consumer: Consumer | None = None
        self._last_message = time.monotonic()
        self._last_retry_scan = 0.0
        self._last_lag = 0.0
        self._last_prune = -1e18
        self._assigned = False
        self._kafka_errors: dict[int, float] = {}
        self._admin: Any = None
        self._admin_lock = threading.Lock()
        self.broker_problems = BrokerProblems(cfg.bootstrap)
        self._health = HealthMonitor({"kafka": self._check_kafka, "scicat": self._check_scicat,
                                      "state": self._check_state}, interval=options.health_interval)
        #: consumption paused because the state store cannot record (``_pause.StatePause``)
        self._state_pause = StatePause(state, self.metrics, pause_consumption=self._pause_consumption,
                                       resume_consumption=self._resume_consumption, handle=self._handle,
                                       resubmit=lambda work: self._files.submit(work, wait_missing=0.0),
                                       settle=self._settle_recorded, retry_base=options.retry_base,
                                       retry_max=options.retry_max, missing_deadline=options.missing_deadline)
        #: files in flight on the worker pool (``_filework.FileWork``)
        self._files = FileWork(ingestor, state, self.metrics, self._book,
                               on_unrecorded=self._state_pause.hold_unrecorded, workers=options.workers,
                               retry_base=options.retry_base, retry_max=options.retry_max,
                               missing_deadline=options.missing_deadline, verify_after=options.verify_after)
        self._work = self._files.work  # the same dict: what is in flight, by file key
        #: Outcomes still unrecorded when the listener stopped (their messages will be read again).
        self.unrecorded_at_stop = 0

    # -- lifecycle ----------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    @property
    def consumer(self) -> Consumer | None:
        return self._consumer

    @property
    def paused(self) -> bool:
        return self._state_pause.paused

    def _pause_consumption(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.pause(self._consumer.assignment())
            except KafkaException:
                pass  # messages still delivered are held, not handled: see _receive

    def _resume_consumption(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.resume(self._consumer.assignment())
            except KafkaException as exc:
                log.warning("resuming consumption: %s", exc)

    def _settle_recorded(self, work: _Work, status: str) -> None:
        self._book.settle(work.key, work.offsets, queued=status == QUEUED)

    def run(self) -> None:
        opts = self.options
        wanted = {**CONSUMER_DEFAULTS, **PATTERN_DEFAULTS}  # also named topics created after the start
        defaults: dict[str, Any] = {k: v for k, v in wanted.items() if k not in self.cfg.kafka}
        self._consumer = make_consumer(self.cfg, opts.group, offset_reset=opts.auto_offset_reset,
                                       error_cb=self.broker_problems, **defaults)
        self._consumer.subscribe(opts.topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_revoke)
        self._health.start()
        log.info("listening on %s as group %s (%d workers)", ", ".join(opts.topics), opts.group, opts.workers)
        try:
            while not self._stop.is_set():
                msg = self._consumer.poll(0.2)
                renew = getattr(self.ingestor, "renew_lease", None)
                if renew is not None:
                    renew()  # worker processes write to SciCat only while this loop runs (see _procpool)
                if msg is not None:
                    self._receive(msg)
                    memory = self._book.memory
                    if len(self._work) >= memory.limit and not memory.full and not self.paused:
                        # at once: a backlog arrives faster than commit_interval
                        self._book.bound_held(self._consumer, (w.offsets for w in self._work.values()), len(self._work))
                        self._last_lag = 0.0  # and the backlog left in Kafka shows in /metrics at once
                self._files.reap()
                now = time.monotonic()
                self._files.submit_deferred(now)
                if self.paused:
                    if self._state_pause.probe_due(now):
                        self._state_pause.try_resume()
                else:
                    self._housekeeping(now)
                if now - self._book.last_commit >= opts.commit_interval:
                    if not self.paused:
                        self._book.bound_held(self._consumer, (w.offsets for w in self._work.values()), len(self._work))
                    self._commit()
                if now - self._last_lag >= 10.0:
                    self._last_lag = now
                    self._book.update_lag(self._consumer, self.metrics)
                if opts.exit_when_idle is not None and self._idle(now):
                    log.info("idle for %.0f s with nothing pending: stopping", opts.exit_when_idle)
                    break
        finally:
            self._health.stop()
            self._drain()

    def _housekeeping(self, now: float) -> None:
        opts = self.options
        try:
            if now - self._last_retry_scan >= 1.0:
                self._last_retry_scan = now
                self._files.schedule_retries()
            if now - self._last_prune >= 3600.0:
                self._last_prune = now
                pruned = self.state.prune_run_starts(opts.run_start_max_age)
                if pruned:
                    log.info("pruned %d cached run start(s) older than %.0f days", pruned,
                             opts.run_start_max_age / 86400)
                pruned = self.state.prune_bad_messages()
                if pruned:
                    log.info("pruned %d recorded bad message(s) (by age or count)", pruned)
        except StateError as exc:
            self._state_pause.pause(exc)

    def _idle(self, now: float) -> bool:
        if self.paused or self._work or self._state_pause.outstanding or self._book.queued:
            return False
        try:
            queued = self.state.count(QUEUED)
        except StateError:
            return False
        limit = self.options.exit_when_idle or 0
        if not self._assigned:  # a topic that does not exist is never assigned; a group join takes seconds
            limit = max(limit, 10.0)
        return now - self._last_message >= limit and not queued

    def _drain(self) -> None:
        for key in [k for k, w in self._work.items() if w.future is None]:
            del self._work[key]  # not sent yet (takeover fence): uncommitted, read again at the next start
        finish_in_flight(self._work, self._files.reap, self.options.drain_timeout, log)
        if self.paused:
            self._state_pause.try_resume(resume_consumer=False)
        self._commit()
        self.unrecorded_at_stop = self._state_pause.outstanding
        if self.unrecorded_at_stop:
            log.error("stopping with %d outcome(s)/message(s) not recorded in %s: their offsets stay uncommitted "
                      "and they are processed again at the next start", self.unrecorded_at_stop, self.state.path)
        self._files.pool.shutdown(wait=False, cancel_futures=True)
        if self._consumer is not None:
            self._consumer.close()
        log.info("stopped")

    # -- messages -----------------------------------------------------------------------------
    def _receive(self, msg: KafkaMessage) -> None:
        err = msg.error()
        if err is not None:
            now = time.monotonic()
            if err.code() != _LibKafkaError._PARTITION_EOF and now - self._kafka_errors.get(err.code(), -1e9) > 30:
                self._kafka_errors[err.code()] = now  # the same problem at most every 30 s in the log
                log.warning("Kafka: %s", err.str())
            return
        self.broker_problems.ok()
        self._last_message = time.monotonic()
        self._book.offsets.add(*position(msg))  # in flight from now: never committed past
        if self.paused:
            self._state_pause.hold(msg)
            return
        self._state_pause.handle_or_hold(msg)

    def _handle(self, msg: KafkaMessage) -> None:
        tp, offset = position(msg)
        source = f"{tp[0]}/{tp[1]}@{offset}"
        payload = msg.value() or b""
        try:
            message = decode(payload)
        except DecodeError as exc:
            self._bad(source, str(exc), payload)
            self._book.offsets.done(tp, offset)
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
        self._book.offsets.done(tp, offset)

    def _bad(self, source: str, reason: str, payload: bytes) -> None:
        log.warning("bad message %s: %s", source, reason)
        self.metrics.inc("sfi_messages_invalid_total")
        self.state.record_bad_message(source, reason, payload)

    def _finished(self, message: Message, payload: bytes, source: str, tp: tuple[str, int], offset: int) -> bool:
        """Start ingesting a finished file; False when its offset is already done.

        What the wrdn asks for is decided in ``completion.wrdn``; here is only its Kafka side.
        """
        d = wrdn.decide(message.value, in_flight=self._work, get_file=self.state.get_file,
                        on_writer_error=self.options.on_writer_error)
        if d.action == wrdn.BAD:
            self._bad(source, d.detail, payload)
            return False
        if d.action == wrdn.IN_FLIGHT:  # a duplicate while the first is still being ingested
            self._work[d.key].offsets.append((tp, offset))
            return True
        if d.action == wrdn.ALREADY:
            if d.detail == QUEUED or self._files.verify_owed(d.key):
                # owed work of this host's queue (a restart, or the partition came back): the offset waits for it
                self._book.queued.setdefault(d.key, []).append((tp, offset))
                log.info("already %s %s: %s (offset held until it is done)", d.detail, source, d.path)
                return True
            log.info("already %s %s: %s", d.detail, source, d.path)
            return False
        if d.action == wrdn.WRITER_ERROR:
            self.state.record_file(d.key, job_id=d.job_id, writer_path=d.path, status="skipped", source=source,
                                   wrdn=payload, error=d.detail)
            self.metrics.inc("sfi_datasets_total", outcome="skipped")
            log.warning("writer reported an error for %s (%s): not ingested (on_writer_error=skip)", d.path,
                        message.value.message)
            return False
        work = _Work(d.key, d.path, payload, source, [(tp, offset)])
        fence = self._book.fence_for(tp)
        if fence is not None:
            work.not_before, work.takeover = fence, True
            log.debug("taken over %s: %s waits %.1f s before it may reach SciCat (takeover_wait)", source, d.path,
                     fence - time.monotonic())
        self._files.submit(work, wait_missing=self.options.wait_missing)
        return True

    # -- offsets ------------------------------------------------------------------------------
    def _commit(self, tps: list[tuple[str, int]] | None = None) -> None:
        self._book.commit(self._consumer, tps)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned = True
        self.broker_problems.ok()
        self._last_message = time.monotonic()  # idleness counts from having something to read
        log.info("partitions assigned: %s", ", ".join(f"{p.topic}/{p.partition}" for p in partitions) or "none")
        self._book.assign(consumer, partitions)
        if self.paused and partitions:
            try:
                consumer.pause(partitions)
            except KafkaException:
                pass

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        # not yet sent (takeover fence): dropped, the new owner reads them again
        for key in [k for k, w in self._work.items()
                    if w.future is None and w.offsets and all(tp in tps for tp, _ in w.offsets)]:
            del self._work[key]

        def running() -> bool:
            return any(w.future is not None and not w.future.done() and any(tp in tps for tp, _ in w.offsets)
                       for w in self._work.values())

        # finish what is in flight for these partitions before they are released (bounded)
        deadline = time.monotonic() + self.options.drain_timeout
        while running() and time.monotonic() < deadline:
            time.sleep(0.05)
            self._files.reap()
        self._files.reap()
        self._commit(tps)
        self._book.release(tps)  # owed work of these partitions is the new owner's to redo
        self._state_pause.forget(tps)  # what was held for these partitions is the new owner's to read again
        log.info("partitions revoked: %s", ", ".join(f"{t}/{p}" for t, p in tps))

__all__ = [
    "ListenOptions",
    "Listener",
    "OutcomeNotRecorded",
    "ingest_and_record",
    "record_outcome",
    "retry_now",
    "run_info_for",
]
