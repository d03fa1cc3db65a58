"""Files written so that a ``kill -9`` or a power cut leaves the old version or the new one, never half of one.

Why apart from ``catalogue``: the crash rules (temp name, fsync, rename, directory fsync; stale temps of killed
writers) are one concern, readable and testable without the catalogue's layout. Errors are ``OSError``: the caller
names what the file was for.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

#: the suffix of a temp file; ``remove_stale_temps`` removes ``.*`` + this
TMP_SUFFIX = ".tmp"


def write_atomic(directory: Path, name: str, data: bytes) -> None:
    """Temp file + fsync + rename + directory fsync: after a crash ``directory / name`` is whole or absent."""
    tmp = directory / f".{name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, directory / name)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    fsync_dir(directory)


def remove_stale_temps(directory: Path) -> None:
    """Temp files of writers killed mid-write; call it only under a lock that excludes live writers."""
    for path in directory.glob(f".*{TMP_SUFFIX}"):
        try:
            path.unlink()
        except OSError:
            pass


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new entry in ``directory`` survive a crash (where the file system can)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot fsync a directory; the rename is still atomic
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)
