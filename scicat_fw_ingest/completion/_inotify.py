"""Linux inotify through ctypes: names of directory entries that changed, without scanning the directory.

Why ctypes and not a package: three libc calls (``inotify_init1``, ``inotify_add_watch``, ``read``)
are all a watcher needs, and sfi adds no dependency for them. Where inotify is missing (macOS, some
containers) or fails (watch limit reached), ``Inotify.open`` returns ``None`` and the caller polls.
inotify does not see changes made by *other hosts* on a network file system: the caller keeps a slow
safety rescan for that (``--rescan``), or is told to poll only (``--poll``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import select
import struct
import sys
from collections.abc import Iterable

log = logging.getLogger("sfi.watch")

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

#: Everything that can make a name appear, change or settle in a directory.
WATCH_MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
              | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)


class Inotify:
    """One inotify instance watching some directories; ``read`` gives (directory, name) pairs and overflows."""

    def __init__(self, libc: ctypes.CDLL, fd: int) -> None:
        self._libc = libc
        self.fd = fd
        self._dirs: dict[int, str] = {}

    @classmethod
    def open(cls) -> Inotify | None:
        """An instance, or ``None`` where the platform has no inotify."""
        if not sys.platform.startswith("linux"):
            return None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        except (OSError, AttributeError):
            return None
        if fd < 0:
            log.warning("inotify unavailable (%s): polling instead", os.strerror(ctypes.get_errno()))
            return None
        return cls(libc, fd)

    def add(self, directory: str) -> bool:
        """Watch ``directory``; False (and a warning) when the kernel refuses, e.g. the watch limit."""
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(directory), WATCH_MASK)
        if wd < 0:
            err = ctypes.get_errno()
            hint = " (raise fs.inotify.max_user_watches)" if err == errno.ENOSPC else ""
            log.warning("inotify cannot watch %s: %s%s; polling it instead", directory, os.strerror(err), hint)
            return False
        self._dirs[wd] = directory
        return True

    def wait(self, timeout: float) -> bool:
        """Block until events are ready or ``timeout`` seconds pass; True when there is something to read."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        return bool(ready)

    def read(self) -> tuple[list[tuple[str, str]], bool]:
        """Pending events as ``[(directory, name)]``, and whether the kernel queue overflowed (rescan all)."""
        changed: list[tuple[str, str]] = []
        overflow = False
        while True:
            try:
                data = os.read(self.fd, 64 * 1024)
            except BlockingIOError:
                break
            if not data:
                break
            for wd, mask, name in _events(data):
                if mask & IN_Q_OVERFLOW:
                    overflow = True
                elif mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED):
                    directory = self._dirs.pop(wd, None)
                    if directory is not None:
                        log.warning("watched directory %s was removed or moved", directory)
                elif name and wd in self._dirs:
                    changed.append((self._dirs[wd], name))
        return changed, overflow

    def close(self) -> None:
        """Close the descriptor (every watch goes with it)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _events(data: bytes) -> Iterable[tuple[int, int, str]]:
    offset = 0
    while offset + _HEADER.size <= len(data):
        wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
        raw = data[offset + _HEADER.size: offset + _HEADER.size + length]
        offset += _HEADER.size + length
        yield wd, mask, os.fsdecode(raw.rstrip(b"\0"))
