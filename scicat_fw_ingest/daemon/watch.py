"""The folder-watching daemon (``sfi watch``): files of writers that send no wrdn, each in SciCat exactly once.

Why it is shaped like this:
- Completion comes from the folder (``completion.folder``: settled = unchanged for a quiet period and
  openable by HDF5), optionally joined with the writer's run messages (``completion.runs``: pl72 gives
  the run's metadata and pid, 6s4t says the run is over). A file whose run has not stopped is held.
- The outcome of every file goes to the listener's state store through the same
  ``ingest_and_record`` as ``sfi listen``: done, queued for retry with backoff, or failed; ``sfi
  failures`` and ``sfi retry`` work on watched files too. A file is one version of a path: it is
  recorded under ``state.file_identity(path, size=, mtime=)`` of the version that settled, so a new
  file at a used path (a reused run name) is a new file, and a file known to the store is never
  ingested again: restarts (also ``kill -9``) give each file once; a file killed mid-ingest has no
  outcome yet, is ingested again and found by its deterministic pid (SciCat writes are idempotent).
- Run messages are read again from ``since`` at every start (no consumer group, nothing committed),
  and files are held until that reading has caught up, so a file is never ingested without the
  run start that is already on the topic (which would give it another pid).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..completion import FinishedFile
from ..completion.folder import FolderWatcher
from ..completion.runs import RunIndex, RunRecord
from ..config import Config, IngestConfig, ListenConfig
from ..ingest import IngestResult, RunInfo
from ..ingest.sink import Ingests
from .metrics import COUNTER, GAUGE, Metrics
from .record import finish_in_flight, ingest_and_record, requeued_file, watched_file
from .state import DONE, FileRecord, StateStore, file_identity

__all__ = ["WATCH_METRICS", "RunFeed", "WatchOptions", "Watcher", "watched_identity"]

log = logging.getLogger("sfi.watch")

#: What ``sfi watch --http-port`` exports on /metrics: name -> (kind, help, label names).
WATCH_METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "sfi_datasets_total": (COUNTER, "Watched files by outcome: created, exists, repaired, failed, queued.",
                           ("outcome",)),
    "sfi_last_success_timestamp_seconds": (GAUGE, "Unix time of the last dataset stored; 0 before the first.", ()),
    "sfi_inflight_files": (GAUGE, "Files being ingested by the worker pool right now.", ()),
    "sfi_watch_pending_files": (GAUGE, "Files seen in the watched folders and not settled (or held) yet.", ()),
    "sfi_watch_held_files": (GAUGE, "Settled files waiting for their run's messages (run start read, no 6s4t).", ()),
    "sfi_watch_runs_known": (GAUGE, "Run starts read from the --topic topics.", ()),
}

#: Prefix of the ``source`` recorded for watched files: the retry queue of a shared state store is split by it.
SOURCE_PREFIX = "watch:"


def watched_identity(path: str, size: int, mtime_ns: int) -> str:
    """The state key of one version of a watched file: its path, size and mtime (``state.file_identity``).

    Always computed from ``st_mtime_ns`` (never a second float), so the key written when a file was
    ingested and the one looked up after a restart are the same string.
    """
    return file_identity(path, size=size, mtime=mtime_ns / 1e9)


@dataclass
class WatchOptions:
    """What ``sfi watch`` was asked to do (directories, settling, run topics, workers, retry backoff)."""

    directories: list[str]
    patterns: list[str] = field(default_factory=lambda: IngestConfig().patterns())
    #: Seconds a file's size and mtime must stay unchanged before HDF5 is asked to open it.
    quiet_period: float = 5.0
    poll_interval: float = 1.0
    #: The deep pass this often: a full scan that also stats handled files, so a replaced file is noticed
    #: when polling (or on NFS written by other hosts, or after lost inotify events).
    rescan_interval: float = 300.0
    use_inotify: bool = True
    #: Topics with the writer's pl72/6s4t; none: the file alone fills the dataset.
    topics: list[str] = field(default_factory=list)
    #: Run messages are read from this many days back at every start.
    runs_since_days: float = ListenConfig.run_start_days
    workers: int = ListenConfig.workers
    retry_base: float = ListenConfig.retry_base
    retry_max: float = ListenConfig.retry_max
    drain_timeout: float = 30.0


class _Ledger:
    """Every use of the state store by the watcher, in one place.

    A watched file's key is ``watched_identity`` (path + size + mtime of the version that settled);
    its ``writer_path`` is the plain path, which ``sfi failures`` shows and ``sfi retry PATH`` finds.
    """

    def __init__(self, state: StateStore, retry_base: float, retry_max: float) -> None:
        self.state, self.retry_base, self.retry_max = state, retry_base, retry_max

    def known(self, path: str, size: int | None = None, mtime_ns: int | None = None) -> bool:
        """This version of ``path`` (the current one unless given) is ingested, queued or failed already.

        A record under the bare path counts too: that is how sfi before file identities stored watched
        files, and an upgrade must not ingest every old file again.
        """
        if size is None or mtime_ns is None:
            try:
                st = os.stat(path)
            except OSError:
                return self.state.get_file(path) is not None
            size, mtime_ns = st.st_size, st.st_mtime_ns
        return (self.state.get_file(watched_identity(path, size, mtime_ns)) is not None
                or self.state.get_file(path) is not None)

    def remember_run(self, record: RunRecord) -> None:
        """Cache the run start by job id, where ``ingest_and_record`` (and ``sfi retry``) look it up."""
        self.state.put_run_start(record.job_id, record.payload, record.source)

    def ingest(self, ingestor: Ingests, finished: FinishedFile) -> IngestResult:
        """Ingest and durably record, re-drivable from the queue by its path and job id (no wrdn)."""
        full = watched_file(self.state, finished.identity or finished.path, finished.path, finished.run.job_id,
                            finished.source)  # with the run start remember_run cached
        return ingest_and_record(ingestor, self.state, full, wrdn=None, wait_missing=0.0,
                                 retry_base=self.retry_base, retry_max=self.retry_max)

    def due(self, limit: int) -> list[FileRecord]:
        """Queued watched files whose next attempt is due."""
        return [r for r in self.state.due(time.time(), limit=limit) if r.source.startswith(SOURCE_PREFIX)]

    def retry(self, ingestor: Ingests, record: FileRecord) -> IngestResult:
        """One more attempt at a queued file, recorded under the key it was queued with."""
        return ingest_and_record(ingestor, self.state, requeued_file(self.state, record), wrdn=record.wrdn or None,
                                 wait_missing=0.0, retry_base=self.retry_base, retry_max=self.retry_max)


class RunFeed(threading.Thread):
    """Reads the writer's topics into a ``RunIndex``; ``caught_up`` is set once every partition reached its end."""

    def __init__(self, cfg: Config, topics: list[str], index: RunIndex, since_days: float) -> None:
        super().__init__(name="sfi-watch-runs", daemon=True)
        self.cfg, self.topics, self.index, self.since_days = cfg, topics, index, since_days
        self.caught_up = threading.Event()
        self._halt = threading.Event()
        self.error: str | None = None
        self._consumer: Any = self._assign()

    def _assign(self) -> Any:
        from confluent_kafka import OFFSET_END, KafkaException, TopicPartition

        from ..errors import KafkaError
        from ..kafka import make_consumer, topic_partitions

        extra: dict[str, Any] = {"enable.partition.eof": True, "fetch.wait.max.ms": 100}
        consumer = make_consumer(self.cfg, None, **extra)
        since_ms = int((time.time() - self.since_days * 86400) * 1000)
        wanted = [TopicPartition(t, p, since_ms) for t in self.topics
                  for p in topic_partitions(consumer, t, self.cfg.bootstrap or "")]
        try:
            found = consumer.offsets_for_times(wanted, timeout=10)
        except KafkaException as exc:
            consumer.close()
            raise KafkaError(f"cannot find offsets of {', '.join(self.topics)}: {exc}") from None
        for tp in found:
            if tp.offset < 0:
                tp.offset = OFFSET_END
        consumer.assign(found)
        self._parts = {(tp.topic, tp.partition) for tp in found}
        return consumer

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        from confluent_kafka import KafkaError as LibKafkaError

        from ..messages import DecodeError, decode

        at_end: set[tuple[str, int]] = set()
        started = time.monotonic()
        try:
            while not self._halt.is_set():
                msg = self._consumer.poll(0.2)
                if msg is None:
                    if not self.caught_up.is_set() and time.monotonic() - started > 30:
                        log.warning("run messages: no end-of-topic seen after 30 s; going on without")
                        self.caught_up.set()
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == LibKafkaError._PARTITION_EOF:
                        at_end.add((msg.topic(), msg.partition()))
                        if not self.caught_up.is_set() and at_end >= self._parts:
                            log.info("run messages read up to now: %d run(s) known", len(self.index))
                            self.caught_up.set()
                    else:
                        log.warning("Kafka: %s", err.str())
                    continue
                source = f"{msg.topic()}/{msg.partition()}@{msg.offset()}"
                payload = msg.value() or b""
                try:
                    message = decode(payload)
                except DecodeError as exc:
                    log.debug("ignored %s: %s", source, exc)
                    continue
                if message.schema == "pl72":
                    record = self.index.add_start(message.value, payload, source)
                    log.info("run start %s job %s run %s file %s", source, record.job_id, record.run_name,
                             record.filename)
                elif message.schema == "6s4t":
                    self.index.add_stop(message.value)
                    log.info("run stop %s job %s", source, message.value.job_id)
        except Exception as exc:  # the feed must not die silently: files would be held for ever
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("run messages: reading stopped")
            self.caught_up.set()
        finally:
            self._consumer.close()


