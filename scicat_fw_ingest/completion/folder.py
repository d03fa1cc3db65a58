"""The watched-folder completion source: a file is finished once it has *settled*.

Why these rules: a writer without a finished-writing message (SuperMuSR's nexus-writer copies the
file into its archive with ``std::fs::copy``, then deletes the original) makes the file appear while
it is still being written. A file is settled when

1. its size and mtime have not changed for ``quiet_period`` seconds, and
2. it starts with the HDF5 signature and HDF5 opens it read-only: a half-copied HDF5 file fails to
   open (its superblock records the full end-of-file address), and so does one still locked by its
   writer. A file that fails waits another quiet period and is checked again.

Cost independent of the number of old files: every name seen is remembered. A name already known to
the state store is never stat'ed again; only new or changed names are. With inotify, directories
are not scanned at all between the slow safety rescans (``rescan_interval``); a scan is one
``scandir`` (names and types from the directory itself, no stat per file).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ._inotify import Inotify

__all__ = ["BAD", "GONE", "OK", "WAIT", "FolderWatcher", "hdf5_verdict"]

log = logging.getLogger("sfi.watch")

#: What the HDF5 check says: finished, not yet (copy or lock in progress), gone, or never HDF5.
OK, WAIT, GONE, BAD = "ok", "wait", "gone", "bad"


def hdf5_verdict(path: str) -> str:
    """``OK`` when HDF5 opens ``path`` read-only now; ``WAIT`` while truncated or locked; ``BAD`` if not HDF5."""
    from ..nexus.reader import HDF5_LOCK, FileLockedError, NotNexusError, check_signature

    try:
        check_signature(path)
    except FileNotFoundError:
        return GONE
    except FileLockedError:
        return WAIT
    except NotNexusError:
        try:  # a copy writes from the start: under 8 bytes the signature may still be coming
            return BAD if os.stat(path).st_size >= 8 else WAIT
        except FileNotFoundError:
            return GONE
    import h5py

    try:
        with HDF5_LOCK:
            h5py.File(path, "r").close()
    except FileNotFoundError:
        return GONE
    except OSError as exc:
        log.debug("%s: not openable yet: %s", path, str(exc).splitlines()[0] if str(exc) else exc)
        return WAIT
    return OK


@dataclass
class _Candidate:
    size: int
    mtime_ns: int
    #: monotonic time of the last change seen
    since: float
    #: the HDF5 check's answer for this (size, mtime), so an unchanged file is opened once per quiet period
    verdict: str | None = None
    checked_at: float = 0.0


class FolderWatcher:
    """Settled files of some directories (not recursive), each handed out until ``take`` is called."""

    def __init__(self, directories: Iterable[str], *, patterns: list[str], quiet_period: float,
                 is_known: Callable[[str], bool], use_inotify: bool = True, rescan_interval: float = 300.0,
                 poll_interval: float = 1.0, verdict: Callable[[str], str] = hdf5_verdict,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.directories = [os.path.abspath(d) for d in directories]
        self._match = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns) or "(?!)").match
        self.quiet_period = quiet_period
        self.rescan_interval = rescan_interval
        self.poll_interval = poll_interval
        self._is_known = is_known
        self._verdict = verdict
        self._clock = clock
        self._done: set[str] = set()
        self._pending: dict[str, _Candidate] = {}
        self._inotify = Inotify.open() if use_inotify else None
        self._unwatched: list[str] = []
        self._last_scan = -1e18
        self._last_full_scan = -1e18
        self.scans = 0

    @property
    def mode(self) -> str:
        """``inotify`` when every directory is watched by the kernel, else ``polling``."""
        return "inotify" if self._inotify is not None and not self._unwatched else "polling"

    def start(self) -> None:
        """Watch (inotify) before the first scan, so nothing created in between is missed."""
        for directory in self.directories:
            if not os.path.isdir(directory):
                from ..errors import ConfigError

                raise ConfigError(f"watched directory {directory}: does not exist or is not a directory")
            if self._inotify is None or not self._inotify.add(directory):
                self._unwatched.append(directory)
        self._scan(self.directories)
        self._last_full_scan = self._last_scan

    def close(self) -> None:
        """Release the inotify descriptor."""
        if self._inotify is not None:
            self._inotify.close()

    def wait(self, timeout: float) -> None:
        """Sleep until something may have changed: an inotify event, or ``timeout``.

        After an event it waits a little more (at most 0.1 s), so that a file being copied, which
        raises an event per write, costs a few checks per second rather than one per write.
        """
        if self._inotify is not None:
            if self._inotify.wait(timeout):
                time.sleep(min(0.1, timeout))
        else:
            time.sleep(timeout)

    # -- what changed -------------------------------------------------------------------------
    def poll(self) -> list[str]:
        """Paths settled now (still pending until ``take``); ``BAD`` ones too, so their failure gets recorded."""
        now = self._clock()
        rescan: list[str] = []
        if self._inotify is not None:
            changed, overflow = self._inotify.read()
            if overflow:
                log.warning("inotify queue overflowed: rescanning")
                rescan = self.directories
            for directory, name in changed:
                self._consider(os.path.join(directory, name), name, now)
        if not rescan and self._inotify is not None and now - self._last_full_scan >= self.rescan_interval:
            rescan = self.directories  # the safety scan: events lost, or written by another host (NFS)
        if not rescan and self._unwatched and now - self._last_scan >= self.poll_interval:
            rescan = self._unwatched  # no inotify for these: scan them every poll interval
        if rescan:
            self._scan(rescan)
            if rescan is self.directories:
                self._last_full_scan = self._last_scan
        return self._settle(now)

    def take(self, path: str) -> None:
        """``path`` is handled now (ingesting, ingested, or recorded as failed): never hand it out again."""
        self._pending.pop(path, None)
        self._done.add(path)

    def pending(self) -> int:
        """How many files are seen and not taken yet."""
        return len(self._pending)

    def is_pending(self, path: str) -> bool:
        """Seen and not yet taken (still there: a deleted file is dropped at the next poll)."""
        return path in self._pending

    # -- internals ------------------------------------------------------------------------------
    def _scan(self, directories: list[str]) -> None:
        self._last_scan = self._clock()
        self.scans += 1
        for directory in directories:
            try:
                with os.scandir(directory) as entries:
                    for entry in entries:
                        if entry.path in self._done or entry.path in self._pending:
                            continue  # the common case for old files: a set lookup, no stat
                        if self._match(entry.name) and entry.is_file():
                            self._consider(entry.path, entry.name, self._last_scan)
            except OSError as exc:
                log.warning("cannot scan %s: %s", directory, exc.strerror or exc)

    def _consider(self, path: str, name: str, now: float) -> None:
        if path in self._done or path in self._pending or not self._match(name):
            return
        if self._is_known(path):
            self._done.add(path)
            return
        try:
            st = os.stat(path)
        except OSError:
            return  # gone already (a temporary file, or deleted): nothing to do
        if not os.path.isfile(path):
            return
        self._pending[path] = _Candidate(st.st_size, st.st_mtime_ns, now)

    def _settle(self, now: float) -> list[str]:
        settled: list[str] = []
        for path, cand in list(self._pending.items()):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                del self._pending[path]
                continue
            except OSError:
                continue
            if (st.st_size, st.st_mtime_ns) != (cand.size, cand.mtime_ns):
                cand.size, cand.mtime_ns, cand.since, cand.verdict = st.st_size, st.st_mtime_ns, now, None
                continue
            if now - cand.since < self.quiet_period:
                continue
            if cand.verdict is None or (cand.verdict == WAIT and now - cand.checked_at >= self.quiet_period):
                cand.verdict, cand.checked_at = self._verdict(path), now
                if cand.verdict == GONE:
                    del self._pending[path]
                    continue
                if cand.verdict == WAIT:
                    log.info("%s: unchanged for %.1f s but HDF5 cannot open it yet; waiting", path,
                             now - cand.since)
            if cand.verdict in (OK, BAD):
                settled.append(path)
        return settled
