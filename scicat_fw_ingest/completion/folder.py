"""The watched-folder completion source: a file is finished once it has *settled*.

Why these rules: a writer without a finished-writing message (SuperMuSR's nexus-writer copies the
file into its archive with ``std::fs::copy``, then deletes the original) makes the file appear while
it is still being written. A file is settled when

1. its size and mtime have not changed for ``quiet_period`` seconds, and
2. it starts with the HDF5 signature and HDF5 opens it read-only: a half-copied HDF5 file fails to
   open (its superblock records the full end-of-file address), and so does one still locked by its
   writer. A file that fails waits another quiet period and is checked again.

A file is one *version* of a path: its (size, mtime). Each handled path is remembered with the
version it was handled at, so a writer that puts a new file at a used path (a reused run name, a
rewrite) gets it ingested like a new file, after settling again. Such a change is noticed

- with inotify: at once, from the event for that name (one stat per event of a handled name);
- by the *deep pass* every ``rescan_interval`` seconds (inotify's safety scan, and the same pass
  when polling): it stats every handled file, re-considers the changed ones and forgets the deleted
  ones, so memory stays bounded by the files present and NFS/polling setups notice replacements too.

Cost independent of the number of old files: every name seen is remembered. A name is stat'ed once
on first sight (its version is what the state store is asked about); a handled name is not stat'ed
again by the frequent scans, only by the slow deep pass. With inotify, directories are not scanned
at all between deep passes; a scan is one ``scandir`` (names and types from the directory itself,
no stat per file).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ._inotify import Inotify
from .settle import Quiet

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
class _Candidate(Quiet):
    """A file seen and not handed out yet: the quiet rule (``settle.Quiet``, shared with named files) + HDF5."""

    #: the HDF5 check's answer for this (size, mtime), so an unchanged file is opened once per quiet period
    verdict: str | None = None
    checked_at: float = 0.0


#: A file's version: (size, mtime_ns). Another version at a handled path is a new file.
Version = tuple[int, int]


class FolderWatcher:
    """Settled files of some directories (not recursive), each version handed out until ``take`` is called.

    ``is_known(path, size, mtime_ns)`` says whether that version of ``path`` was handled before this
    process started (the state store); it is asked once per name, on first sight.
    """

    def __init__(self, directories: Iterable[str], *, patterns: list[str], quiet_period: float,
                 is_known: Callable[[str, int, int], bool], use_inotify: bool = True, rescan_interval: float = 300.0,
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
        #: handled path -> the version it was handled at (a set of paths would hide a new file at a used path)
        self._done: dict[str, Version] = {}
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
        self._scan(self.directories, deep=True)
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
        deep = False
        if self._inotify is not None:
            changed, overflow = self._inotify.read()
            if overflow:
                log.warning("inotify queue overflowed: rescanning")
                rescan, deep = self.directories, True  # lost events may have been replacements too
            for directory, name in changed:
                self._consider(os.path.join(directory, name), name, now)
        if not rescan and now - self._last_full_scan >= self.rescan_interval:
            # the deep pass: events lost, written by another host (NFS), or no inotify at all
            rescan, deep = self.directories, True
        if not rescan and self._unwatched and now - self._last_scan >= self.poll_interval:
            rescan = self._unwatched  # no inotify for these: scan them (by name) every poll interval
        if rescan:
            self._scan(rescan, deep=deep)
            if deep:
                self._last_full_scan = self._last_scan
        return self._settle(now)

    def version(self, path: str) -> Version | None:
        """(size, mtime_ns) of a pending path as last seen: for a path ``poll`` just returned, the settled one."""
        cand = self._pending.get(path)
        return None if cand is None else (cand.size, cand.mtime_ns)

    def take(self, path: str) -> None:
        """This version of ``path`` is handled now (ingesting, ingested, or failed): never hand it out again.

        Another version at the same path (noticed by an event or the deep pass) is a new candidate.
        """
        cand = self._pending.pop(path, None)
        if cand is not None:
            self._done[path] = (cand.size, cand.mtime_ns)
            return
        try:  # taken without being offered: its current version is the handled one
            st = os.stat(path)
        except OSError:
            return
        self._done[path] = (st.st_size, st.st_mtime_ns)

    def handled(self) -> int:
        """How many handled paths are remembered (deleted ones are forgotten by the deep pass)."""
        return len(self._done)

    def pending(self) -> int:
        """How many files are seen and not taken yet."""
        return len(self._pending)

    def is_pending(self, path: str) -> bool:
        """Seen and not yet taken (still there: a deleted file is dropped at the next poll)."""
        return path in self._pending

    # -- internals ------------------------------------------------------------------------------
    def _scan(self, directories: list[str], *, deep: bool = False) -> None:
        """One ``scandir`` per directory; ``deep`` also stats handled files and forgets deleted ones."""
        self._last_scan = self._clock()
        self.scans += 1
        seen: set[str] = set()
        scanned: set[str] = set()
        for directory in directories:
            try:
                with os.scandir(directory) as entries:
                    for entry in entries:
                        path = entry.path
                        if deep:
                            seen.add(path)
                        if path in self._done:
                            if deep:
                                self._consider(path, entry.name, self._last_scan)
                            continue  # the common case for old files: a dict lookup, no stat
                        if path in self._pending:
                            continue
                        if self._match(entry.name) and entry.is_file():
                            self._consider(path, entry.name, self._last_scan)
                scanned.add(directory)
            except OSError as exc:
                log.warning("cannot scan %s: %s", directory, exc.strerror or exc)
        if deep:  # handled files no longer there: forgotten, so memory follows the files present
            for path in [p for p in self._done if p not in seen and os.path.dirname(p) in scanned]:
                del self._done[path]

    def _consider(self, path: str, name: str, now: float) -> None:
        """A name that appeared or changed: a new candidate unless this version of it is handled already."""
        if path in self._pending or not self._match(name):
            return
        handled = self._done.get(path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._done.pop(path, None)  # deleted: a file that comes back is looked up again
            return
        except OSError:
            return  # unreadable for now: nothing to decide
        if not stat.S_ISREG(st.st_mode):
            self._done.pop(path, None)
            return
        version = (st.st_size, st.st_mtime_ns)
        if handled is not None:
            if version == handled:
                return  # an event that changed nothing we key on (chmod, a read), or an unchanged file
            # Not asked of the store: a record under the bare path (older sfi) would hide every new version.
            del self._done[path]
            log.info("%s changed since it was handled (size %d -> %d): a new version, settling it", path,
                     handled[0], version[0])
        elif self._is_known(path, *version):
            self._done[path] = version
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
            if cand.see(st.st_size, st.st_mtime_ns, now):
                cand.verdict = None
                continue
            if cand.quiet_for(now) < self.quiet_period:
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
