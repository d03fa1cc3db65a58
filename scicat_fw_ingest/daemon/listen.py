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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message as KafkaMessage, TopicPartition
from confluent_kafka import KafkaError as _LibKafkaError

from .backlog import MemoryBound, publish_in_memory, publish_unread
from .health import BrokerProblems, HealthMonitor, ListenerChecks
from ._pause import PauseOnStateErrors, _Work
from .record import (OutcomeNotRecorded, finish_in_flight, ingest_and_record, record_outcome, retry_now,
                             run_info_for)
from ._offsets import OffsetTracker
from ..completion import wrdn
from ..config import Config
from ..errors import SfiError
from ..ingest import IngestResult
from ..kafka import make_consumer
from ..messages import DecodeError, Message, decode
from .metrics import LISTEN_METRICS, Metrics
from .state import DONE, QUEUED, REJECTED, StateError, StateStore

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
#: Seconds between attempts to write held outcomes while consumption is paused.
PROBE_INTERVAL = 2.0


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
    #: Seconds a missing or unreadable file stays queued before it is ``failed``.
    missing_deadline: float = 6 * 3600.0
    #: Seconds between background health checks (/health answers from the last one).
    health_interval: float = 15.0
    #: Queued files a partition holds uncommitted before consumption of that partition pauses.
    held_max: int = 200
    #: Files held in memory (queued for a worker or being ingested) before consumption of every partition pauses.
    inflight_max: int = 100
    #: Seconds a taken-over partition's earlier messages wait before they may reach SciCat.
    takeover_wait: float = 35.0
    #: Seconds until a dataset with an unknown datablock outcome (or taken over) is looked at again.
    verify_after: float = 120.0


