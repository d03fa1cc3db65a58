"""Completion by kafka-to-nexus's wrdn ("finished writing") message: what one wrdn asks sfi to do.

Why its own module: it is the other completion source next to ``folder`` (a writer that says when a
file is finished, rather than one that only leaves it in a folder). What a wrdn means — which file,
under which identity, whether it was already dealt with, whether the writer gave up on it — does not
depend on Kafka, so it lives here, pure, and is tested by feeding decoded messages. The Kafka side
(offsets, the in-flight work, the worker pool, recording and logging) stays in ``listen``.

Pure: ``decide`` reads the state store only through the lookup it is given and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any

from ..daemon.compact import METADATA_KEPT, compact_wrdn
from ..daemon.state import DONE, QUEUED, REJECTED, FileRecord, StateStore, file_identity
from ..ingest.run import RunInfo
from ..messages import DecodeError, decode

__all__ = ["ALREADY", "BAD", "INGEST", "IN_FLIGHT", "WRITER_ERROR", "WrdnDecision", "decide", "run_info_for"]

#: The wrdn names no file: record it as a bad message.
BAD = "bad"
#: The same file (path and job) is being ingested right now: its outcome covers this message too.
IN_FLIGHT = "in_flight"
#: The file's outcome is already recorded (done, rejected) or it waits in the retry queue: nothing to do.
ALREADY = "already"
#: The writer reported an error and ``on_writer_error = skip``: record it skipped, do not ingest.
WRITER_ERROR = "writer_error"
#: A finished file to ingest.
INGEST = "ingest"


@dataclass(frozen=True)
class WrdnDecision:
    """What to do about one wrdn; ``key``/``path``/``job_id`` are empty only for ``BAD``."""

    action: str
    #: The file's identity in the state store (``state.file_identity``: path AND job, a new run may reuse a path).
    key: str = ""
    #: The path the writer wrote to (as the wrdn names it).
    path: str = ""
    job_id: str | None = None
    #: ``BAD``: why; ``ALREADY``: the recorded state ("done", "rejected" or "queued");
    #: ``WRITER_ERROR``: the error to record.
    detail: str = ""


def decide(wrdn: Any, *, in_flight: Container[str], get_file: Callable[[str], FileRecord | None],
           on_writer_error: str) -> WrdnDecision:
    """Decide what the decoded wrdn value ``wrdn`` asks for.

    ``in_flight`` holds the keys of files being ingested now; it is consulted before the state store
    because a duplicate of a file in flight must wait for that file's outcome, not race it.
    ``get_file`` is the state store's lookup (``StateStore.get_file``); its ``StateError`` propagates.
    """
    path = wrdn.file_name
    if not path:
        return WrdnDecision(BAD, detail="wrdn without file_name")
    key = file_identity(path, wrdn.job_id)  # path AND job: a new run may reuse a path
    if key in in_flight:
        return WrdnDecision(IN_FLIGHT, key, path, wrdn.job_id)
    record = get_file(key)
    if record is not None and record.status in (*DONE, REJECTED):
        return WrdnDecision(ALREADY, key, path, wrdn.job_id, "done" if record.status in DONE else REJECTED)
    if record is not None and record.status == QUEUED:
        return WrdnDecision(ALREADY, key, path, wrdn.job_id, QUEUED)
    if wrdn.error_encountered and on_writer_error == "skip":
        return WrdnDecision(WRITER_ERROR, key, path, wrdn.job_id, f"writer error: {wrdn.message or 'no message'}")
    return WrdnDecision(INGEST, key, path, wrdn.job_id)


def run_info_for(state: StateStore, wrdn_payload: bytes | None) -> RunInfo:
    """What Kafka said about a file: its wrdn and, when cached, its run start (nothing for a watched file)."""
    if not wrdn_payload:
        return RunInfo()
    if len(wrdn_payload) > METADATA_KEPT:  # as the state keeps it: a first attempt and a retry are told the same
        wrdn_payload = compact_wrdn(wrdn_payload, say=False).payload
    wrdn = decode(wrdn_payload, expect="wrdn").value
    return RunInfo.from_messages(cached_run_start(state, wrdn.job_id), wrdn)


def cached_run_start(state: StateStore, job_id: str | None) -> Any:
    """The run start the store keeps for ``job_id``, decoded; None when there is none or it no longer decodes.

    ``StateError`` propagates: the caller decides whether an unreadable store fails the file."""
    cached = state.get_run_start(job_id) if job_id else None
    if cached is None:
        return None
    try:
        return decode(cached, expect="pl72").value
    except DecodeError:
        return None
