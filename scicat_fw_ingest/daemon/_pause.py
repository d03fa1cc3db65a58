"""What the listener does while its state store cannot record outcomes (disk full, locked by another process).

Why: an offset may be committed only after the outcome of its message is durable. When the store
refuses a write the listener must neither commit nor forget: it pauses consumption (one ERROR
naming the state file and the cause), holds the messages it read and the outcomes it could not
write, probes the store every few seconds, writes what it holds once it can, and resumes.
A collaborator of ``Listener`` (listen.py), given callables for what it needs of the listener and consumer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..ingest import IngestResult
from ..messages import DecodeError, decode
from .metrics import Metrics
from .record import OutcomeNotRecorded, record_outcome
from .state import StateError, StateStore

if TYPE_CHECKING:
    from confluent_kafka import Message as KafkaMessage

log = logging.getLogger("sfi.listen")

#: Seconds between attempts to write held outcomes while consumption is paused.
PROBE_INTERVAL = 2.0


@dataclass
class _Work:
    """One file being ingested, and the offsets (possibly several duplicate wrdns) waiting on it."""

    key: str
    writer_path: str
    wrdn: bytes
    source: str
    offsets: list[tuple[tuple[str, int], int]] = field(default_factory=list)
    future: Future[IngestResult] | None = None
    #: Set when the outcome is known but could not be written (held until the store is writable).
    unrecorded: IngestResult | None = None
    #: Not sent to a worker before this ``time.monotonic()`` (a taken-over partition's earlier message).
    not_before: float = 0.0
    wait_missing: float = 0.0
    #: A message of a partition this listener took over: the dataset is verified again later.
    takeover: bool = False
    #: A verification (``verify_at`` due): a look first, the full ingest only when the datablock is missing.
    verify: bool = False
    pid: str | None = None
    #: Set by the worker: the outcome owes more work (queued for a retry, or a verification is due), so the
    #: offsets stay uncommitted — if this listener dies, the partition's next owner reads them again.
    hold: bool = False


class StatePause:
    """The listener's pause while the state store refuses writes: what is held, and how it is written later.

    The listener calls ``pause`` on a refused write, ``hold`` / ``hold_unrecorded`` for what it could not
    handle or record, ``try_resume`` when ``probe_due`` (every ``PROBE_INTERVAL`` seconds while paused), and
    ``forget`` for revoked partitions. What it is given is all it touches: the store and metrics, the
    consumer's pause and resume, the listener's message handler, a way to send a file to the workers again,
    and ``settle`` (a recorded outcome: queued -> its offsets wait for the retry, else they are done).
    """

    def __init__(self, state: StateStore, metrics: Metrics, *, pause_consumption: Callable[[], None],
                 resume_consumption: Callable[[], None], handle: Callable[[KafkaMessage], None],
                 resubmit: Callable[[_Work], None], settle: Callable[[_Work, str], None], retry_base: float,
                 retry_max: float, missing_deadline: float) -> None:
        self.state, self.metrics = state, metrics
        self._pause_consumption, self._resume_consumption = pause_consumption, resume_consumption
        self._handle, self._resubmit, self._settle = handle, resubmit, settle
        self.retry_base, self.retry_max, self.missing_deadline = retry_base, retry_max, missing_deadline
        self.paused_since: float | None = None
        #: messages read but not yet handled (store not writable)
        self.held: list[KafkaMessage] = []
        #: files whose outcome (or whose processing) could not be written
        self.unrecorded: list[_Work] = []
        self.last_probe = 0.0

    @property
    def paused(self) -> bool:
        return self.paused_since is not None

    @property
    def outstanding(self) -> int:
        """Outcomes and messages held, not recorded (their offsets stay uncommitted)."""
        return len(self.unrecorded) + len(self.held)

    def probe_due(self, now: float) -> bool:
        """While paused, every ``PROBE_INTERVAL`` seconds: time to ``try_resume``."""
        if self.paused_since is None or now - self.last_probe < PROBE_INTERVAL:
            return False
        self.last_probe = now
        return True

    def pause(self, cause: BaseException) -> None:
        if self.paused_since is not None:
            return
        self.paused_since = time.monotonic()
        self.last_probe = time.monotonic()
        self.metrics.set("sfi_consumption_paused", 1)
        self._pause_consumption()
        reason = cause.cause if isinstance(cause, OutcomeNotRecorded) else cause
        reason = getattr(reason, "reason", None) or reason
        log.error("cannot record outcomes in the state store %s (%s): consumption paused, offsets not committed; "
                  "resuming when it is writable again", self.state.path, reason)

    def hold(self, msg: KafkaMessage) -> None:
        """A message read while paused: handled once the store is writable."""
        self.held.append(msg)

    def hold_unrecorded(self, work: _Work, cause: BaseException) -> None:
        """A file whose outcome (``work.unrecorded``) or processing could not be recorded: pause, write it later."""
        self.unrecorded.append(work)
        self.pause(cause)

    def forget(self, tps: Collection[tuple[str, int]]) -> None:
        """Partitions revoked: what was held for them is the new owner's to read again."""
        self.held = [m for m in self.held if (m.topic(), m.partition()) not in tps]
        for work in self.unrecorded:
            work.offsets = [(tp, o) for tp, o in work.offsets if tp not in tps]
        self.unrecorded = [w for w in self.unrecorded if w.offsets]

    def try_resume(self, *, resume_consumer: bool = True) -> None:
        """Write the held outcomes, handle the held messages; resume consumption when all went in."""
        try:
            while self.unrecorded:
                work = self.unrecorded[0]
                if work.unrecorded is not None:
                    status = record_outcome(self.state, work.key, work.unrecorded, job_id=_job_of(work),
                                            writer_path=work.writer_path, source=work.source, wrdn=work.wrdn,
                                            retry_base=self.retry_base, retry_max=self.retry_max,
                                            missing_deadline=self.missing_deadline)
                    self.unrecorded.pop(0)
                    self._settle(work, status)  # queued: still owed, the offsets wait for the retry
                else:  # not even processed: ingest again (idempotent) once writable
                    self.state.put_meta_probe()
                    self.unrecorded.pop(0)
                    work.future = None
                    self._resubmit(work)
            self.state.put_meta_probe()
            while self.held:
                msg = self.held.pop(0)
                if not self.handle_or_hold(msg, front=True):
                    return
        except (StateError, OutcomeNotRecorded):
            return  # still not writable: stay paused, no new log line
        if not resume_consumer:
            return
        waited = time.monotonic() - (self.paused_since or time.monotonic())
        self.paused_since = None
        self.metrics.set("sfi_consumption_paused", 0)
        self._resume_consumption()
        log.info("state store %s writable again after %.0f s: consumption resumed", self.state.path, waited)

    def handle_or_hold(self, msg: KafkaMessage, *, front: bool = False) -> bool:
        """Handle ``msg``; when the store refuses, hold it (in front: it was first) and pause."""
        try:
            self._handle(msg)
            return True
        except StateError as exc:
            self.held.insert(0, msg) if front else self.held.append(msg)
            self.pause(exc)
            return False


def _job_of(work: _Work) -> str | None:
    try:
        return decode(work.wrdn, expect="wrdn").value.job_id or None
    except DecodeError:
        return None