class Listener(PauseOnStateErrors, ListenerChecks):
    """Consumes control topics and drives each finished file to a recorded outcome (see the module docstring)."""

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
        #: partitions assigned now (a queued file of another partition is that partition's owner's to retry)
        self._assignment: set[tuple[str, int]] = set()
        #: per taken-over partition: the monotonic time before which its messages must not reach SciCat
        self._fence: dict[tuple[str, int], float] = {}
        #: file key -> offsets held uncommitted while the file waits for a retry or a verification
        self._queued: dict[str, list[tuple[tuple[str, int], int]]] = {}
        #: partitions paused because they hold ``held_max`` queued files
        self._held_paused: set[tuple[str, int]] = set()
        self._memory = MemoryBound(options.inflight_max)  # files held in memory (see backlog.py)
        self._kafka_errors: dict[int, float] = {}
        self._admin: Any = None
        self._admin_lock = threading.Lock()
        self.broker_problems = BrokerProblems(cfg.bootstrap)
        self._health = HealthMonitor({"kafka": self._check_kafka, "scicat": self._check_scicat,
                                      "state": self._check_state}, interval=options.health_interval)
        # -- consumption paused because the state store cannot record ---------------------------
        self._paused_since: float | None = None
        self._held: list[KafkaMessage] = []  # messages read but not yet handled (store not writable)
        self._unrecorded: list[_Work] = []
        self._last_probe = 0.0
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
        return self._paused_since is not None

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
                    if len(self._work) >= self._memory.limit and not self._memory.full:
                        self._bound_held()  # at once: a backlog arrives faster than commit_interval
                        self._last_lag = 0.0  # and the backlog left in Kafka shows in /metrics at once
                self._reap()
                now = time.monotonic()
                self._submit_deferred(now)
                if self.paused:
                    if now - self._last_probe >= PROBE_INTERVAL:
                        self._last_probe = now
                        self._try_resume()
                else:
                    self._housekeeping(now)
                if now - self._last_commit >= opts.commit_interval:
                    self._bound_held()
                    self._commit()
                if now - self._last_lag >= 10.0:
                    self._last_lag = now
                    self._update_lag()
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
                self._schedule_retries()
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
            self._pause(exc)

    def _idle(self, now: float) -> bool:
        if self.paused or self._work or self._unrecorded or self._held or self._queued:
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
        finish_in_flight(self._work, self._reap, self.options.drain_timeout, log)
        if self.paused:
            self._try_resume(resume_consumer=False)
        self._commit()
        self.unrecorded_at_stop = len(self._unrecorded) + len(self._held)
        if self.unrecorded_at_stop:
            log.error("stopping with %d outcome(s)/message(s) not recorded in %s: their offsets stay uncommitted "
                      "and they are processed again at the next start", self.unrecorded_at_stop, self.state.path)
        self._pool.shutdown(wait=False, cancel_futures=True)
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
        self._offsets.add((msg.topic(), msg.partition()), msg.offset())  # in flight from now: never committed past
        if self.paused:
            self._held.append(msg)
            return
        self._handle_or_hold(msg)

    def _handle(self, msg: KafkaMessage) -> None:
        tp, offset = (msg.topic(), msg.partition()), msg.offset()
        source = f"{tp[0]}/{tp[1]}@{offset}"
        payload = msg.value() or b""
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
            if d.detail == QUEUED or self._verify_owed(d.key):
                # owed work of this host's queue (a restart, or the partition came back): the offset waits for it
                self._queued.setdefault(d.key, []).append((tp, offset))
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
        fence = self._fence.get(tp)
        if fence is not None and time.monotonic() < fence:
            work.not_before, work.takeover = fence, True
            log.debug("taken over %s: %s waits %.1f s before it may reach SciCat (takeover_wait)", source, d.path,
                     fence - time.monotonic())
        elif fence is not None:
            del self._fence[tp]  # the window is over
        self._submit(work, wait_missing=self.options.wait_missing)
        return True

    def _verify_owed(self, key: str) -> bool:
        record = self.state.get_file(key)
        return record is not None and record.verify_at is not None

    # -- ingestion ----------------------------------------------------------------------------
    def _submit(self, work: _Work, *, wait_missing: float) -> None:
        self._work[work.key] = work
        self.metrics.set("sfi_inflight_files", len(self._work))
        work.wait_missing = wait_missing
        if work.not_before > time.monotonic():
            return  # sent by _submit_deferred once the takeover fence is over
        work.future = self._pool.submit(self._ingest, work, wait_missing)

    def _submit_deferred(self, now: float) -> None:
        for work in [w for w in self._work.values() if w.future is None and w.not_before <= now]:
            work.future = self._pool.submit(self._ingest, work, work.wait_missing)

    def _ingest(self, work: _Work, wait_missing: float) -> IngestResult:
        """Worker thread: ingest one file and durably record what happened (``OutcomeNotRecorded`` if not)."""
        if work.verify:
            looked = self._converge(work)
            if looked is not None:
                return looked
        result = ingest_and_record(self.ingestor, self.state, work.key, work.wrdn, work.source,
                                   wait_missing=wait_missing, retry_base=self.options.retry_base,
                                   retry_max=self.options.retry_max, writer_path=work.writer_path,
                                   missing_deadline=self.options.missing_deadline)
        work.hold = result.status not in (*DONE, REJECTED) and result.retryable
        if result.status in DONE:
            self.metrics.set("sfi_last_success_timestamp_seconds", time.time())
            # An unknown datablock outcome or a takeover: a POST may still be stored later than any wait.
            verify = result.verify or work.takeover
            try:
                if verify or self._verify_owed(work.key):
                    at = time.time() + self.options.verify_after if verify else None
                    self.state.schedule_verify(work.key, at)
                    if verify:
                        log.info("will verify %s (pid %s) in %.0f s: %s", work.writer_path, result.pid,
                                 self.options.verify_after,
                                 "taken over" if work.takeover else "a datablock outcome was not known")
            except StateError as exc:
                raise OutcomeNotRecorded(result, exc) from None
            work.hold = verify
        outcome = result.status if result.status in (*DONE, REJECTED) else (
            "queued" if result.retryable else "failed")
        self.metrics.inc("sfi_datasets_total", outcome=outcome)
        return result

    def _converge(self, work: _Work) -> IngestResult | None:
        """A verification by looking only (no file read); None when the full ingest is needed (the datablock is
        missing, this host owes one, or the look failed: the ingest path queues or fails it with the reason)."""
        converge = getattr(getattr(self.ingestor, "sink", None), "converge", None)
        if converge is None or not work.pid:
            return None
        try:
            status = converge(work.pid)
        except SfiError:
            return None
        if status == "missing":
            return None
        try:
            self.state.schedule_verify(work.key, None)
        except StateError:
            return None  # verified, but not recorded: the ingest path records (idempotent)
        if status == "hidden":
            log.warning("cannot verify %s: this account may not read dataset %s (see [scicat] access_group)",
                        work.writer_path, work.pid)
        else:
            log.info("verified %s -> pid %s: %s", work.writer_path, work.pid, status)
        return IngestResult(file=work.writer_path, pid=work.pid, status="repaired" if status == "repaired" else
                            "exists")

    def _reap(self) -> None:
        """Mark the offsets of finished work as done — only when its outcome was recorded."""
        for key in [k for k, w in self._work.items() if w.future is not None and w.future.done()]:
            work = self._work.pop(key)
            exc = work.future.exception() if work.future is not None and not work.future.cancelled() else None
            if work.future is not None and work.future.cancelled():
                continue  # shutting down: the offsets stay in flight, the message is read again
            if exc is not None:
                if not isinstance(exc, OutcomeNotRecorded):
                    log.error("ingesting %s: %s: %s", work.writer_path, type(exc).__name__, exc)
                work.unrecorded = exc.result if isinstance(exc, OutcomeNotRecorded) else None
                self._unrecorded.append(work)
                self._pause(exc)
                continue
            if work.hold:  # queued or to be verified: the offsets wait (the group owns the owed work)
                held = [(tp, o) for tp, o in work.offsets if tp in self._assignment]
                if held:
                    self._queued.setdefault(key, []).extend(held)
                continue
            for tp, offset in [*work.offsets, *self._queued.pop(key, [])]:
                self._offsets.done(tp, offset)
        publish_in_memory(self.metrics, self._work.values())

    def _schedule_retries(self) -> None:
        now = time.time()
        room = max(1, self.options.workers * 2)
        due = [(r, False) for r in self.state.due(now, limit=200)]
        due += [(r, True) for r in self.state.due_verify(now, limit=200)]
        for record, verify in due:
            if room <= 0:
                break
            if record.file_key in self._work:
                continue
            if record.file_key not in self._queued and _partition_of(record.source) not in self._assignment:
                continue  # its partition is another listener's now: that one reads the wrdn again
            room -= 1
            if verify:
                log.info("verifying %s (pid %s)", record.writer_path, record.pid)
            else:
                log.info("retrying %s (attempt %d)", record.writer_path, record.attempts + 1)
            work = _Work(record.file_key, record.writer_path, record.wrdn, record.source,
                         self._queued.pop(record.file_key, []))
            work.verify, work.pid = verify and record.status in DONE, record.pid
            self._submit(work, wait_missing=0.0)
        self.metrics.set("sfi_retry_queue_depth", self.state.count(QUEUED))

    def _bound_held(self) -> None:
        """Pause a partition holding ``held_max`` files uncommitted (queued, or in flight); resume it below that."""
        if self._consumer is None or self.paused:
            return
        per: dict[tuple[str, int], int] = {}
        # queued files, and those being retried right now (their offsets travel with the work meanwhile)
        for offsets in [*self._queued.values(), *(w.offsets for w in self._work.values())]:
            for tp in {tp for tp, _ in offsets}:
                per[tp] = per.get(tp, 0) + 1
        held_full = {tp for tp, n in per.items() if n >= self.options.held_max} & self._assignment
        full = set(self._assignment) if self._memory.update(len(self._work)) else held_full
        try:
            if full:  # again each time: a resume after a state-store pause resumed every partition
                self._consumer.pause([TopicPartition(t, p) for t, p in full])
            if held_full - self._held_paused:
                log.warning("partition(s) %s hold %d queued file(s) each: consumption paused until they are done",
                            ", ".join(f"{t}/{p}" for t, p in sorted(held_full - self._held_paused)),
                            self.options.held_max)
            if self._held_paused - full:
                self._consumer.resume([TopicPartition(t, p) for t, p in self._held_paused - full])
                if not self._memory.backlogged:
                    log.info("partition(s) %s resumed",
                             ", ".join(f"{t}/{p}" for t, p in sorted(self._held_paused - full)))
        except KafkaException as exc:
            log.warning("pausing/resuming partitions: %s", exc)
            return
        self._held_paused = full

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
        self.broker_problems.ok()
        self._last_message = time.monotonic()  # idleness counts from having something to read
        log.info("partitions assigned: %s", ", ".join(f"{p.topic}/{p.partition}" for p in partitions) or "none")
        for p in partitions:
            self._assignment.add((p.topic, p.partition))
        if self.options.takeover_wait > 0 and partitions:
            self._set_fences(consumer, partitions)
        if self.paused and partitions:
            try:
                consumer.pause(partitions)
            except KafkaException:
                pass

    def _set_fences(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Fence the partitions an earlier owner worked on (they have a committed offset): the messages read
        from them in the next ``takeover_wait`` seconds wait until then before they may reach SciCat.

        Every message read in that window, not only those below the high watermark at assignment: some brokers
        (Tansu) report a watermark that lags the log, and a new message waits at most ``takeover_wait`` once.

        A partition the group never committed had no earlier owner that got as far as a commit (the first
        commit comes ``commit_interval`` after the first message): it is not fenced, so a first start on a
        backlog is not delayed."""
        until = time.monotonic() + self.options.takeover_wait
        try:
            committed = consumer.committed([TopicPartition(p.topic, p.partition) for p in partitions], timeout=10.0)
        except KafkaException:
            committed = [TopicPartition(p.topic, p.partition, 0) for p in partitions]  # unknown: fence all
        fenced = []
        for tp in committed:
            if tp.offset >= 0:
                self._fence[(tp.topic, tp.partition)] = until
                fenced.append(f"{tp.topic}/{tp.partition} from {tp.offset}")
        if fenced:
            log.info("taking over %s: these messages reach SciCat after %.0f s (an earlier owner's requests may "
                     "still be stored meanwhile)", ", ".join(fenced), self.options.takeover_wait)

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
            self._reap()
        self._reap()
        self._commit(tps)
        self._offsets.forget(tps)
        for key in list(self._queued):  # owed work of these partitions is the new owner's to redo
            self._queued[key] = [(tp, o) for tp, o in self._queued[key] if tp not in tps]
            if not self._queued[key]:
                del self._queued[key]
        for tp in tps:
            self._assignment.discard(tp)
            self._fence.pop(tp, None)
            self._held_paused.discard(tp)
        # what was held for these partitions is the new owner's to read again
        self._held = [m for m in self._held if (m.topic(), m.partition()) not in tps]
        for work in self._unrecorded:
            work.offsets = [(tp, o) for tp, o in work.offsets if tp not in tps]
        self._unrecorded = [w for w in self._unrecorded if w.offsets]
        log.info("partitions revoked: %s", ", ".join(f"{t}/{p}" for t, p in tps))

    def _update_lag(self) -> None:
        if self._consumer is None:
            return
        try:
            publish_unread(self.metrics, self._consumer)
        except KafkaException:
            return



def _partition_of(source: str) -> tuple[str, int] | None:
    """(topic, partition) of a recorded message source "topic/partition@offset" (None for other sources)."""
    where, _, offset = source.rpartition("@")
    topic, _, partition = where.rpartition("/")
    return (topic, int(partition)) if topic and partition.isdigit() and offset.isdigit() else None


__all__ = ["Listener", "ListenOptions", "OutcomeNotRecorded", "ingest_and_record", "record_outcome",
           "retry_now", "run_info_for"]
