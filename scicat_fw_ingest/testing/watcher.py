"""Building blocks for the `sfi watch` tests: real HDF5 files, a hand-moved clock, a real watcher in a thread.

Why in the package: settling is decided by elapsed time, so the watch tests (and a facility checking its own
folder rules) drive a real ``Watcher`` with a clock they move by hand instead of sleeping through settle times.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from scicat_fw_ingest.catalogue import CatalogueDir
from scicat_fw_ingest.completion.folder import FolderWatcher
from scicat_fw_ingest.config import Config, load_config
from scicat_fw_ingest.daemon.state import FileRecord, StateStore
from scicat_fw_ingest.daemon.watch import WatchOptions, Watcher
from scicat_fw_ingest.ingest import Ingestor
from scicat_fw_ingest.simulate.supermusr import SimulatedRun, write_run_file

from .listener import DEFAULTS_TOML, wait_for


class Clock:
    """A monotonic clock the test moves by hand: settling is decided by elapsed time, not by sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def muon_file(path: Path, *, size_mb: float = 0.2, run_name: str = "MUSR00000001") -> Path:
    start = int(time.time() * 1000)
    write_run_file(path, SimulatedRun(run_name, "job-1", "SuperMuSR", start, start + 60_000), size_mb=size_mb)
    return path


def watcher(directory: Path, clock: Clock, *, known: set[str] | None = None, inotify: bool = True,
            calls: list[str] | None = None, quiet: float = 2.0, rescan: float = 3600.0) -> FolderWatcher:
    def is_known(path: str, size: int, mtime_ns: int) -> bool:
        if calls is not None:
            calls.append(path)
        return path in (known or set())

    w = FolderWatcher([str(directory)], patterns=["*.nxs"], quiet_period=quiet, is_known=is_known,
                      use_inotify=inotify, rescan_interval=rescan, poll_interval=1.0, clock=clock)
    w.start()
    return w


def record_at(state: StateStore, path: str | Path) -> FileRecord | None:
    """The newest record of a watched path (its key is path + size + mtime of the version ingested)."""
    found = state.files_at(str(path))
    return found[-1] if found else None


def watch_config(tmp_path: Path) -> Config:
    cfg_file = tmp_path / "sfi.toml"
    cfg_file.write_text(DEFAULTS_TOML + '\n[ingest]\nchecksum = "sha256"\nfile_wait = 1.0\n')
    return load_config(cfg_file, env={})


def run_watcher(cfg: Config, options: WatchOptions, state: StateStore, sink: CatalogueDir,
                until: Callable[[], bool], linger: float = 0.0) -> Watcher:
    """Run a watcher until ``until()`` holds, then ``linger`` seconds more (time to do something wrong)."""
    w = Watcher(cfg, options, ingestor=Ingestor(cfg, sink), state=state)
    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    try:
        wait_for(until, 30, "the watcher's outcomes")
        time.sleep(linger)
    finally:
        w.stop()
        thread.join(30)
    assert not thread.is_alive()
    return w
