"""The listener's durable memory: SQLite in WAL mode under the state directory.

Why it exists: a Kafka offset may be committed only once what that message asked for is safely
somewhere. For a run start that is the run-start cache; for a finished file it is its outcome
(ingested, skipped, failed) or its place in the retry queue. After a crash the state tells the
listener what was already done, and the queue holds every file still owed to SciCat.

One connection shared by the daemon's threads behind a lock: writes are tiny and serialising them
keeps SQLite simple. ``synchronous=FULL`` so that a recorded outcome survives power loss too.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ListenConfig
from ..errors import SfiError
from .compact import METADATA_KEPT, bound_stored_payloads, compact_run_start, compact_wrdn

_SCHEMA = """
CREATE TABLE IF NOT EXISTS run_starts (
    job_id      TEXT PRIMARY KEY,
    received_at REAL NOT NULL,
    source      TEXT NOT NULL,
    payload     BLOB NOT NULL,
    payload_length INTEGER,
    payload_sha256 TEXT
);
CREATE TABLE IF NOT EXISTS files (
    file_key     TEXT PRIMARY KEY,
    job_id       TEXT,
    writer_path  TEXT NOT NULL,
    status       TEXT NOT NULL,
    pid          TEXT,
    error        TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL,
    updated_at   REAL NOT NULL,
    source       TEXT NOT NULL,
    wrdn         BLOB NOT NULL,
    first_seen   REAL,
    verify_at    REAL,
    wrdn_length  INTEGER,
    wrdn_sha256  TEXT
);
CREATE INDEX IF NOT EXISTS files_due ON files (status, next_attempt);
CREATE INDEX IF NOT EXISTS files_path ON files (writer_path);
CREATE INDEX IF NOT EXISTS run_starts_age ON run_starts (received_at);
CREATE TABLE IF NOT EXISTS bad_messages (
    source         TEXT PRIMARY KEY,
    reason         TEXT NOT NULL,
    received_at    REAL NOT NULL,
    payload        BLOB,
    payload_length INTEGER,
    payload_sha256 TEXT
);
CREATE INDEX IF NOT EXISTS bad_messages_age ON bad_messages (received_at);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT
);
"""

#: Schema versions (PRAGMA user_version): 0 = files keyed by path only, big bad-message payloads;
#: 2 = files keyed by path and job (``file_identity``), ``first_seen``, truncated bad payloads;
#: 3 = ``verify_at``: a done file whose datablock is looked at again then (an unknown POST outcome, a takeover);
#: 4 = a watched file keeps no wrdn (empty): it is re-driven by its path and job id (before, ``sfi watch``
#: stored a wrdn it made up itself).
SCHEMA_VERSION = 4
#: Not a schema version: run starts compacted and wrdns bounded, with the original's length and sha256 in
#: ``payload_length``/``wrdn_length`` and ``*_sha256`` (``compact.bound_stored_payloads``, once per database).

#: Final outcomes (nothing more to do) and the ones that still owe work.
DONE = ("created", "exists", "repaired", "skipped")
QUEUED = "queued"
FAILED = "failed"
#: A path outside every data root (or relative): never opened, never retried.
REJECTED = "rejected"
#: Outcomes that end a file's life in the listener (a repeated wrdn for it is not ingested again).
TERMINAL = (*DONE, FAILED, REJECTED)
#: Of an undecodable message only this much is kept (plus its length and sha256) for inspection.
BAD_PAYLOAD_KEPT = 4096
_COLUMNS = ("file_key, job_id, writer_path, status, pid, error, attempts, next_attempt, updated_at, source, wrdn, "
            "first_seen, verify_at")


def file_identity(writer_path: str, job_id: str | None = None, *, size: int | None = None,
                  mtime: float | None = None) -> str:
    """The key a file's outcome is stored under: its path plus the job that wrote it (or size+mtime).

    Why not the path alone: a writer reusing a path for a new run would otherwise see its new file
    deduplicated against the old one and never ingested. A folder watcher without job ids passes the
    file's size and mtime instead.
    """
    if job_id:
        return f"{writer_path}#job={job_id}"
    if size is not None and mtime is not None:
        return f"{writer_path}#size={size},mtime={mtime:.6f}"
    return writer_path


class StateError(SfiError):
    """The state directory cannot be opened or written; ``reason`` is SQLite's own words."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


