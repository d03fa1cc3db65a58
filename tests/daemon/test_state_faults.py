"""The state store refusing writes (disk full, a long-held lock): nothing committed, nothing lost, each file once."""

from __future__ import annotations

import errno
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scicat_fw_ingest.daemon.state import StateStore
from scicat_fw_ingest.testing.listener import (
    assert_each_once,
    committed,
    config_file,
    listener,
    make_jobs,
    publish,
    wait_for,
)
from scicat_fw_ingest.testing.scicat_server import ScicatTestServer

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PAUSED = "cannot record outcomes in the state store"


@pytest.fixture
def scicat() -> Iterator[ScicatTestServer]:
    with ScicatTestServer() as server:
        yield server


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of its own: the test can fill it to the last byte and free it again."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write zeros until the filesystem says ENOSPC."""
    filler = disk / "filler"
    block = b"\0" * 65536
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with open(filler, "ab", buffering=0) as fh:  # and the last partial block
        for size in (4096, 512, 1):
            try:
                while True:
                    fh.write(b"\0" * size)
            except OSError:
                pass
    return filler


def paused_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if PAUSED in line]


def test_disk_full_under_the_state_store_loses_nothing(tmp_path, small_disk, kafka_config, kafka_bootstrap,
                                                       scicat, topic) -> None:
    data_dir = tmp_path / "data"
    jobs = make_jobs(data_dir, 6, topic=topic)
    state_dir = small_disk / "state"
    cfg_path = config_file(tmp_path, data_dir, "state_busy_timeout = 1.0\n")
    group = f"g-{topic}"
    proc = listener(tmp_path, "df", bootstrap=kafka_bootstrap, scicat=scicat, cfg_path=cfg_path, topic=topic,
                    group=group, env_extra={"SFI_STATE_DIR": str(state_dir)}).start()
    try:
        publish(kafka_config, jobs[:2])
        wait_for(lambda: len(scicat.origdatablocks) == 2, 60, "the first 2 datasets")
        wait_for(lambda: committed(kafka_config, group, topic) == [12], 10, "the first 12 offsets committed")
        filler = fill(small_disk)
        publish(kafka_config, jobs[2:])
        wait_for(lambda: bool(paused_lines(proc.log())), 30, "the listener to report the full disk")
        time.sleep(3.0)  # paused: whatever it read stays uncommitted
        assert committed(kafka_config, group, topic) == [12]
        assert proc.proc is not None and proc.proc.poll() is None
        filler.unlink()  # the operator frees space
        wait_for(lambda: len(scicat.origdatablocks) == 6, 60, "all 6 datasets after the disk has space again")
        wait_for(lambda: committed(kafka_config, group, topic) == [36], 20, "all 36 offsets committed")
    finally:
        assert proc.terminate() == 0, proc.log()[-3000:]
    log = proc.log()
    assert len(paused_lines(log)) == 1, log[-3000:]  # one clear ERROR, not one per message
    assert "ERROR" in paused_lines(log)[0] and str(state_dir / "sfi-state.sqlite3") in paused_lines(log)[0]
    assert "full" in paused_lines(log)[0]
    assert "consumption resumed" in log
    assert_each_once(scicat, jobs, data_dir)
    store = StateStore(state_dir)
    assert store.counts() == {"created": 6}


def test_state_store_locked_longer_than_the_busy_timeout_loses_nothing(tmp_path, kafka_config, kafka_bootstrap,
                                                                       scicat, topic) -> None:
    data_dir = tmp_path / "data"
    jobs = make_jobs(data_dir, 6, topic=topic)
    state_dir = tmp_path / "state-lock"
    cfg_path = config_file(tmp_path, data_dir, "state_busy_timeout = 0.5\n")
    group = f"g-{topic}"
    proc = listener(tmp_path, "lock", bootstrap=kafka_bootstrap, scicat=scicat, cfg_path=cfg_path, topic=topic,
                    group=group, env_extra={"SFI_STATE_DIR": str(state_dir)}).start()
    try:
        publish(kafka_config, jobs[:2])
        wait_for(lambda: len(scicat.origdatablocks) == 2, 60, "the first 2 datasets")
        wait_for(lambda: committed(kafka_config, group, topic) == [12], 10, "the first 12 offsets committed")
        other = sqlite3.connect(state_dir / "sfi-state.sqlite3", isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock (a backup, a stuck sfi retry)
        try:
            # only the wrdns: reading the state still works, so the files are ingested into SciCat and it
            # is recording their outcomes that fails (the path that used to commit and lose them)
            publish(kafka_config, jobs[2:], only=("wrdn",))
            wait_for(lambda: bool(paused_lines(proc.log())), 30, "the listener to report the locked store")
            wait_for(lambda: len(scicat.origdatablocks) == 6, 30, "the 4 files ingested while the store is locked")
            time.sleep(3.0)  # several busy timeouts: still nothing committed past what is recorded
            assert committed(kafka_config, group, topic) == [12]
        finally:
            other.execute("COMMIT")
            other.close()
        wait_for(lambda: committed(kafka_config, group, topic) == [16], 20, "all 16 offsets committed")
    finally:
        assert proc.terminate() == 0, proc.log()[-3000:]
    log = proc.log()
    assert len(paused_lines(log)) == 1 and "locked" in paused_lines(log)[0], log[-3000:]
    assert_each_once(scicat, jobs, data_dir)
    assert StateStore(state_dir).counts() == {"created": 6}
    assert log.count("created /writer/out/") == 6  # recorded from the held outcomes, not ingested twice
