"""One finished file: ingest it and durably record what happened (done, queued with backoff, failed, rejected).

Why its own module: the listener, ``sfi retry --now`` and a folder watcher share this step unchanged.
What is stored and logged is scrubbed of secrets first (a server's error may echo a token).
A state store that cannot take the outcome raises ``OutcomeNotRecorded`` carrying the result, so the
caller can keep the message uncommitted and record the outcome later without ingesting again.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sized

from .._logging import scrub
from ..completion import FinishedFile
from ..completion.wrdn import cached_run_start, run_info_for  # run_info_for re-exported (wrdn completion)
from ..config import Config, IngestConfig, ListenConfig
from ..errors import SfiError
from ..ingest import IngestResult, RunInfo
from ..ingest.sink import Ingests
from .state import DONE, FAILED, QUEUED, REJECTED, FileRecord, StateError, StateStore

log = logging.getLogger("sfi.listen")


class OutcomeNotRecorded(SfiError):
    """The file was processed but its outcome could not be written to the state store."""

    def __init__(self, result: IngestResult | None, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.result = result
        self.cause = cause


#: Who declared a watched file finished, as its run's ``service_id`` when no run start names one (for a file
#: announced by a wrdn, the writer's service id is there).
WATCH_SERVICE_ID = "sfi-watch"


def wrdn_file(state: StateStore, key: str, writer_path: str, wrdn: bytes | None, source: str) -> FinishedFile:
    """A file a wrdn announced (``sfi listen``), with what Kafka said about it (the wrdn, its cached run start).

    Raises ``OutcomeNotRecorded`` (without a result) when the store cannot be read.
    """
    try:
        run = run_info_for(state, wrdn)
    except StateError as exc:
        raise OutcomeNotRecorded(None, exc) from None
    return FinishedFile(writer_path, run, source, key)


def watched_file(state: StateStore, key: str, path: str, job_id: str | None, source: str) -> FinishedFile:
    """A file found settled in a watched folder (``sfi watch``), with its run start when one was matched.

    What is recorded of it (path, job id) is all a retry needs: the run start is cached by job id. Raises
    ``OutcomeNotRecorded`` (without a result) when the store cannot be read.
    """
    try:
        run_start = cached_run_start(state, job_id or None)
    except StateError as exc:
        raise OutcomeNotRecorded(None, exc) from None
    run = RunInfo.from_messages(run_start, None)
    run.job_id = run.job_id or job_id or None
    run.service_id = run.service_id or WATCH_SERVICE_ID
    run.filename = path  # the file itself, as a wrdn would name it
    return FinishedFile(path, run, source, key)


def requeued_file(state: StateStore, record: FileRecord) -> FinishedFile:
    """A file of the retry queue, as it was first seen: by its wrdn, or (watched) by its path and job id."""
    if record.wrdn:
        return wrdn_file(state, record.file_key, record.writer_path, record.wrdn, record.source)
    return watched_file(state, record.file_key, record.writer_path, record.job_id, record.source)


def ingest_and_record(ingestor: Ingests, state: StateStore, finished: FinishedFile, *, wrdn: bytes | None,
                      wait_missing: float, retry_base: float = ListenConfig.retry_base,
                      retry_max: float = ListenConfig.retry_max,
                      missing_deadline: float = IngestConfig.missing_hours * 3600) -> IngestResult:
    """Ingest one finished file and durably record its outcome under its identity (``state.file_identity``).

    ``wrdn``: the writer's message that announced it, kept for the retry queue (``None`` for a watched file,
    re-driven by path and job id). Raises ``OutcomeNotRecorded`` when the state store fails.
    """
    key, path = finished.identity or finished.path, finished.path
    try:
        # skip_existing=False: the state store already knows what is done, and upsert looks the pid up
        result = ingestor.ingest(path, finished.run, wait_missing=wait_missing, skip_existing=False)
    except Exception as exc:  # a bug must not lose the file: queue it like a retryable failure
        log.exception("unexpected error ingesting %s", path)
        result = IngestResult(file=path, pid=None, status="failed", error=f"internal error: {exc}", retryable=True)
    record_outcome(state, key, result, job_id=finished.run.job_id, writer_path=path, source=finished.source,
                   wrdn=wrdn, retry_base=retry_base, retry_max=retry_max, missing_deadline=missing_deadline)
    return result


class _AuthLatch:
    """Says "SciCat token expired or refused" once while it lasts, and once when SciCat accepts again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.since: float | None = None
        self.queued = 0

    def refused(self, error: str) -> None:
        with self._lock:
            first, self.queued = self.since is None, self.queued + 1
            if first:
                self.since = time.time()
        if first:
            log.error("%s; files are queued, not failed, until SciCat accepts the credentials again", error)

    def accepted(self) -> None:
        with self._lock:
            was, queued, self.since, self.queued = self.since, self.queued, None, 0
        if was is not None:
            log.info("SciCat accepts the credentials again after %s (%d file attempt(s) were queued meanwhile)",
                     _duration(time.time() - was), queued)


