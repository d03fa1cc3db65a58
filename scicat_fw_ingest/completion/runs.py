"""Run starts (pl72) and stops (6s4t) of a writer that sends no wrdn, matched to files by name.

Why by name: the folder only shows a file; the writer's messages say which run it belongs to. A run
start names its file (``filename``; its base name is compared, the writer's directory is not ours),
and SuperMuSR's nexus-writer names the file after the run (``<run_name>.nxs``) whatever ``filename``
says, so the stem is compared with ``run_name`` too. The newest run start for a name wins (a re-used
name is a new run). A 6s4t marks its run (by job id, else run name) stopped.

Pure and thread-safe: the Kafka reading lives in ``watch``; tests feed decoded messages directly.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["RunIndex", "RunRecord"]


@dataclass
class RunRecord:
    """One run as the messages described it; ``payload`` is the pl72 as received (for the state store)."""

    job_id: str
    run_name: str | None
    filename: str | None
    payload: bytes
    source: str
    stopped: bool = False


class RunIndex:
    """File name → run, fed with decoded pl72/6s4t values."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_job: dict[str, RunRecord] = {}
        self._by_name: dict[str, RunRecord] = {}
        self._by_run_name: dict[str, RunRecord] = {}
        self._early_stops: set[str] = set()

    def add_start(self, value: Any, payload: bytes, source: str) -> RunRecord:
        """Record a decoded pl72 (``RunStartInfo``)."""
        job_id = _text(value.job_id) or ""
        record = RunRecord(job_id, _text(value.run_name), _text(value.filename), payload, source)
        with self._lock:
            record.stopped = job_id in self._early_stops
            self._by_job[job_id] = record
            if record.filename:
                self._by_name[os.path.basename(record.filename.replace("\\", "/"))] = record
            if record.run_name:
                self._by_run_name[record.run_name] = record
        return record

    def add_stop(self, value: Any) -> None:
        """Record a decoded 6s4t (``RunStopInfo``): its run is stopped (also when the start comes later)."""
        job_id, run_name = _text(value.job_id), _text(value.run_name)
        with self._lock:
            record = self._by_job.get(job_id or "") or (self._by_run_name.get(run_name) if run_name else None)
            if record is not None:
                record.stopped = True
            elif job_id:
                self._early_stops.add(job_id)

    def find(self, path: str) -> RunRecord | None:
        """The run that wrote ``path``: by base name, else by stem equal to a run name."""
        name = os.path.basename(path)
        with self._lock:
            return self._by_name.get(name) or self._by_run_name.get(os.path.splitext(name)[0])

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_job)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text or None
