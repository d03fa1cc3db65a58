"""`sfi watch` idle cost: a directory of 10,000 old, already-ingested files adds < 1 % CPU.

Target (issue 13): the CPU time a real, idle `sfi watch` process uses over a window (default 30 s,
``SFI_BENCH_WATCH_SECONDS``) with 10,000 old files in its directory, minus the same watcher's with
an empty directory, is under 1 % of one core. The polling fallback (``--poll``) is measured too and
printed for information: it must scan the directory (names only, no stat) every poll interval.
CPU time is read from /proc/<pid>/stat (user + system), after start-up has finished.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scicat_fw_ingest.daemon.state import StateStore

N_OLD = 10_000
LIMIT = 0.01


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _idle_cpu(directory: Path, state_dir: Path, window: float, extra: list[str]) -> float:
    """Fraction of one core used by an idle watcher over ``window`` seconds after start-up."""
    log_path = state_dir / "watch.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFI_")}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "scicat_fw_ingest", "watch", str(directory), "--processes",
                                 "0", "--state-dir", str(state_dir), "--catalogue-dir", str(state_dir / "cat"),
                                 *extra], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "watching" not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"watcher did not start: {log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        time.sleep(2.0)  # let start-up work (imports, first scan) finish
        before = _cpu_seconds(proc.pid)
        time.sleep(window)
        return (_cpu_seconds(proc.pid) - before) / window
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def _old_files(directory: Path, state_dir: Path) -> None:
    """``N_OLD`` small files, each recorded as ingested in the watcher's state store."""
    state = StateStore(state_dir)
    for i in range(N_OLD):
        path = directory / f"MUSR{i:08d}.nxs"
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 1000)
        state.record_file(str(path), job_id=None, writer_path=str(path), status="created", source="watch:bench",
                          wrdn=b"")
    state.close()


def main() -> bool:
    if not Path("/proc/self/stat").exists():
        print("bench_watch: needs /proc (Linux); skipped")
        return True
    window = float(os.environ.get("SFI_BENCH_WATCH_SECONDS", "30"))
    with tempfile.TemporaryDirectory(prefix="sfi-bench-watch-") as tmp:
        root = Path(tmp)
        empty, full = root / "empty", root / "full"
        empty.mkdir()
        full.mkdir()
        (root / "st-empty").mkdir()
        (root / "st-full").mkdir()
        (root / "st-poll").mkdir()
        started = time.perf_counter()
        _old_files(full, root / "st-full")
        _old_files_copy = root / "st-full" / "sfi-state.sqlite3"
        (root / "st-poll" / "sfi-state.sqlite3").write_bytes(_old_files_copy.read_bytes())
        print(f"{N_OLD} old files recorded as ingested in {time.perf_counter() - started:.1f} s")
        base = _idle_cpu(empty, root / "st-empty", window, [])
        loaded = _idle_cpu(full, root / "st-full", window, [])
        polling = _idle_cpu(full, root / "st-poll", window, ["--poll"])
    added = max(0.0, loaded - base)
    print(f"idle watcher, empty directory:        {base * 100:.3f} % CPU over {window:.0f} s")
    print(f"idle watcher, {N_OLD} old files (inotify): {loaded * 100:.3f} % CPU")
    print(f"added by the old files: {added * 100:.3f} % CPU = {added / LIMIT:.2f} x the 1 % limit")
    print(f"(polling fallback --poll, {N_OLD} old files, 1 s scans: {polling * 100:.3f} % CPU, "
          f"{max(0.0, polling - base) / LIMIT:.2f} x the limit; not the target)")
    return added < LIMIT