class Watcher:
    """Settled files of the watched folders → ``Ingestor`` (worker threads) → the state store."""

    def __init__(self, cfg: Config, options: WatchOptions, *, ingestor: Ingests, state: StateStore) -> None:
        self.cfg, self.options, self.ingestor = cfg, options, ingestor
        # The folder settled each file already (quiet period + HDF5 opens it): no second settle time in the
        # ingest core, whose re-stat after reading still holds (``completion.settle``).
        for config in {id(c): c for c in (cfg, getattr(ingestor, "cfg", cfg))}.values():
            config.ingest.complete_when = "at-once"
        self.ledger = _Ledger(state, options.retry_base, options.retry_max)
        self.index = RunIndex()
        self.folder = FolderWatcher(options.directories, patterns=options.patterns,
                                    quiet_period=options.quiet_period, is_known=self.ledger.known,
                                    use_inotify=options.use_inotify, rescan_interval=options.rescan_interval,
                                    poll_interval=options.poll_interval)
        self.feed = RunFeed(cfg, options.topics, self.index, options.runs_since_days) if options.topics else None
        self._pool = ThreadPoolExecutor(max_workers=max(1, options.workers), thread_name_prefix="sfi-ingest")
        self._work: dict[str, Future[IngestResult]] = {}
        #: settled files waiting for their run messages, with the reason (logged when it changes)
        self.held: dict[str, str] = {}
        self._stop = threading.Event()
        self._last_retry_scan = 0.0
        #: outcomes of this run by status (created, exists, failed, ...), for the log and tests
        self.outcomes: dict[str, int] = {}
        self.metrics = Metrics(WATCH_METRICS)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        self.folder.start()
        if self.feed is not None:
            self.feed.start()
        log.info("watching %s (%s, quiet period %.1f s)%s", ", ".join(self.folder.directories), self.folder.mode,
                 self.options.quiet_period, f"; run messages from {', '.join(self.options.topics)}"
                 if self.options.topics else "")
        try:
            while not self._stop.is_set():
                self.folder.wait(min(self.options.poll_interval, 0.5))
                self._reap()
                for path in self.folder.poll():
                    if path not in self._work:
                        self._offer(path)
                now = time.monotonic()
                if now - self._last_retry_scan >= 1.0:
                    self._last_retry_scan = now
                    self._schedule_retries()
                    for gone in [p for p in self.held if not self.folder.is_pending(p)]:
                        del self.held[gone]  # deleted while held
        finally:
            self._drain()

    # -- decisions ----------------------------------------------------------------------------
    def _offer(self, path: str) -> None:
        finished = self._finished(path)
        if finished is None:
            return
        self.held.pop(path, None)
        self.folder.take(path)
        self._work[path] = self._pool.submit(self.ledger.ingest, self.ingestor, finished)

    def _finished(self, path: str) -> FinishedFile | None:
        """The settled file with its run, or ``None`` while it must wait (run messages not read, run going)."""
        source = SOURCE_PREFIX + os.path.dirname(path)
        version = self.folder.version(path)  # the version that settled: its identity is what gets recorded
        key = watched_identity(path, *version) if version is not None else path
        if self.feed is None:
            return FinishedFile(path, RunInfo(), source, key)
        if not self.feed.caught_up.is_set():
            self._hold(path, "reading the run messages first")
            return None
        record = self.index.find(path)
        if record is None:
            return FinishedFile(path, RunInfo(), source, key)
        if not record.stopped:
            self._hold(path, f"run {record.run_name or record.job_id} has not stopped yet (no 6s4t)")
            return None
        self.ledger.remember_run(record)
        run = RunInfo(job_id=record.job_id, run_name=record.run_name, filename=record.filename)
        return FinishedFile(path, run, f"{source} + {record.source}", key)

    def _hold(self, path: str, reason: str) -> None:
        if self.held.get(path) != reason:
            self.held[path] = reason
            log.info("holding %s: %s", path, reason)

    # -- ingestion ----------------------------------------------------------------------------
    def _reap(self) -> None:
        for path in [p for p, f in self._work.items() if f.done()]:
            future = self._work.pop(path)
            result = future.result() if future.exception() is None else None
            status = result.status if result is not None else "internal error"
            self.outcomes[status] = self.outcomes.get(status, 0) + 1
            outcome = status if status in DONE else ("queued" if result is not None and result.retryable else "failed")
            self.metrics.inc("sfi_datasets_total", outcome=outcome)
            if status in DONE:
                self.metrics.set("sfi_last_success_timestamp_seconds", time.time())
        self.metrics.set("sfi_inflight_files", len(self._work))
        self.metrics.set("sfi_watch_pending_files", self.folder.pending())
        self.metrics.set("sfi_watch_held_files", len(self.held))
        self.metrics.set("sfi_watch_runs_known", len(self.index))

    def _schedule_retries(self) -> None:
        # work is keyed by path: one ingestion per path at a time, whichever version it is for
        for record in self.ledger.due(limit=max(1, self.options.workers * 2)):
            path = record.writer_path
            if path not in self._work:
                log.info("retrying %s", path)
                self._work[path] = self._pool.submit(self.ledger.retry, self.ingestor, record)

    def health(self) -> dict[str, tuple[bool, str]]:
        """/health: the watched folders, SciCat (or the catalogue), the state store, and the run messages."""
        missing = [d for d in self.folder.directories if not os.path.isdir(d)]
        checks: dict[str, tuple[bool, str]] = {
            "folders": (not missing, f"missing: {', '.join(missing)}" if missing
                        else f"{len(self.folder.directories)} watched ({self.folder.mode})")}
        for name, probe in (("scicat", lambda: self.ingestor.sink.ping()), ("state", self.ledger.state.ping)):
            try:
                probe()
                checks[name] = (True, "reachable" if name == "scicat" else str(self.ledger.state.path))
            except Exception as exc:  # any failure is the answer, not a crash
                checks[name] = (False, str(exc) or type(exc).__name__)
        if self.feed is not None:
            ok = self.feed.is_alive() and self.feed.error is None
            checks["runs"] = (ok, self.feed.error or ("caught up" if self.feed.caught_up.is_set() else "reading"))
        return checks

    def _drain(self) -> None:
        finish_in_flight(self._work, self._reap, self.options.drain_timeout, log)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.feed is not None:
            self.feed.stop()
            self.feed.join(5)
        self.folder.close()
        log.info("stopped")
