"""What the state store keeps of a run start (pl72) or finished-writing (wrdn) message: what ingestion reads.

Why: a valid run start can be megabytes (its ``nexus_structure`` describes every detector and stream), and
kafka-to-nexus copies the run start's metadata into the wrdn. Stored whole, 148 such messages made a 165 MB
state database, kept for 30 days. Ingestion reads only the fields ``RunInfo.from_messages`` takes (job id,
run name, instrument, start/stop time, service id, file name, metadata JSON, the writer's error), so that is
what is kept, extracted at arrival and re-encoded as a message of the same schema (every reader of the
stored bytes stays unchanged), plus the original's length and sha256 to match it against a topic dump.

Bounds: ``nexus_structure`` and the detector-spectrum map are never kept; metadata JSON over
``METADATA_KEPT`` bytes keeps its top-level keys in order while they fit, and the log says which were cut.
The streaming-data-types library is imported only when a message is compacted (start-up time of ``sfi``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("sfi.listen")

#: Metadata JSON above this many bytes (UTF-8) is cut to the top-level keys that fit.
METADATA_KEPT = 64 * 1024
#: The state's ``meta`` key saying a database's stored messages were bounded (not a schema version: another change
#: may take the next one; this step is idempotent, keyed on its columns and this flag).
_BOUNDED_PAYLOADS = "bounded_payloads"


@dataclass(frozen=True)
class Compacted:
    """The bytes to store, and the original message's length and sha256."""

    payload: bytes
    length: int
    sha256: str


def _digest(payload: bytes) -> tuple[int, str]:
    return len(payload), hashlib.sha256(payload).hexdigest()


def bound_metadata(text: str | None, what: str, *, say: bool = True) -> str:
    """``text`` if it is at most ``METADATA_KEPT`` bytes, else the top-level keys that fit (logged).

    Why keys, not a byte cut: a cut JSON is not JSON, and ingestion would lose every field of it; the
    keys that fit (in their order) keep what the scientific metadata most likely needs.
    """
    if not text:
        return text or ""
    size = len(text.encode("utf-8", "replace"))
    if size <= METADATA_KEPT:
        return text
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        value = None
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    if isinstance(value, dict):
        used = 2
        for key, item in value.items():
            piece = len(json.dumps({key: item}, ensure_ascii=False).encode("utf-8", "replace"))
            if used + piece <= METADATA_KEPT:
                kept[key] = item
                used += piece
            else:
                dropped.append(str(key))
    shown = ", ".join(dropped[:10]) + (f" and {len(dropped) - 10} more" if len(dropped) > 10 else "")
    if say:
            log.warning("%s: metadata of %d bytes exceeds %d: kept %d top-level key(s)%s", what, size, METADATA_KEPT,
                    len(kept), f", cut {shown}" if dropped else " (not a JSON object: none kept)")
    return json.dumps(kept, ensure_ascii=False) if kept else ""


def compact_run_start(payload: bytes, what: str = "run start") -> Compacted:
    """A pl72 holding only what ingestion reads (no nexus_structure, metadata bounded).

    A payload that does not decode as a pl72 is returned as it came (the caller decoded it before).
    """
    from streaming_data_types.run_start_pl72 import serialise_pl72

    from ..messages import DecodeError, decode

    length, sha256 = _digest(payload)
    try:
        value = decode(payload, expect="pl72").value
    except DecodeError:
        return Compacted(payload, length, sha256)
    kept = serialise_pl72(job_id=value.job_id or "", filename=value.filename or "",
                          start_time=int(value.start_time) if value.start_time else None,
                          stop_time=int(value.stop_time) if value.stop_time else None,
                          run_name=value.run_name or "", nexus_structure="", service_id=value.service_id or "",
                          instrument_name=value.instrument_name or "",
                          metadata=bound_metadata(value.metadata, what))
    return Compacted(kept if len(kept) < length else payload, length, sha256)


def compact_wrdn(payload: bytes, what: str = "finished-writing message", *, say: bool = True) -> Compacted:
    """A wrdn whose metadata is bounded; the payload unchanged when its metadata is within the bound.

    ``say``: log the cut (False where the same message is compacted again: the state store said it once).
    """
    length, sha256 = _digest(payload)
    if length <= METADATA_KEPT:
        return Compacted(payload, length, sha256)
    from streaming_data_types.finished_writing_wrdn import serialise_wrdn

    from ..messages import DecodeError, decode

    try:
        value = decode(payload, expect="wrdn").value
    except DecodeError:
        return Compacted(payload, length, sha256)
    message = value.message or ""
    if len(message) > 4096:  # a writer's error text: its head says what went wrong
        message = message[:4096] + f" ... [{len(value.message)} characters, cut]"
    kept = serialise_wrdn(value.service_id or "", value.job_id or "", bool(value.error_encountered),
                          value.file_name or "", bound_metadata(value.metadata, what, say=say), message)
    return Compacted(kept if len(kept) < length else payload, length, sha256)


def bound_stored_payloads(db: sqlite3.Connection) -> None:
    """Once per database: add the original-length/sha256 columns and compact what was stored whole.

    Why keyed on ``meta``: checking every stored wrdn at each open would cost a scan of years of records.
    Rows stored whole before keep NULL lengths (their stored bytes are the original), except the big ones,
    which are compacted here; the file then shrinks (VACUUM) once.
    """
    if db.execute("SELECT 1 FROM meta WHERE key = ?", (_BOUNDED_PAYLOADS,)).fetchall():
        return
    db.execute("BEGIN IMMEDIATE")
    for table, names in (("run_starts", ("payload_length", "payload_sha256")),
                         ("files", ("wrdn_length", "wrdn_sha256"))):
        present = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        for name in names:
            if name not in present:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {'INTEGER' if 'length' in name else 'TEXT'}")
    shrunk = 0
    for job_id, payload in db.execute("SELECT job_id, payload FROM run_starts WHERE payload_length IS NULL "
                                      "AND length(payload) > 1024").fetchall():
        kept = compact_run_start(bytes(payload), f"stored run start of job {job_id}")
        db.execute("UPDATE run_starts SET payload = ?, payload_length = ?, payload_sha256 = ? WHERE job_id = ?",
                   (kept.payload, kept.length, kept.sha256, job_id))
        shrunk += kept.length - len(kept.payload)
    for key, wrdn in db.execute("SELECT file_key, wrdn FROM files WHERE wrdn_length IS NULL AND length(wrdn) > ?",
                                (METADATA_KEPT,)).fetchall():
        kept = compact_wrdn(bytes(wrdn), f"stored finished-writing message of {key}")
        db.execute("UPDATE files SET wrdn = ?, wrdn_length = ?, wrdn_sha256 = ? WHERE file_key = ?",
                   (kept.payload, kept.length, kept.sha256, key))
        shrunk += kept.length - len(kept.payload)
    db.execute("INSERT OR REPLACE INTO meta VALUES (?, '1')", (_BOUNDED_PAYLOADS,))
    db.execute("COMMIT")
    if shrunk > 1 << 20:
        db.execute("VACUUM")  # give the space back once: the table no longer grows into it

