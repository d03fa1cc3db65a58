"""A per-pid lock across processes, with a note of a datablock POST whose answer never came.

Why: two processes ingesting the same file (``ingest-file`` run twice, two listeners, a re-run after a
crash) must not both post a datablock — the backend would store both and add their sizes. The real
backend accepts no client-given datablock id (``_id``/``id`` → 400 on 4.5.0 and 5.1.0), so a second
POST cannot be made a 409; instead every upsert of one pid holds an ``fcntl`` lock on a small file
(one per server and pid) and looks before it sends. The file also records "datablock POST sent at T"
until the answer is in: a process killed during a slow POST leaves the note behind, and the next
upsert waits out the grace period from T before it looks, so a POST the server is still working on
is found instead of duplicated. The lock is released by the kernel when a process dies.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from types import TracebackType


def locked_file(path: Path) -> int:
    """An open descriptor of ``path`` holding its exclusive ``flock`` (waits for the holder before us).

    A holder that is done unlinks the file while it still holds the lock; a waiter that then gets the lock
    holds it on an unlinked inode, so it opens the path anew until the lock it holds is the path's."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def default_lock_dir() -> Path:
    """``$TMPDIR/sfi-scicat-<uid>``: shared by every sfi process of this user on this host."""
    return Path(tempfile.gettempdir()) / f"sfi-scicat-{os.getuid()}"


class LockedNote:
    """A per-server-and-pid file held under an exclusive ``flock`` (across threads, processes and a kill), with
    a small JSON note of a POST whose answer never came; ``pending_since`` is that POST's wall-clock time.

    The file is removed on exit once nothing is owed (``_done``); while it holds a note it stays for the next
    holder, who waits out the grace period from the note before it looks. Subclasses say which POST the note is
    of and name their file apart (``_kind``), so the datablock's and the preview's notes never mix."""

    #: what the note is of, part of the file name ("" for the datablock journal's historic name)
    _kind = ""

    def __init__(self, directory: Path, server: str, pid: str) -> None:
        key = f"{server}\n{pid}" + (f"\n{self._kind}" if self._kind else "")
        digest = hashlib.sha256(key.encode()).hexdigest()[:40]
        self.directory = directory
        self.path = directory / (f"{digest}.{self._kind}.lock" if self._kind else f"{digest}.lock")
        self._fd: int | None = None
        self._done = False
        #: wall-clock time of a POST that was sent but never answered (None: none)
        self.pending_since: float | None = None

    def _lock(self) -> bytes:
        """Take the lock; the note an earlier holder left (empty: none, the file goes on exit unless written)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._fd = fd = locked_file(self.path)
        raw = os.pread(fd, 4096, 0)
        self._done = not raw
        return raw

    def _write(self, note: dict[str, float | int]) -> None:
        assert self._fd is not None
        self._done = False
        data = json.dumps(note).encode()
        os.ftruncate(self._fd, 0)
        # No fsync: the note must outlive a killed process (the page cache keeps it), not a host crash,
        # after which any grace period is long over. Two fsyncs per dataset halved backfill throughput.
        os.pwrite(self._fd, data, 0)

    def settled(self) -> None:
        """The POST is known to be stored (or known not to be needed): forget the note."""
        self._done = True
        self.pending_since = None
        if self._fd is not None:
            os.ftruncate(self._fd, 0)

    def wait_grace(self, grace: float) -> None:
        """Sleep until ``grace`` seconds after an unanswered POST of an earlier holder."""
        if self.pending_since is not None:
            left = self.pending_since + grace - time.time()
            if left > 0:
                time.sleep(min(left, grace))

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._fd is None:
            return
        try:
            if self._done:
                try:  # unlinked while still locked: a waiter sees the inode change and opens anew
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
        finally:
            os.close(self._fd)
            self._fd = None


class PidJournal(LockedNote):
    """``with PidJournal(dir, server, pid) as j:`` holds the pid's lock; ``j.pending_since`` is the note of a
    datablock POST, ``j.dataset_sent`` that of a dataset POST not yet followed by its datablock's."""

    def __init__(self, directory: Path, server: str, pid: str) -> None:
        super().__init__(directory, server, pid)
        #: a dataset POST left this host but no datablock POST yet (safe to send one without looking)
        self.dataset_sent = False

    def __enter__(self) -> PidJournal:
        raw = self._lock()
        try:
            note = json.loads(raw) if raw else {}
            self.pending_since = float(note["datablock_sent"]) if "datablock_sent" in note else None
            self.dataset_sent = bool(note.get("dataset_sent"))
        except (ValueError, TypeError, KeyError, AttributeError):
            self.pending_since = None
        return self

    def mark_dataset_sent(self) -> None:
        """Before a dataset POST: a datablock is owed, and none has been sent from here yet."""
        self._write({"dataset_sent": time.time(), "pid_of_sender": os.getpid()})
        self.dataset_sent = True

    def mark_sending(self, at: float | None = None) -> None:
        """Before a datablock POST: if this process dies now, the next one waits before it looks.

        ``at`` backdates the note (an answered 5xx: the server is done, no need to wait, still unknown)."""
        when = time.time() if at is None else at
        self._write({"datablock_sent": when, "pid_of_sender": os.getpid()})
        self.pending_since = when

    def settled(self) -> None:
        super().settled()
        self.dataset_sent = False
