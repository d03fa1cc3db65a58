"""What the listener does while its state store cannot record outcomes (disk full, locked by another process).

Why: an offset may be committed only after the outcome of its message is durable. When the store
refuses a write the listener must neither commit nor forget: it pauses consumption (one ERROR
naming the state file and the cause), holds the messages it read and the outcomes it could not
write, probes the store every few seconds, writes what it holds once it can, and resumes.
A mixin of ``Listener`` (listen.py): it uses the listener's consumer, state, offsets and pool.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException, Message as KafkaMessage

from .record import OutcomeNotRecorded, record_outcome
from ..ingest import IngestResult
from ..messages import DecodeError, decode
from .state import QUEUED, StateError

log = logging.getLogger("sfi.listen")


@dataclass
class _Work:
    """One file being ingested, and the offsets (possibly several duplicate wrdns) waiting on it."""

    key: str
    writer_path: str
    wrdn: bytes
    source: str
    offsets: list[tuple[tuple[str, int], int]] = field(default_factory=list)
    future: Future | None = None
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


class PauseOnStateErrors:
    """``_pause`` on a refused write; ``_try_resume`` (called every few seconds while paused) undoes it."""

    _paused_since: float | None
    _held: list[KafkaMessage]
    _unrecorded: list[_Work]
    _last_probe: float
    _consumer: Any
    state: Any
    options: Any
    metrics: Any
    _offsets: Any
    _queued: dict[str, list[tuple[tuple[str, int], int]]]  # Listener's: offsets held for owed work
    _handle: Callable[[KafkaMessage], None]  # Listener's
    _submit: Callable[..., None]  # Listener's

    def _pause(self, cause: BaseException) -> None:
        if self._paused_since is not None:
            return
        self._paused_since = time.monotonic()
        self._last_probe = time.monotonic()
        self.metrics.set("sfi_consumption_paused", 1)
        if self._consumer is not None:
            try:
                self._consumer.pause(self._consumer.assignment())
            except KafkaException:
                pass  # messages still delivered are held, not handled: see _receive
        reason = cause.cause if isinstance(cause, OutcomeNotRecorded) else cause
        reason = getattr(reason, "reason", None) or reason
        log.error("cannot record outcomes in the state store %s (%s): consumption paused, offsets not committed; "
                  "resuming when it is writable again", self.state.path, reason)

    def _try_resume(self, *, resume_consumer: bool = True) -> None:
        """Write the held outcomes, handle the held messages; resume consumption when all went in."""
        try:
            while self._unrecorded:
                work = self._unrecorded[0]
                if work.unrecorded is not None:
                    status = record_outcome(self.state, work.key, work.unrecorded, job_id=self._job_of(work),
                                            writer_path=work.writer_path, source=work.source, wrdn=work.wrdn,
                                            retry_base=self.options.retry_base, retry_max=self.options.retry_max,
                                            missing_deadline=self.options.missing_deadline)
                    self._unrecorded.pop(0)
                    if status == QUEUED:  # still owed: the offsets wait for the retry (the group owns it)
                        self._queued.setdefault(work.key, []).extend(work.offsets)
                        continue
                    for tp, offset in work.offsets:
                        self._offsets.done(tp, offset)
                else:  # not even processed: ingest again (idempotent) once writable
                    self.state.put_meta_probe()
                    self._unrecorded.pop(0)
                    work.future = None
                    self._submit(work, wait_missing=0.0)
            self.state.put_meta_probe()
            while self._held:
                msg = self._held.pop(0)
                if not self._handle_or_hold(msg, front=True):
                    return
        except (StateError, OutcomeNotRecorded):
            return  # still not writable: stay paused, no new log line
        if not resume_consumer:
            return
        waited = time.monotonic() - (self._paused_since or time.monotonic())
        self._paused_since = None
        self.metrics.set("sfi_consumption_paused", 0)
        if self._consumer is not None:
            try:
                self._consumer.resume(self._consumer.assignment())
            except KafkaException as exc:
                log.warning("resuming consumption: %s", exc)
        log.info("state store %s writable again after %.0f s: consumption resumed", self.state.path, waited)

    def _job_of(self, work: _Work) -> str | None:
        try:
            return decode(work.wrdn, expect="wrdn").value.job_id or None
        except DecodeError:
            return None

    def _handle_or_hold(self, msg: KafkaMessage, *, front: bool = False) -> bool:
        try:
            self._handle(msg)
            return True
        except StateError as exc:
            self._held.insert(0, msg) if front else self._held.append(msg)
            self._pause(exc)
            return False
