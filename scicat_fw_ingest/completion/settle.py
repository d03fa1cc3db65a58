"""When a named file is complete enough to read, and whether it stayed the same while it was read.

Why: a message saying a file is finished does not mean the bytes are final. kafka-to-nexus publishes
its wrdn *before* it writes the final start/stop-time metadata, closes the file and (since May 2025,
eed2958d) chmods it 0440. HDF5 file locks, which would keep a reader out meanwhile, are off on many
shared file systems (``HDF5_USE_FILE_LOCKING=FALSE`` on NFS, GPFS, Lustre) and never seen by another
host. So sfi judges completeness by evidence every host sees without locks:

- the writer's own signal where it gives one: **no write bit for anyone** (kafka-to-nexus >= eed2958d
  sets 0440 once the file is closed);
- else the file has **settled**: size and mtime (ns) unchanged over ``settle_seconds`` (the same quiet
  rule ``folder`` uses for writers without any message; ``Quiet`` is shared by both);
- and always a **re-stat after reading** (size, mtime_ns, ctime_ns, inode): a file that changed while
  its metadata and checksums were read is read again, after it settled (``Ingestor`` does the reads).

Bounded: a file that shows neither signal before ``deadline`` raises ``StillWriting`` with the
reason. Waiting sleeps on ``STOP`` (an Event): ``request_stop`` ends every wait of the process at once
(Ctrl-C, SIGTERM). Cheap when the file is complete: one ``stat``, no sleep, for a read-only file.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["AT_ONCE", "DEFAULT_RULE", "READ_ONLY", "READ_ONLY_OR_SETTLED", "RULES", "SETTLED", "STOP", "Completion",
           "Quiet", "StillWriting", "Stopped", "Version", "request_stop", "wait_until_complete"]

#: Complete once no one may write it (kafka-to-nexus >= eed2958d chmods 0440); waits forever for older writers.
READ_ONLY = "read-only"
#: Complete once size and mtime stay unchanged for ``settle_seconds`` (any writer, costs that latency).
SETTLED = "settled"
#: Read-only at once, else settled: safe with every writer, fast with a writer that signals.
READ_ONLY_OR_SETTLED = "read-only-or-settled"
#: No wait: the caller knows the file is complete (``sfi watch`` settled it already, an old backfill).
AT_ONCE = "at-once"
RULES = (READ_ONLY_OR_SETTLED, READ_ONLY, SETTLED, AT_ONCE)
DEFAULT_RULE = READ_ONLY_OR_SETTLED

#: A file whose mtime and ctime are this much older than the settle time has settled by its own clock
#: (a backfill of old files does not wait); the margin covers clocks of a file server and this host differing.
CLOCK_MARGIN = 60.0
#: Seconds between stats while waiting: how soon a chmod 0440 or a quiet file is noticed.
POLL = 0.1

log = logging.getLogger("sfi.ingest")

#: Set to end every wait of this process now (``request_stop``); waits then raise ``Stopped``.
STOP = threading.Event()


def request_stop() -> None:
    """End every completeness wait of this process (a clean stop must not wait for a file to settle)."""
    STOP.set()


class StillWriting(Exception):
    """The file showed no sign of being complete before the deadline; the message says which rule and why."""


class Stopped(Exception):
    """The process is stopping (``request_stop``): the file was not judged."""


@dataclass(frozen=True)
class Version:
    """What identifies the bytes of a file without reading them: a change in any field is a new version."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    mode: int

    @classmethod
    def of(cls, st: os.stat_result) -> Version:
        return cls(int(st.st_size), st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode)

    @property
    def read_only(self) -> bool:
        """No write bit for user, group or other: the writer's "done" (kafka-to-nexus sets 0440)."""
        return not self.mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)

    def same_file(self, other: Version) -> bool:
        """The same bytes as far as the file system tells: size, mtime, ctime (a chmod, a rewrite) and inode."""
        return (self.size, self.mtime_ns, self.ctime_ns, self.inode) == \
            (other.size, other.mtime_ns, other.ctime_ns, other.inode)

    def describe_change(self, newer: Version) -> str:
        """What differs, for the log: e.g. ``size 1024 -> 4096, mtime``."""
        parts = [f"size {self.size} -> {newer.size}"] if self.size != newer.size else []
        parts += [name for name, a, b in (("mtime", self.mtime_ns, newer.mtime_ns), ("ctime", self.ctime_ns,
                  newer.ctime_ns), ("inode", self.inode, newer.inode)) if a != b]
        return ", ".join(parts) or "nothing"


