"""The listener's files in flight: sent to the worker pool, ingested and recorded, reaped, retried and verified.

Why apart from the Kafka loop (``listen``): what happens to one finished file — the ingest and its durable
outcome, a verification by looking only, the retry queue's due files of this listener's partitions — needs
the store, the ingestor and the partition bookkeeping (``_partitions``), never the consumer. The loop hands
files in (``submit``) and calls ``reap`` and ``schedule_retries``; an outcome that could not be recorded goes
to ``on_unrecorded`` (the state pause).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ..errors import SfiError
from ..ingest import IngestResult
from ..ingest.sink import Ingests
from ._partitions import PartitionBook
from ._pause import _Work
from .backlog import publish_in_memory
from .metrics import Metrics
from .record import OutcomeNotRecorded, ingest_and_record, wrdn_file
from .state import DONE, QUEUED, REJECTED, StateError, StateStore

log = logging.getLogger("sfi.listen")


class FileWork:
    """Files being ingested (``work``, by file key) on a pool of ``workers`` threads."""

    def __init__(self, ingestor: Ingests, state: StateStore, metrics: Metrics, book: PartitionBook, *,
                 on_unrecorded: Callable[[_Work, BaseException], None], workers: int, retry_base: float,
                 retry_max: float, missing_deadline: float, verify_after: float) -> None:
        self.ingestor, self.state, self.metrics, self._book = ingestor, state, metrics, book
        self._on_unrecorded = on_unrecorded
        self.workers, self.retry_base, self.retry_max = workers, retry_base, retry_max
        self.missing_deadline, self.verify_after = missing_deadline, verify_after
        self.work: dict[str, _Work] = {}
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="sfi-ingest")

    def submit(self, work: _Work, *, wait_missing: float) -> None:
        self.work[work.key] = work
        self.metrics.set("sfi_inflight_files", len(self.work))
        work.wait_missing = wait_missing
        if work.not_before > time.monotonic():
            return  # sent by submit_deferred once the takeover fence is over
        work.future = self.pool.submit(self._ingest, work, wait_missing)

    def submit_deferred(self, now: float) -> None:
        for work in [w for w in self.work.values() if w.future is None and w.not_before <= now]:
            work.future = self.pool.submit(self._ingest, work, work.wait_missing)

    def _ingest(self, work: _Work, wait_missing: float) -> IngestResult:
        """Worker thread: ingest one file and durably record what happened (``OutcomeNotRecorded`` if not)."""
        if work.verify:
            looked = self._converge(work)
            if looked is not None:
                return looked
        finished = wrdn_file(self.state, work.key, work.writer_path, work.wrdn, work.source)
        result = ingest_and_record(self.ingestor, self.state, finished, wrdn=work.wrdn, wait_missing=wait_missing,
                                   retry_base=self.retry_base, retry_max=self.retry_max,
                                   missing_deadline=self.missing_deadline)
        work.hold = result.status not in (*DONE, REJECTED) and result.retryable
        if result.status in DONE:
            self.metrics.set("sfi_last_success_timestamp_seconds", time.time())
            # An unknown datablock outcome or a takeover: a POST may still be stored later than any wait.
            verify = result.verify or work.takeover
            try:
                if verify or self.verify_owed(work.key):
                    at = time.time() + self.verify_after if verify else None
                    self.state.schedule_verify(work.key, at)
                    if verify:
                        log.info("will verify %s (pid %s) in %.0f s: %s", work.writer_path, result.pid,
                                 self.verify_after,
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

    def reap(self) -> None:
        """Mark the offsets of finished work as done — only when its outcome was recorded."""
        for key in [k for k, w in self.work.items() if w.future is not None and w.future.done()]:
            work = self.work.pop(key)
            exc = work.future.exception() if work.future is not None and not work.future.cancelled() else None
            if work.future is not None and work.future.cancelled():
                continue  # shutting down: the offsets stay in flight, the message is read again
            if exc is not None:
                if not isinstance(exc, OutcomeNotRecorded):
                    log.error("ingesting %s: %s: %s", work.writer_path, type(exc).__name__, exc)
                work.unrecorded = exc.result if isinstance(exc, OutcomeNotRecorded) else None
                self._on_unrecorded(work, exc)
                continue
            if work.hold:  # queued or to be verified: the offsets wait (the group owns the owed work)
                held = [(tp, o) for tp, o in work.offsets if tp in self._book.assignment]
                if held:
                    self._book.queued.setdefault(key, []).extend(held)
                continue
            for tp, offset in [*work.offsets, *self._book.queued.pop(key, [])]:
                self._book.offsets.done(tp, offset)
        publish_in_memory(self.metrics, self.work.values())  # queued in memory, ingesting, and their sum

    def schedule_retries(self) -> None:
        now = time.time()
        room = max(1, self.workers * 2)
        due = [(r, False) for r in self.state.due(now, limit=200)]
        due += [(r, True) for r in self.state.due_verify(now, limit=200)]
        for record, verify in due:
            if room <= 0:
                break
            if record.file_key in self.work:
                continue
            if record.file_key not in self._book.queued and not self._book.owns(record.source):
                continue  # its partition is another listener's now: that one reads the wrdn again
            room -= 1
            if verify:
                log.info("verifying %s (pid %s)", record.writer_path, record.pid)
            else:
                log.info("retrying %s (attempt %d)", record.writer_path, record.attempts + 1)
            work = _Work(record.file_key, record.writer_path, record.wrdn, record.source,
                         self._book.queued.pop(record.file_key, []))
            work.verify, work.pid = verify and record.status in DONE, record.pid
            self.submit(work, wait_missing=0.0)
        self.metrics.set("sfi_retry_queue_depth", self.state.count(QUEUED))

    def verify_owed(self, key: str) -> bool:
        record = self.state.get_file(key)
        return record is not None and record.verify_at is not None
