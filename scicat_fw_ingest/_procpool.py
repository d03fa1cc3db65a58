"""Ingestion in worker processes, behind the same ``ingest(...)`` call as ``Ingestor``.

Why: reading NeXus metadata (h5py) and talking HTTP (requests) are CPU work in Python, so one
process ingests at most ~100 small files per second however many threads it has (h5py even
serialises every call behind one global lock). Worker processes use the other cores. The listener
keeps Kafka, offsets and the state store in its own process; only ``(path, RunInfo)`` goes to a
worker and only the ``IngestResult`` comes back.

Workers are spawned (never forked: the parent runs librdkafka threads), ignore SIGINT (the parent
drains them on Ctrl-C) and exit by themselves when the parent disappears (kill -9). Their log
records travel to the parent over a queue and are written by the parent's one formatter, so
``--log-format json`` holds for every line.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ._logging import ParentLogListener, sfi_level, worker_logging
from .config import Config
from .ingest import IngestResult, Ingestor, RunInfo, open_sink

_worker_ingestor: Ingestor | None = None


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)  # orphaned: the listener is gone, its offsets uncommitted; nothing to finish


def _init_worker(cfg: Config, parent: int, log_queue: Any, level: int) -> None:
    global _worker_ingestor
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker_logging(log_queue, level)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    sink, _ = open_sink(cfg)
    _worker_ingestor = Ingestor(cfg, sink, require_roots=True)  # paths from wrdn messages


def _ingest_in_worker(path: str, run: RunInfo | None, wait_missing: float, skip_existing: bool) -> IngestResult:
    assert _worker_ingestor is not None
    return _worker_ingestor.ingest(path, run, wait_missing=wait_missing, skip_existing=skip_existing)


class ProcessIngestor:
    """``Ingestor.ingest`` run in ``processes`` worker processes; thread-safe to call."""

    def __init__(self, cfg: Config, processes: int, sink: Any) -> None:
        self.cfg = cfg
        self.processes = processes
        self.sink = sink  # this process's own (health checks); each worker opens its own from cfg
        self._lock = threading.Lock()
        context = multiprocessing.get_context("spawn")
        self._log_queue = context.Queue()
        self._log_listener = ParentLogListener(self._log_queue)
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker,
                                   initargs=(self.cfg, os.getpid(), self._log_queue, sfi_level()))

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
