"""The file writers as ``list-status`` shows them: the snapshot types (``Worker``, ``Job``, ``Command``), the
timeouts that derive their states, and the facts the tracker keeps to derive them.

Why apart from ``tracker``: the facts are a merge (each a maximum over a total order) that the message handlers only
feed; keeping the model here lets the handlers read as "which message adds which fact", and lets a reader of the
snapshot types (the CLI's tables, the JSON) see them without the handlers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WORKER_STATES = ("idle", "writing", "unknown")
JOB_STATES = ("waiting", "writing", "done", "error", "timeout")
COMMAND_STATES = ("pending", "success", "failure", "timeout")

START_JOB = "StartJob"
SET_STOP_TIME = "SetStopTime"

#: What a writer announces when its x5f2 carries no usable update_interval (kafka-to-nexus default).
DEFAULT_UPDATE_INTERVAL_MS = 2000


@dataclass(frozen=True)
class Timeouts:
    """When silence means something went wrong; all evaluated against the snapshot's ``now``."""

    #: A worker unseen for longer than this many of its update intervals becomes ``unknown``.
    worker_intervals: float = 5.0
    #: A waiting/writing job with no news (heartbeat, answer...) for this long becomes ``timeout``:
    #: file-writer-control's rule and default (15 s); a live writer heartbeats every 2 s.
    job_silence_ms: int = 15_000
    #: A command without an answ after this long becomes ``timeout``.
    command_ms: int = 30_000


@dataclass(frozen=True)
class Worker:
    service_id: str
    host: str
    state: str
    last_seen: int | None  # ms since epoch
    file_being_written: str | None
    job_id: str | None
    update_interval_ms: int
    software: str | None


@dataclass(frozen=True)
class Job:
    job_id: str
    run_name: str | None
    filename: str | None  # as requested in pl72 (or reported by x5f2)
    file_written: str | None  # as reported by wrdn: the path on the writer host
    state: str
    start: int | None  # ms since epoch
    stop: int | None
    error: str | None
    service_id: str | None
    control_topic: str | None
    last_update: int | None


@dataclass(frozen=True)
class Command:
    command_id: str
    job_id: str | None
    action: str
    outcome: str | None
    status_code: int | None
    message: str | None
    state: str
    sent: int | None  # ms since epoch of the request (pl72/6s4t), when seen
    answered: int | None


def _ts(timestamp_ms: int | None) -> int:
    return -1 if timestamp_ms is None else timestamp_ms


class _Best:
    """The maximum of (key, value) pairs: a commutative, idempotent merge for one fact."""

    __slots__ = ("key", "value")

    def __init__(self) -> None:
        self.key: tuple[Any, ...] | None = None
        self.value: Any = None

    def offer(self, key: tuple[Any, ...], value: Any) -> None:
        # Ties on the key go to the larger repr(value), so the merge stays order-proof; the repr is made only
        # for a tie, not kept with every fact (it was a third of the tracker's memory on a 5,000-job backlog).
        if self.key is None or key > self.key or (key == self.key and repr(value) > repr(self.value)):
            self.key, self.value = key, value

    @property
    def seen(self) -> bool:
        return self.key is not None


def _offer_text(best: _Best, value: str | None, timestamp_ms: int | None, rank: int = 0) -> None:
    """Non-empty beats empty, then the higher source rank, then the newer message."""
    if value:
        best.offer((rank, _ts(timestamp_ms)), value)


@dataclass(slots=True)
class _JobFacts:
    run_name: _Best = field(default_factory=_Best)
    filename: _Best = field(default_factory=_Best)
    start: _Best = field(default_factory=_Best)
    stop: _Best = field(default_factory=_Best)
    service_id: _Best = field(default_factory=_Best)
    control_topic: _Best = field(default_factory=_Best)
    #: The newest start outcome: (ts, failed) -> error text or None. An answ(StartJob) or an x5f2
    #: writing this job; newest wins, so a job another writer took over after a failure is writing.
    launch: _Best = field(default_factory=_Best)
    finished: _Best = field(default_factory=_Best)  # (error_encountered, file_name, message) of wrdn
    finished_at: int = -1
    last_update: int = -1


@dataclass(slots=True)
class _WorkerFacts:
    status: _Best = field(default_factory=_Best)  # (state, job_id, file, interval, host, software)
    last_seen: int = -1


@dataclass(slots=True)
class _CommandFacts:
    job_id: _Best = field(default_factory=_Best)
    action: _Best = field(default_factory=_Best)
    sent: int | None = None
    answer: _Best = field(default_factory=_Best)  # (outcome, status_code, message, answered)