AUTH_LATCH = _AuthLatch()


def record_outcome(state: StateStore, key: str, result: IngestResult, *, job_id: str | None, writer_path: str,
                   source: str, wrdn: bytes | None, retry_base: float = ListenConfig.retry_base,
                   retry_max: float = ListenConfig.retry_max,
                   missing_deadline: float = IngestConfig.missing_hours * 3600) -> str:
    """Write ``result`` to the state (status returned); ``OutcomeNotRecorded`` when the store refuses."""
    error = scrub(result.error) if result.error else None

    def write(status: str, *, error: str | None = None, next_attempt: float | None = None) -> None:
        state.record_file(key, job_id=job_id, writer_path=writer_path, status=status, source=source, wrdn=wrdn,
                          pid=result.pid, error=error, next_attempt=next_attempt)

    try:
        previous = state.get_file(key)
        attempts = (previous.attempts if previous else 0) + 1
        first_seen = previous.first_seen if previous and previous.first_seen and previous.status == QUEUED else None
        waited = time.time() - first_seen if first_seen else 0.0
        if result.status in DONE:
            AUTH_LATCH.accepted()
            write(result.status)
            log.info("%s %s -> pid %s", result.status, writer_path, result.pid)
            return result.status
        if result.status == REJECTED:
            write(REJECTED, error=error)
            log.warning("%s", error)
            return REJECTED
        if result.retryable and result.file_problem and waited >= missing_deadline:
            error = f"{error} (gave up after {_duration(waited)}: [ingest] missing_hours)"
            result.retryable = False
        if result.retryable:
            delay = min(retry_max, retry_base * 2 ** (attempts - 1)) * random.uniform(0.8, 1.2)
            write(QUEUED, error=error, next_attempt=time.time() + delay)
            if result.auth:  # one line while the credentials are refused, not one per file
                AUTH_LATCH.refused(error or "SciCat refused the credentials")
                log.debug("will retry %s in %.0f s (attempt %d): %s", writer_path, delay, attempts, error)
            else:
                log.warning("will retry %s in %.0f s (attempt %d): %s", writer_path, delay, attempts, error)
            return QUEUED
        write(FAILED, error=error)
        log.error("failed %s: %s", writer_path, error)
        return FAILED
    except StateError as exc:
        raise OutcomeNotRecorded(result, exc) from None


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def retry_now(cfg: Config, state: StateStore) -> list[IngestResult]:
    """``sfi retry --now``: ingest every due file of the queue in this process."""
    from ..ingest import Ingestor, open_sink

    sink, _ = open_sink(cfg)
    ingestor = Ingestor(cfg, sink, require_roots=True)  # the paths came from wrdn messages
    try:
        return [ingest_and_record(ingestor, state, requeued_file(state, r), wrdn=r.wrdn or None, wait_missing=0.0,
                                  missing_deadline=cfg.ingest.missing_hours * 3600)
                for r in state.due(time.time(), limit=1_000_000)]
    finally:
        sink.close()


def finish_in_flight(work: Sized, reap: Callable[[], None], timeout: float, logger: logging.Logger) -> None:
    """At a clean stop: reap finished files until none is in flight or ``timeout`` passes (listen and watch).

    Files still running then are abandoned, not lost: their outcome is not recorded, so they are processed
    again at the next start (SciCat writes are idempotent).
    """
    logger.info("stopping: finishing %d file(s) in flight", len(work))
    deadline = time.monotonic() + timeout
    while len(work) and time.monotonic() < deadline:
        time.sleep(0.05)
        reap()
