"""A batch of files through the ingest core on every core, streamed, and stoppable with Ctrl-C.

Why worker processes: reading NeXus metadata (h5py, behind one global lock) and talking HTTP are
CPU work in Python, so threads of one process ingest on one core whatever ``-j`` says. Here each
file goes to one of ``processes`` spawned worker processes (as ``sfi listen`` does, ``_procpool``).

Why streamed: a backfill of 100,000 files must not hold 100,000 results. At most ``2 × processes``
files are in flight; each result goes to ``on_result`` as it arrives and only counts (and the
failed files' reasons, for the summary) are kept.

Why Ctrl-C is handled here: the operator wants the batch to stop *now*, know what was done and
re-run the rest later. Workers ignore SIGINT (the terminal sends it to the whole process group);
on the first Ctrl-C no new file starts, files in flight get ``GRACE`` seconds to finish and are
then abandoned (their SciCat writes are idempotent: a re-run completes them), the workers are
killed and ``BatchOutcome.interrupted`` is set. A second Ctrl-C stops waiting at once.

Small files skip the separate existence lookup (``LOOKUP_FIRST_BYTES``): the upsert finds an existing
dataset itself, so a new dataset costs the upsert's requests only.

A wrong password fails every file the same way; after ``AUTH_STOP`` consecutive files refused
with 401 the batch stops (``BatchOutcome.auth_error``) instead of trying every remaining file.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..config import Config
from ..errors import SfiError
from ._core import Ingestor
from .run import IngestResult

GRACE = 1.5
AUTH_STOP = 3
#: Files at least this big are looked up in SciCat before their checksum (one request saves seconds of
#: hashing on a re-run); smaller ones go straight to the idempotent upsert, which finds an existing
#: dataset itself, so a new dataset costs no lookup of its own.
LOOKUP_FIRST_BYTES = 64 * 1024 * 1024

_worker: Ingestor | None = None
_auth_refused = False


@dataclass
class BatchOutcome:
    """What a batch did: counts per status, the failed files, and why it stopped early (if it did)."""

    total: int
    counts: Counter[str] = field(default_factory=Counter)
    failed: list[tuple[str, bool, str]] = field(default_factory=list)  # (file, retryable, reason)
    interrupted: bool = False
    auth_error: str | None = None
    #: Why the batch stopped early other than Ctrl-C or refused credentials (the worker pool broke).
    stopped: str | None = None
    #: preview outcome ("created", "exists", "none", "failed" ...) -> files
    previews: Counter[str] = field(default_factory=Counter)

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    @property
    def not_done(self) -> int:
        return self.total - self.done

    def add(self, result: IngestResult) -> None:
        self.counts[result.status] += 1
        if result.preview:
            self.previews[result.preview] += 1
        if result.status in ("failed", "rejected"):
            self.failed.append((result.file, result.retryable, result.error or ""))


class _AuthWatch:
    """The SciCat client as the ingest core sees it, noting a 401 (credentials refused) on the way."""

    def __init__(self, sink: Any) -> None:
        self._sink = sink

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._sink, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            global _auth_refused
            try:
                return attr(*args, **kwargs)
            except SfiError as exc:
                # 401, or ScicatAuthError (a 403 after expiry on backend 4.5.0, a refused static token)
                if getattr(exc, "status", None) == 401 or getattr(exc, "auth", False):
                    _auth_refused = True
                raise

        return call


def _init_worker(cfg: Config, dry_run: bool, parent: int, explicit_paths: list[str] | None = None) -> None:
    global _worker
    from ..daemon.procpool import _watch_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    sink = None
    if not dry_run:
        from ..scicat import ScicatClient

        sink = _AuthWatch(ScicatClient.from_config(cfg.scicat))
    _worker = Ingestor(cfg, sink, explicit_paths=explicit_paths)  # what the operator named is a data root


def _ingest_one(path: str) -> tuple[IngestResult, bool]:
    global _auth_refused
    assert _worker is not None
    _auth_refused = False
    try:
        big = os.path.getsize(_worker.local_path(path)) >= LOOKUP_FIRST_BYTES
    except OSError:
        big = False  # the ingest core reports the missing file
    result = _worker.ingest(path, skip_existing=big)
    return result, _auth_refused and result.status == "failed"


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Spawned children inherit SIG_IGN, so a Ctrl-C while they start never prints their traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Batch:
    """Ingest ``files`` in ``processes`` worker processes (or here, for one process or one file)."""

    def __init__(self, cfg: Config, *, processes: int, dry_run: bool,
                 explicit_paths: list[str] | None = None) -> None:
        self.cfg = cfg
        self.explicit_paths = explicit_paths
        self.processes = max(1, processes)
        self.dry_run = dry_run

    def run(self, files: Sequence[str], on_result: Callable[[IngestResult], None]) -> BatchOutcome:
        outcome = BatchOutcome(total=len(files))
        if self.processes == 1 or len(files) <= 1:
            self._run_here(files, on_result, outcome)
        else:
            self._run_pool(files, on_result, outcome)
        return outcome

    # -- in this process --------------------------------------------------------------------------
    def _run_here(self, files: Sequence[str], on_result: Callable[[IngestResult], None],
                  outcome: BatchOutcome) -> None:
        global _worker
        own = _worker is None
        sink: _AuthWatch | None = None  # the client this call opens (and closes), if it builds the ingestor
        if own:
            if not self.dry_run:
                from ..scicat import ScicatClient

                sink = _AuthWatch(ScicatClient.from_config(self.cfg.scicat))
            _worker = Ingestor(self.cfg, sink, explicit_paths=self.explicit_paths)
        try:
            refused = 0
            for path in files:
                result, auth = _ingest_one(path)
                outcome.add(result)
                on_result(result)
                refused = refused + 1 if auth else 0
                if refused >= AUTH_STOP:
                    outcome.auth_error = result.error
                    return
        except KeyboardInterrupt:
            outcome.interrupted = True  # the file in flight is abandoned: its SciCat writes are idempotent
        finally:
            if own:
                _worker = None
                if sink is not None:
                    sink.close()

    # -- in worker processes ----------------------------------------------------------------------
    def _run_pool(self, files: Sequence[str], on_result: Callable[[IngestResult], None],
                  outcome: BatchOutcome) -> None:
        processes = min(self.processes, len(files))
        pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                                   initargs=(self.cfg, self.dry_run, os.getpid(), self.explicit_paths))
        todo = iter(files)
        running: dict[Future[tuple[IngestResult, bool]], str] = {}
        refused = 0

        def fill() -> None:
            while len(running) < 2 * processes:
                path = next(todo, None)
                if path is None:
                    return
                try:
                    running[pool.submit(_ingest_one, path)] = path
                except BrokenProcessPool:  # a worker was killed (OOM killer, crash in HDF5): stop cleanly
                    outcome.stopped = "a worker process died (killed by the system, or a crash in HDF5)"
                    return

        def collect(done: set[Future[tuple[IngestResult, bool]]]) -> None:
            nonlocal refused
            for future in done:
                path = running.pop(future)
                try:
                    result, auth = future.result()
                except Exception as exc:  # a worker died (OOM killer, crash in HDF5): that file failed
                    result, auth = IngestResult(path, None, "failed", retryable=True,
                                                error=f"{path}: the ingest worker process died ({exc})"), False
                outcome.add(result)
                on_result(result)
                refused = refused + 1 if auth else 0
                if refused >= AUTH_STOP and outcome.auth_error is None:
                    outcome.auth_error = result.error

        try:
            with _sigint_ignored():
                fill()
            while running and outcome.auth_error is None and outcome.stopped is None:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                collect(done)
                fill()
        except KeyboardInterrupt:
            outcome.interrupted = True
            for future in list(running):
                if future.cancel():
                    del running[future]
            deadline = time.monotonic() + GRACE
            try:
                while running and time.monotonic() < deadline:
                    done, _ = wait(running, timeout=max(0.0, deadline - time.monotonic()),
                                   return_when=FIRST_COMPLETED)
                    collect(done)
            except KeyboardInterrupt:
                pass  # a second Ctrl-C: stop waiting now
        finally:
            _stop(pool, kill=bool(running) or outcome.interrupted or outcome.auth_error is not None
                  or outcome.stopped is not None)


def _stop(pool: ProcessPoolExecutor, *, kill: bool) -> None:
    """Shut the pool down; with ``kill`` the workers are killed first (their files are abandoned)."""
    if kill:
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            try:
                process.kill()
            except (OSError, ValueError, AttributeError):
                pass
    try:
        pool.shutdown(wait=not kill, cancel_futures=True)
    except Exception:  # a broken pool has nothing left to shut down
        pass


__all__ = ["AUTH_STOP", "GRACE", "Batch", "BatchOutcome"]