@dataclass
class Quiet:
    """A file's (size, mtime_ns) as last seen and since when (monotonic) it has not changed.

    The settle rule of both completion paths: a watched folder's candidates (``folder``) and a named
    file waiting to be complete (``wait_until_complete``).
    """

    size: int
    mtime_ns: int
    #: monotonic time of the last change seen
    since: float

    def see(self, size: int, mtime_ns: int, now: float) -> bool:
        """Record a fresh stat; True when it changed (the quiet period starts again)."""
        if (size, mtime_ns) == (self.size, self.mtime_ns):
            return False
        self.size, self.mtime_ns, self.since = size, mtime_ns, now
        return True

    def quiet_for(self, now: float) -> float:
        return now - self.since


@dataclass
class Completion:
    """How a file was judged complete: the rule, the evidence that held, seconds waited, reads it took."""

    rule: str
    evidence: str  # "read-only" | "settled" | "old" | "at-once"
    waited: float = 0.0
    reads: int = 1

    def to_json(self) -> dict[str, object]:
        return {"rule": self.rule, "evidence": self.evidence, "waited_s": round(self.waited, 3), "reads": self.reads}


def wait_until_complete(path: str, rule: str, *, settle_seconds: float, deadline: float, shown: str | None = None,
                        must_settle: bool = False,
                        clock: Callable[[], float] = time.monotonic) -> tuple[Version, str, float]:
    """Wait until ``path`` is complete by ``rule``: its version then, the evidence that held, seconds waited.

    Seconds waited is exactly 0.0 when no sleep happened (a read-only file, an old one, ``at-once``).

    ``must_settle``: the file changed while it was read, so its read-only mode (or ``at-once``) is not
    trusted: it must also stay unchanged for ``settle_seconds`` (at least ``POLL``) before the next read.
    ``deadline``: seconds; past it ``StillWriting`` names the rule and what kept changing. ``OSError``
    from ``stat`` (the file vanished) passes to the caller.
    """
    shown = shown or path
    start = clock()
    version = Version.of(os.stat(path))
    if not must_settle:
        if rule == AT_ONCE:
            return version, AT_ONCE, 0.0
        if rule != SETTLED and version.read_only:
            return version, READ_ONLY, 0.0  # the common case with a current writer: one stat, no sleep
    accepts_settled = rule != READ_ONLY or must_settle
    settle = max(settle_seconds, POLL) if must_settle else settle_seconds
    if accepts_settled and not must_settle:
        if settle <= 0:
            return version, SETTLED, 0.0
        age = time.time() - max(version.mtime_ns, version.ctime_ns) / 1e9
        if age >= settle + CLOCK_MARGIN:
            return version, "old", 0.0  # unchanged for longer than anyone waits: a backfill of finished files
    quiet = Quiet(version.size, version.mtime_ns, start)
    end = start + max(0.0, deadline)
    log.debug("%s: not complete yet (mode %o%s): waiting up to %g s", shown, stat.S_IMODE(version.mode),
              ", changed while read" if must_settle else "", deadline)
    while True:
        remaining = end - clock()
        if remaining <= 0:
            break
        if STOP.wait(min(POLL, remaining)):
            raise Stopped(f"{shown}: not judged: sfi is stopping")
        version = Version.of(os.stat(path))
        now = clock()
        if not must_settle and rule != SETTLED and version.read_only:
            return version, READ_ONLY, now - start
        quiet.see(version.size, version.mtime_ns, now)
        if accepts_settled and quiet.quiet_for(now) >= settle:
            return version, SETTLED, now - start
    if not accepts_settled:
        raise StillWriting(f"{shown}: not complete: still writable (mode {stat.S_IMODE(version.mode):o}) after "
                           f"{deadline:g} s; the writer makes it read-only when done ([ingest] complete_when = "
                           f"'{READ_ONLY}': older kafka-to-nexus never does, use '{READ_ONLY_OR_SETTLED}')")
    raise StillWriting(f"{shown}: still being written: size/mtime changed during the last {settle:g} s "
                       f"(gave up after {deadline:g} s: [ingest] complete_wait)")
