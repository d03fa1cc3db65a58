"""Streamed checksum throughput against the ``sha256sum`` program on a 2 GiB file, and peak memory.

Targets: sfi's sha256 >= 0.9 x sha256sum's speed; peak RSS of a process hashing the file <= 100 MB.
Both readers run on a warm page cache (one untimed pass first) and the best of three runs counts,
so the comparison is of hashing and reading loops, not of the disk. The file is generated into a
temp dir and deleted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZE = 2 * 1024**3
SPEED_TARGET = 0.9
MEMORY_TARGET_MB = 100
RUNS = 3

_CHILD = """
import resource, sys, time
from scicat_fw_ingest.datablock import file_digest
started = time.perf_counter()
digest = file_digest(sys.argv[1], "sha256")
elapsed = time.perf_counter() - started
print(digest, elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _write(path: Path) -> None:
    block = os.urandom(8 * 1024 * 1024)
    with open(path, "wb") as fh:
        for _ in range(SIZE // len(block)):
            fh.write(block)


def _sha256sum(path: Path) -> tuple[str, float]:
    started = time.perf_counter()
    out = subprocess.run(["sha256sum", str(path)], capture_output=True, check=True, text=True).stdout
    return out.split()[0], time.perf_counter() - started


def _sfi(path: Path) -> tuple[str, float, float]:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, check=True,
                         text=True).stdout.split()
    return out[0], float(out[1]), int(out[2]) / 1024  # ru_maxrss is KiB on Linux


def main() -> bool:
    if shutil.which("sha256sum") is None:
        print("sha256sum not found: cannot compare")
        return False
    with tempfile.TemporaryDirectory(prefix="sfi-bench-checksum-") as tmp:
        path = Path(tmp) / "blob.bin"
        started = time.perf_counter()
        _write(path)
        print(f"generated {SIZE / 2**30:.0f} GiB in {time.perf_counter() - started:.1f} s")
        _sha256sum(path)  # warm the page cache
        theirs = [_sha256sum(path) for _ in range(RUNS)]
        ours = [_sfi(path) for _ in range(RUNS)]
    assert len({d for d, _ in theirs} | {d for d, _, _ in ours}) == 1, "digests differ"
    t_theirs = min(t for _, t in theirs)
    t_ours = min(t for _, t, _ in ours)
    peak = max(m for _, _, m in ours)
    speed = t_theirs / t_ours
    print(f"sha256sum: {SIZE / t_theirs / 2**20:.0f} MiB/s (best of {RUNS}, process included)")
    print(f"sfi file_digest: {SIZE / t_ours / 2**20:.0f} MiB/s (best of {RUNS}, hashing only)")
    print(f"speed ratio sfi/sha256sum: {speed:.2f} (target >= {SPEED_TARGET})")
    print(f"peak RSS of the hashing process: {peak:.0f} MB (target <= {MEMORY_TARGET_MB} MB; includes the interpreter)")
    return speed >= SPEED_TARGET and peak <= MEMORY_TARGET_MB


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
