"""The simulated SuperMuSR nexus-writer, and `sfi watch` ingesting its archive exactly once through kill -9."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import h5py
import pytest

from scicat_fw_ingest.completion.folder import OK, WAIT, hdf5_verdict
from scicat_fw_ingest.config import load_config
from scicat_fw_ingest.ingest import Ingestor
from scicat_fw_ingest.kafka import ensure_topics
from scicat_fw_ingest.simulate import DEFAULT_PROPOSAL
from scicat_fw_ingest.simulate.supermusr import SimulatedRun, copy_slowly, file_time_text, write_run_file
from scicat_fw_ingest.testing.listener import DEFAULTS_TOML, wait_for
from scicat_fw_ingest.testing.scicat_server import ScicatTestServer

FILE_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{9} UTC$")


def _run(name: str = "MUSR00012345") -> SimulatedRun:
    return SimulatedRun(name, "0b5a4c1e-0000-4000-8000-000000000001", "SuperMuSR", 1_732_743_781_125,
                        1_732_744_381_125)


def test_file_time_has_the_writers_form() -> None:
    assert file_time_text(1_732_743_781_125_433_859) == "2024-11-27 21:43:01.125433859 UTC"


def test_file_has_the_writers_layout_and_size(tmp_path: Path) -> None:
    path = tmp_path / "MUSR00012345.nxs"
    size = write_run_file(path, _run(), size_mb=2.0)
    assert 1_900_000 < size < 2_300_000 and size == path.stat().st_size
    with h5py.File(path) as f:
        assert FILE_TIME.match(f.attrs["file_time"])
        assert f.attrs["file_name"] == str(path)
        entry = f["raw_data_1"]
        assert entry.attrs["NX_class"] == "NXentry"
        assert entry["definition"][()] == b"muonTD"
        assert entry["program_name"][()] == b"SuperMuSR Data Pipeline Nexus Writer"
        assert entry["name"][()] == b"MUSR00012345" and entry["run_number"][()] == 12345
        assert entry["start_time"][()] == b"2024-11-27T21:43:01+0000"
        assert entry["end_time"][()] == b"2024-11-27T21:53:01+0000"
        assert entry["instrument/name"][()] == b"SuperMuSR"
        detector = entry["detector_1"]
        assert detector.attrs["NX_class"] == "NXevent_data"
        assert detector["event_id"].shape == detector["event_time_offset"].shape == detector["pulse_height"].shape
        assert "offset" in detector["event_time_zero"].attrs


def test_builtin_profiles_give_a_sensible_dataset(tmp_path: Path) -> None:
    path = tmp_path / "MUSR00012345.nxs"
    write_run_file(path, _run(), size_mb=0.1)
    cfg_file = tmp_path / "sfi.toml"
    cfg_file.write_text(DEFAULTS_TOML)
    result = Ingestor(load_config(cfg_file, env={}), None).ingest(str(path))
    assert result.status == "dry-run", result.error
    ds = result.dataset
    assert ds is not None
    assert ds["datasetName"] == "MUSR00012345"
    assert ds["runNumber"] == "12345"
    assert ds["startTime"] == "2024-11-27T21:43:01Z" and ds["endTime"] == "2024-11-27T21:53:01Z"
    assert ds["creationTime"] == "2024-11-27T21:53:01Z"
    assert "SuperMuSR" in ds["creationLocation"]


def test_the_copy_leaves_a_half_copied_window(tmp_path: Path) -> None:
    src = tmp_path / "local.nxs"
    write_run_file(src, _run(), size_mb=1.0)
    dst = tmp_path / "archive.nxs"
    copier = threading.Thread(target=copy_slowly, args=(str(src), str(dst)),
                              kwargs={"chunk": 64 * 1024, "delay": 0.001, "pause": 1.0})
    copier.start()
    wait_for(lambda: dst.exists() and dst.stat().st_size >= src.stat().st_size // 2, 10, "half the copy")
    seen_half = dst.stat().st_size < src.stat().st_size
    verdict_half = hdf5_verdict(str(dst))
    copier.join(10)
    assert seen_half and verdict_half == WAIT
    assert hdf5_verdict(str(dst)) == OK and dst.read_bytes() == src.read_bytes()


def _watch(tmp_path: Path, archive: Path, env: dict[str, str], topic: str) -> subprocess.Popen:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SFI_")}
    with open(tmp_path / "watch.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "scicat_fw_ingest", "watch", str(archive), "--topic", topic,
                                 "--settle", "0.4", "--poll-interval", "0.2", "--processes", "0"],
                                env={**base, **env}, stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.slow
@pytest.mark.kafka
def test_twenty_archived_files_each_once_through_two_kills(tmp_path: Path, kafka_bootstrap: str, topic: str) -> None:
    local, archive = tmp_path / "local", tmp_path / "archive"
    local.mkdir()
    archive.mkdir()
    cfg_file = tmp_path / "sfi.toml"
    cfg_file.write_text(DEFAULTS_TOML + '\n[ingest]\nchecksum = "sha256"\nfile_wait = 2.0\n'
                        "[listen]\nretry_base = 0.2\nretry_max = 1.0\n")
    ensure_topics(load_config(None, env={}, overrides={"kafka": {"bootstrap.servers": kafka_bootstrap}}), [topic])
    with ScicatTestServer() as scicat:
        env = {"SFI_KAFKA_BOOTSTRAP": kafka_bootstrap, "SFI_SCICAT_URL": scicat.url,
               "SFI_SCICAT_TOKEN": scicat.token, "SFI_CONFIG": str(cfg_file), "SFI_STATE_DIR": str(tmp_path / "st")}
        base = {k: v for k, v in os.environ.items() if not k.startswith("SFI_")}
        # 3 MB files copied in 128 KB chunks, each pausing 0.7 s half-way: longer than the 0.4 s quiet period
        writer = subprocess.Popen([sys.executable, "-m", "scicat_fw_ingest", "produce-test", "--writer", "supermusr",
                                   "-o", str(local), "--archive-dir", str(archive), "-n", "20", "--pool-topic", topic,
                                   "--copy", "3,128,0.004,0.7", "--json"],
                                  env={**base, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        watcher = _watch(tmp_path, archive, env, topic)
        rng = random.Random(1313)
        kills_while_copying = 0
        try:
            for _ in range(2):
                time.sleep(rng.uniform(3.0, 6.0))
                kills_while_copying += writer.poll() is None
                watcher.send_signal(signal.SIGKILL)
                watcher.wait(10)
                watcher = _watch(tmp_path, archive, env, topic)
            out, err = writer.communicate(timeout=120)
            assert writer.returncode == 0, err.decode()
            runs = [json.loads(line) for line in out.decode().splitlines()]
            assert len(runs) == 20
            wait_for(lambda: sum(len(v) for v in scicat.origdatablocks.values()) >= 20, 90, "20 datablocks")
            time.sleep(1.0)  # a duplicate would land now
        finally:
            if writer.poll() is None:
                writer.kill()
            watcher.send_signal(signal.SIGTERM)
            assert watcher.wait(30) == 0, (tmp_path / "watch.log").read_text()[-3000:]
        log = (tmp_path / "watch.log").read_text()
        assert kills_while_copying == 2
        assert len(scicat.datasets) == 20, log[-3000:]
        assert "HDF5 cannot open it yet" in log  # the half-copied window was seen, and waited out
        for run in runs:
            pids = [p for p in scicat.datasets if p.endswith(run["job_id"])]  # the run start gave the pid
            assert len(pids) == 1, f"{run['run_name']}: {len(pids)} datasets"
            dataset = scicat.datasets[pids[0]]
            assert dataset["proposalId"] == DEFAULT_PROPOSAL  # from the run start's metadata
            assert dataset["datasetName"] == run["run_name"]
            blocks = scicat.origdatablocks[pids[0]]
            assert len(blocks) == 1
            (entry,) = blocks[0]["dataFileList"]
            final = Path(run["file"]).read_bytes()
            assert entry["size"] == len(final) == run["size"]
            assert entry["chk"] == hashlib.sha256(final).hexdigest()
            created = datetime.fromisoformat(dataset["createdAt"].replace("Z", "+00:00")).timestamp()
            assert created + 0.001 >= run["copy_finished"], f"{run['run_name']} ingested before its copy finished"


@pytest.mark.slow
def test_watched_supermusr_file_is_accepted_by_the_real_backend(tmp_path: Path, real_scicat) -> None:
    from scicat_fw_ingest.daemon.state import StateStore
    from scicat_fw_ingest.daemon.watch import WatchOptions, Watcher
    from scicat_fw_ingest.scicat import ScicatClient

    archive = tmp_path / "archive"
    archive.mkdir()
    path = archive / "MUSR00012345.nxs"
    write_run_file(path, _run(), size_mb=0.5)
    cfg_file = tmp_path / "sfi.toml"
    cfg_file.write_text(DEFAULTS_TOML + '\n[ingest]\nchecksum = "sha256"\n')
    cfg = load_config(cfg_file, env={"SFI_SCICAT_URL": real_scicat.url,
                                     "SFI_SCICAT_TOKEN": real_scicat.login("ingestor")})
    sink = ScicatClient.from_config(cfg.scicat)
    state = StateStore(tmp_path / "state")
    w = Watcher(cfg, WatchOptions([str(archive)], quiet_period=0.2, poll_interval=0.1), ingestor=Ingestor(cfg, sink),
                state=state)
    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: bool(state.files_at(str(path))), 60, "the watched file's outcome")
    finally:
        w.stop()
        thread.join(30)
    [record] = state.files_at(str(path))  # keyed by path + size + mtime, found by its path
    assert record.status == "created" and record.pid is not None, record.error
    status, dataset = real_scicat.request("GET", "/api/v3/Datasets/" + record.pid.replace("/", "%2F"))
    assert status == 200, dataset
    assert dataset["datasetName"] == "MUSR00012345" and dataset["runNumber"] == "12345"
    assert dataset["endTime"].startswith("2024-11-27T21:53:01")
    status, blocks = real_scicat.request("GET", f"/api/v3/Datasets/{record.pid}/origdatablocks")
    assert status == 200 and len(blocks) == 1, blocks  # the ingestor may not read the group's data: admin reads
    (block,) = blocks
    assert block["dataFileList"][0]["chk"] == hashlib.sha256(path.read_bytes()).hexdigest()
    sink.close()
    state.close()
