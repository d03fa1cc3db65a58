"""The listener's durable memory: SQLite in WAL mode under the state directory.

Why it exists: a Kafka offset may be committed only once what that message asked for is safely
somewhere. For a run start that is the run-start cache; for a finished file it is its outcome
(ingested, skipped, failed) or its place in the retry queue. After a crash the state tells the
listener what was already done, and the queue holds every file still owed to SciCat.

One connection shared by the daemon's threads behind a lock: writes are tiny and serialising them
keeps SQLite simple. ``synchronous=FULL`` so that a recorded outcome survives power loss too.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import SfiError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS run_starts (
    job_id      TEXT PRIMARY KEY,
    received_at REAL NOT NULL,
    source      TEXT NOT NULL,
    payload     BLOB NOT NULL
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
    wrdn         BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS files_due ON files (status, next_attempt);
CREATE TABLE IF NOT EXISTS bad_messages (
    source      TEXT PRIMARY KEY,
    reason      TEXT NOT NULL,
    received_at REAL NOT NULL,
    payload     BLOB
);
"""

#: Final outcomes (nothing more to do) and the ones that still owe work.
DONE = ("created", "exists", "repaired", "skipped")
QUEUED = "queued"
FAILED = "failed"
#: Payloads of undecodable messages are kept up to this size for later inspection.
MAX_BAD_PAYLOAD = 1 << 20


class StateError(SfiError):
    """The state directory cannot be opened or written."""


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


@dataclass(frozen=True)
class BadMessage:
    source: str
    reason: str
    received_at: float


class StateStore:
    """Run-start cache, file outcomes, retry queue and bad messages of one listener (or group member)."""

    def __init__(self, state_dir: str | Path) -> None:
        self.directory = Path(state_dir)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.path = self.directory / "sfi-state.sqlite3"
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"state directory {state_dir}: cannot open the state store: {exc}") from None
        self._lock = threading.Lock()

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
                self._db.execute("ROLLBACK") if self._db.in_transaction else None
                raise StateError(f"state store {self.path}: {exc}") from None

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StateError(f"state store {self.path}: {exc}") from None

    def ping(self) -> None:
        self._query("SELECT 1")

    # -- run starts ---------------------------------------------------------------------------
    def put_run_start(self, job_id: str, payload: bytes, source: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO run_starts VALUES (?, ?, ?, ?)", (job_id, time.time(), source, payload))

    def get_run_start(self, job_id: str) -> bytes | None:
        rows = self._query("SELECT payload FROM run_starts WHERE job_id = ?", (job_id,))
        return bytes(rows[0][0]) if rows else None

    def prune_run_starts(self, older_than_s: float) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM run_starts WHERE received_at < ?", (time.time() - older_than_s,)).rowcount

    # -- files --------------------------------------------------------------------------------
    def get_file(self, file_key: str) -> FileRecord | None:
        rows = self._query("SELECT * FROM files WHERE file_key = ?", (file_key,))
        return FileRecord(*rows[0][:10], bytes(rows[0][10])) if rows else None

    def record_file(self, file_key: str, *, job_id: str | None, writer_path: str, status: str, source: str,
                    wrdn: bytes, pid: str | None = None, error: str | None = None,
                    next_attempt: float | None = None, attempt: bool = True) -> None:
        """Insert or update a file's outcome; ``attempt`` counts one more ingestion attempt."""
        with self._tx() as db:
            db.execute(
                """INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(file_key) DO UPDATE SET status=excluded.status, pid=COALESCE(excluded.pid, pid),
                   error=excluded.error, attempts=attempts + ?, next_attempt=excluded.next_attempt,
                   updated_at=excluded.updated_at, job_id=COALESCE(excluded.job_id, job_id)""",
                (file_key, job_id, writer_path, status, pid, error, int(attempt), next_attempt, time.time(), source,
                 wrdn, int(attempt)),
            )

    def due(self, now: float, limit: int = 100) -> list[FileRecord]:
        rows = self._query("SELECT * FROM files WHERE status = ? AND next_attempt <= ? ORDER BY next_attempt LIMIT ?",
                           (QUEUED, now, limit))
        return [FileRecord(*r[:10], bytes(r[10])) for r in rows]

    def files(self, statuses: tuple[str, ...] | None = None) -> list[FileRecord]:
        if statuses:
            marks = ",".join("?" * len(statuses))
            rows = self._query(f"SELECT * FROM files WHERE status IN ({marks}) ORDER BY updated_at", statuses)
        else:
            rows = self._query("SELECT * FROM files ORDER BY updated_at")
        return [FileRecord(*r[:10], bytes(r[10])) for r in rows]

    def counts(self) -> dict[str, int]:
        return {status: n for status, n in self._query("SELECT status, COUNT(*) FROM files GROUP BY status")}

    def requeue(self, keys: list[str] | None = None) -> int:
        """Put failed files (all, or the named ones) back in the retry queue, due now."""
        with self._tx() as db:
            if keys is None:
                return db.execute("UPDATE files SET status=?, next_attempt=? WHERE status=?",
                                  (QUEUED, time.time(), FAILED)).rowcount
            n = 0
            for key in keys:
                n += db.execute("UPDATE files SET status=?, next_attempt=? WHERE file_key=? AND status IN (?, ?)",
                                (QUEUED, time.time(), key, FAILED, QUEUED)).rowcount
            return n

    # -- bad messages -------------------------------------------------------------------------
    def record_bad_message(self, source: str, reason: str, payload: bytes | None) -> None:
        kept = payload if payload is not None and len(payload) <= MAX_BAD_PAYLOAD else None
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO bad_messages VALUES (?, ?, ?, ?)", (source, reason, time.time(), kept))

    def bad_messages(self) -> list[BadMessage]:
        return [BadMessage(*r) for r in self._query(
            "SELECT source, reason, received_at FROM bad_messages ORDER BY received_at")]
