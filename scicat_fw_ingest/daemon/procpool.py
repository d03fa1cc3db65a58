"""Ingestion in worker processes, behind the same ``ingest(...)`` call as ``Ingestor``.

Why: reading NeXus metadata (h5py) and talking HTTP (requests) are CPU work in Python, so one
process ingests at most ~100 small files per second however many threads it has (h5py even
serialises every call behind one global lock). Worker processes use the other cores. The listener
keeps Kafka, offsets and the state store in its own process; only ``(path, RunInfo)`` goes to a
worker and only the ``IngestResult`` comes back.

Workers are spawned (never forked: the parent runs librdkafka threads), ignore SIGINT (the parent
drains them on Ctrl-C) and die with the parent (kill -9): the kernel sends them SIGKILL when the
thread that started them ends (``PR_SET_PDEATHSIG``, Linux), with a once-a-second check of the
parent's pid as the portable fallback. They are also *fenced*: the listener renews a lease (a shared
timestamp) from its poll loop, and a worker sends no write to SciCat when the lease is older than
``fence_after`` (a margin below the Kafka session timeout, after which the group gives the listener's
partitions to another member): a listener that is frozen (SIGSTOP, a long GC, a VM pause) while its
workers run never writes after its partitions were taken over — the write is refused before it is
sent and the file is queued (retryable). Their log
records travel to the parent over a queue and are written by the parent's one formatter, so
``--log-format json`` holds for every line.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .._logging import ParentLogListener, sfi_level, worker_logging
from ..config import Config
from ..ingest import IngestResult, Ingestor, RunInfo, open_sink
from ..ingest.sink import Sink

_worker_ingestor: Ingestor | None = None


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)  # orphaned: the listener is gone, its offsets uncommitted; nothing to finish


#: prctl(2) option: the signal this process gets when its parent (thread) dies.
PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """SIGKILL from the kernel when the parent dies (Linux); elsewhere the pid watch alone."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # died before prctl took effect
        os._exit(0)


class _Lease:
    """The worker's view of the listener's lease: a write is allowed only while it is fresh."""

    def __init__(self, stamp: Any, fence_after: float) -> None:
        self.stamp, self.fence_after = stamp, fence_after

    def refusal(self) -> str | None:
        age = time.time() - self.stamp.value
        if age <= self.fence_after:
            return None
        return (f"this worker's listener has not renewed its lease for {age:.0f} s (limit {self.fence_after:.0f} s: "
                "it is frozen or gone and its partitions may have another owner)")


def _init_worker(cfg: Config, parent: int, log_queue: Any, level: int, lease: Any = None,
                 fence_after: float = 0.0) -> None:
    global _worker_ingestor
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    worker_logging(log_queue, level)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    sink, _ = open_sink(cfg)
    if lease is not None and fence_after > 0 and hasattr(sink, "write_fence"):
        sink.write_fence = _Lease(lease, fence_after).refusal
    _worker_ingestor = Ingestor(cfg, sink, require_roots=True)  # paths from wrdn messages


def _ingest_in_worker(path: str, run: RunInfo | None, wait_missing: float, skip_existing: bool) -> IngestResult:
    assert _worker_ingestor is not None
    return _worker_ingestor.ingest(path, run, wait_missing=wait_missing, skip_existing=skip_existing)


class ProcessIngestor:
    """``Ingestor.ingest`` run in ``processes`` worker processes; thread-safe to call."""

    def __init__(self, cfg: Config, processes: int, sink: Sink, *, fence_after: float = 0.0) -> None:
        self.cfg = cfg
        self.processes = processes
        self.sink = sink  # this process's own (health checks); each worker opens its own from cfg
        self._lock = threading.Lock()
        context = multiprocessing.get_context("spawn")
        #: the lease: renewed by the listener's poll loop (``renew_lease``); 0 disables the fence
        self.fence_after = fence_after
        self._lease = context.Value("d", time.time(), lock=False)
        self._log_queue = context.Queue()
        self._log_listener = ParentLogListener(self._log_queue)
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker,
                                   initargs=(self.cfg, os.getpid(), self._log_queue, sfi_level(), self._lease,
                                             self.fence_after))

    def renew_lease(self) -> None:
        """Called from the listener's poll loop: its workers may write to SciCat for ``fence_after`` more seconds."""
        self._lease.value = time.time()

    def ingest(self, writer_path: str, run: RunInfo | None = None, *, wait_missing: float = 0.0,
               skip_existing: bool = True) -> IngestResult:
        pool = self._pool
        try:
            return pool.submit(_ingest_in_worker, writer_path, run, wait_missing, skip_existing).result()
        except BrokenProcessPool:
            with self._lock:  # a worker died (OOM killer, crash in HDF5): start a fresh pool, retry later
                if self._pool is pool:
                    self._pool = self._new_pool()
            return IngestResult(file=writer_path, pid=None, status="failed", retryable=True,
                                error=f"{writer_path}: the ingest worker process died; will retry")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._log_listener.stop()
        self.sink.close()