@dataclass(frozen=True)
class FileRecord:
    file_key: str
    job_id: str | None
    writer_path: str
    status: str
    pid: str | None
    error: str | None
    attempts: int
    next_attempt: float | None
    updated_at: float
    source: str
    wrdn: bytes
    first_seen: float | None = None
    #: When the dataset's datablocks are to be looked at again (duplicates repaired, a missing one added).
    verify_at: float | None = None


@dataclass(frozen=True)
class BadMessage:
    source: str
    reason: str
    received_at: float
    payload_length: int | None = None
    payload_sha256: str | None = None


def _record(row: tuple[Any, ...]) -> FileRecord:
    (key, job_id, writer_path, status, pid, error, attempts, next_attempt, updated_at, source, wrdn, first_seen,
     verify_at) = row
    return FileRecord(key, job_id, writer_path, status, pid, error, attempts, next_attempt, updated_at, source,
                      bytes(wrdn or b""), first_seen, verify_at)


class StateStore:
    """Run-start cache, file outcomes, retry queue and bad messages of one listener (or group member).

    ``busy_timeout``: seconds a write waits for another connection's lock before it fails with
    ``StateError`` (the listener then pauses; see listen.py). ``bad_max``/``bad_days`` bound the
    bad-message table by count and age.
    """

    def __init__(self, state_dir: str | Path, *, busy_timeout: float = ListenConfig.state_busy_timeout,
                 bad_max: int = ListenConfig.bad_messages_max,
                 bad_days: float = ListenConfig.bad_messages_days) -> None:
        self.directory = Path(state_dir)
        self.bad_max, self.bad_days = bad_max, bad_days
        #: seconds a write waits for another process's lock (``[listen] state_busy_timeout``)
        self.busy_timeout = busy_timeout
        self._bad_since_prune = 0
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.path = self.directory / "sfi-state.sqlite3"
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                       timeout=busy_timeout)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"state directory {state_dir}: cannot open the state store: {exc}") from None
        self._lock = threading.Lock()

    def _migrate(self) -> None:
        """Create the schema, or bring an older state database up to ``SCHEMA_VERSION`` in place."""
        db = self._db
        version = db.execute("PRAGMA user_version").fetchone()[0]
        existed = bool(db.execute("SELECT 1 FROM sqlite_master WHERE name='files'").fetchall())
        if existed and version < SCHEMA_VERSION:
            db.execute("BEGIN IMMEDIATE")
            columns = {r[1] for r in db.execute("PRAGMA table_info(files)")}
            if "first_seen" not in columns:
                db.execute("ALTER TABLE files ADD COLUMN first_seen REAL")
            if "verify_at" not in columns:
                db.execute("ALTER TABLE files ADD COLUMN verify_at REAL")
            db.execute("UPDATE files SET first_seen = updated_at WHERE first_seen IS NULL")
            db.execute("""UPDATE OR IGNORE files SET file_key = writer_path || '#job=' || job_id
                          WHERE job_id IS NOT NULL AND job_id != '' AND file_key = writer_path""")
            bad_columns = {r[1] for r in db.execute("PRAGMA table_info(bad_messages)")}
            for name, kind in (("payload_length", "INTEGER"), ("payload_sha256", "TEXT")):
                if name not in bad_columns:
                    db.execute(f"ALTER TABLE bad_messages ADD COLUMN {name} {kind}")
            db.execute("UPDATE bad_messages SET payload_length = length(payload) WHERE payload_length IS NULL")
            db.execute("UPDATE bad_messages SET payload = substr(payload, 1, ?) WHERE length(payload) > ?",
                       (BAD_PAYLOAD_KEPT, BAD_PAYLOAD_KEPT))
            # the wrdn `sfi watch` made up for a watched file (service "sfi-watch"): its job id is in its row
            db.execute("UPDATE files SET wrdn = x'' WHERE source LIKE 'watch:%' AND length(wrdn) > 0")
            db.execute("COMMIT")
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        bound_stored_payloads(self._db)  # once per database (compact.py)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                try:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the original error is the one worth reporting
                raise StateError(f"state store {self.path}: {exc}", str(exc)) from None

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StateError(f"state store {self.path}: {exc}", str(exc)) from None

    def ping(self) -> None:
        self._query("SELECT 1")

    def put_meta_probe(self) -> None:
        """A real write (``StateError`` when the store cannot take one): is it writable again?"""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('last_write_probe', ?)", (repr(time.time()),))

    # -- run starts ---------------------------------------------------------------------------
    def put_run_start(self, job_id: str, payload: bytes, source: str) -> None:
        """Cache what ingestion needs of a run start (``compact``: no nexus_structure, metadata bounded)."""
        kept = compact_run_start(payload, f"run start {source} job {job_id}")
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO run_starts (job_id, received_at, source, payload, payload_length, "
                       "payload_sha256) VALUES (?, ?, ?, ?, ?, ?)",
                       (job_id, time.time(), source, kept.payload, kept.length, kept.sha256))

    def run_start_original(self, job_id: str) -> tuple[int, str] | None:
        """Length and sha256 of the run start as it arrived (None: unknown, or stored whole before compaction)."""
        rows = self._query("SELECT payload_length, payload_sha256 FROM run_starts WHERE job_id = ?", (job_id,))
        return (int(rows[0][0]), str(rows[0][1])) if rows and rows[0][0] is not None else None

    def get_run_start(self, job_id: str) -> bytes | None:
        rows = self._query("SELECT payload FROM run_starts WHERE job_id = ?", (job_id,))
        return bytes(rows[0][0]) if rows else None

    def prune_run_starts(self, older_than_s: float) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM run_starts WHERE received_at < ?", (time.time() - older_than_s,)).rowcount

    # -- files --------------------------------------------------------------------------------
    def get_file(self, file_key: str) -> FileRecord | None:
        rows = self._query(f"SELECT {_COLUMNS} FROM files WHERE file_key = ?", (file_key,))
        return _record(rows[0]) if rows else None

    def files_at(self, key_or_path: str) -> list[FileRecord]:
        """Records under the key ``key_or_path`` or written at that path (a path may hold several runs or versions).

        Why: keys are identities (``file_identity``), but operators name files by their path (``sfi retry PATH``).
        """
        rows = self._query(f"SELECT {_COLUMNS} FROM files WHERE file_key = ? OR writer_path = ? ORDER BY updated_at",
                           (key_or_path, key_or_path))
        return [_record(r) for r in rows]

    def record_file(self, file_key: str, *, job_id: str | None, writer_path: str, status: str, source: str,
                    wrdn: bytes | None, pid: str | None = None, error: str | None = None,
                    next_attempt: float | None = None, attempt: bool = True) -> None:
        """Insert or update a file's outcome; ``attempt`` counts one more ingestion attempt.

        ``wrdn`` may be empty for a file that no finished-writing message announced (a folder watcher).
        """
        now = time.time()
        big = wrdn is not None and len(wrdn) > METADATA_KEPT
        kept = compact_wrdn(wrdn, f"finished-writing message {source}") if wrdn is not None and big else None
        if kept is not None:
            wrdn = kept.payload
        with self._tx() as db:
            db.execute(
                f"""INSERT INTO files ({_COLUMNS}, wrdn_length, wrdn_sha256)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)
                   ON CONFLICT(file_key) DO UPDATE SET status=excluded.status, pid=COALESCE(excluded.pid, pid),
                   error=excluded.error, attempts=attempts + ?, next_attempt=excluded.next_attempt,
                   updated_at=excluded.updated_at, job_id=COALESCE(excluded.job_id, job_id),
                   first_seen=CASE WHEN status != 'queued' THEN excluded.first_seen ELSE first_seen END""",
                (file_key, job_id, writer_path, status, pid, error, int(attempt), next_attempt, now, source,
                 wrdn or b"", now, kept.length if kept else None, kept.sha256 if kept else None, int(attempt)),
            )

    def schedule_verify(self, file_key: str, at: float | None) -> None:
        """Look at ``file_key``'s dataset again at ``at`` (None: no verification owed any more).

        Why durable: a datablock POST can be stored by the server later than any wait (a slow store), so
        whether a dataset got one, two or no datablock is only known some time later, perhaps after a restart."""
        with self._tx() as db:
            db.execute("UPDATE files SET verify_at = ? WHERE file_key = ?", (at, file_key))

    def due_verify(self, now: float, limit: int = 100) -> list[FileRecord]:
        """Done files whose verification is due (``schedule_verify``), oldest first."""
        rows = self._query(f"SELECT {_COLUMNS} FROM files WHERE verify_at IS NOT NULL AND verify_at <= ? "
                           "ORDER BY verify_at LIMIT ?", (now, limit))
        return [_record(r) for r in rows]

    def due(self, now: float, limit: int = 100) -> list[FileRecord]:
        rows = self._query(f"SELECT {_COLUMNS} FROM files INDEXED BY files_due WHERE status = ? AND next_attempt <= ? "
                           "ORDER BY next_attempt LIMIT ?", (QUEUED, now, limit))
        return [_record(r) for r in rows]

    def files(self, statuses: tuple[str, ...] | None = None) -> list[FileRecord]:
        if statuses:
            marks = ",".join("?" * len(statuses))
            # INDEXED BY: statistics (ANALYZE) showing few distinct statuses make the planner scan every record,
            # when the statuses asked for (failed, queued) are a handful among years of done ones.
            rows = self._query(f"SELECT {_COLUMNS} FROM files INDEXED BY files_due WHERE status IN ({marks}) "
                               "ORDER BY updated_at", statuses)
        else:
            rows = self._query(f"SELECT {_COLUMNS} FROM files ORDER BY updated_at")
        return [_record(r) for r in rows]

    def count(self, status: str) -> int:
        """Records in one status, from the ``files_due`` index: cost grows with that status, not with history.

        Why not ``counts()``: the listener asks for the queue depth every second, and counting every status
        reads every record (500,000 after a few busy years).
        """
        return int(self._query("SELECT COUNT(*) FROM files INDEXED BY files_due WHERE status = ?", (status,))[0][0])

    def counts(self) -> dict[str, int]:
        """Records per status: reads the whole index (for status commands, not for loops)."""
        return {status: n for status, n in self._query("SELECT status, COUNT(*) FROM files GROUP BY status")}

    def requeue(self, keys: list[str] | None = None) -> int:
        """Put failed files (all, or the named ones: writer path or state key, rejected too) back in the queue."""
        with self._tx() as db:
            if keys is None:
                return db.execute("UPDATE files INDEXED BY files_due SET status=?, next_attempt=?, first_seen=? "
                                  "WHERE status=?",
                                  (QUEUED, time.time(), time.time(), FAILED)).rowcount
            n = 0
            for key in keys:
                n += db.execute("UPDATE files SET status=?, next_attempt=?, first_seen=? "
                                "WHERE (file_key=? OR writer_path=?) AND status IN (?, ?, ?)",
                                (QUEUED, time.time(), time.time(), key, key, FAILED, QUEUED, REJECTED)).rowcount
            return n

    # -- bad messages -------------------------------------------------------------------------
    def record_bad_message(self, source: str, reason: str, payload: bytes | None) -> None:
        """Keep the first ``BAD_PAYLOAD_KEPT`` bytes, the length and the sha256; prune by count and age.

        Why truncated: a misrouted detector stream is megabytes per message and would fill the disk the
        outcomes need; the head of a payload is what identifies it, the hash what matches it to a dump.
        """
        kept = payload[:BAD_PAYLOAD_KEPT] if payload is not None else None
        length = len(payload) if payload is not None else None
        digest = hashlib.sha256(payload).hexdigest() if payload is not None else None
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO bad_messages VALUES (?, ?, ?, ?, ?, ?)",
                       (source, reason, time.time(), kept, length, digest))
            self._bad_since_prune += 1
            if self._bad_since_prune >= max(1, self.bad_max // 20):
                self._bad_since_prune = 0
                self._prune_bad(db)

    def prune_bad_messages(self) -> int:
        with self._tx() as db:
            return self._prune_bad(db)

    def _prune_bad(self, db: sqlite3.Connection) -> int:
        n = db.execute("DELETE FROM bad_messages WHERE received_at < ?",
                       (time.time() - self.bad_days * 86400,)).rowcount
        n += db.execute("""DELETE FROM bad_messages WHERE source IN (SELECT source FROM bad_messages
                           ORDER BY received_at DESC LIMIT -1 OFFSET ?)""", (self.bad_max,)).rowcount
        return n

    def bad_messages(self) -> list[BadMessage]:
        return [BadMessage(*r) for r in self._query(
            "SELECT source, reason, received_at, payload_length, payload_sha256 FROM bad_messages "
            "ORDER BY received_at")]

    def bad_payload(self, source: str) -> bytes | None:
        rows = self._query("SELECT payload FROM bad_messages WHERE source = ?", (source,))
        return bytes(rows[0][0]) if rows and rows[0][0] is not None else None
