"""`sfi watch`: settling rules, cost independent of old files, run correlation, exactly once through restarts."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import h5py
import pytest

from scicat_fw_ingest.catalogue import CatalogueDir
from scicat_fw_ingest.completion.folder import BAD, OK, WAIT, hdf5_verdict
from scicat_fw_ingest.completion.runs import RunIndex, RunRecord
from scicat_fw_ingest.config import load_config
from scicat_fw_ingest.daemon.state import FileRecord, StateStore
from scicat_fw_ingest.daemon.watch import WatchOptions, Watcher, watched_identity
from scicat_fw_ingest.ingest import Ingestor
from scicat_fw_ingest.testing.listener import DEFAULTS_TOML, wait_for
from scicat_fw_ingest.testing.watcher import Clock, muon_file, record_at, run_watcher, watch_config, watcher


def recorded(state: StateStore, path: str | Path) -> FileRecord:
    """The newest record of a watched path; a path without one fails the test here."""
    record = record_at(state, path)
    assert record is not None, f"no record for {path}"
    return record


def found_run(index: RunIndex, path: str) -> RunRecord:
    """The run ``index`` matches ``path`` to; a path it matches to no run fails the test here."""
    run = index.find(path)
    assert run is not None, f"no run for {path}"
    return run


def status_at(state: StateStore, path: str | Path) -> str | None:
    """The status of a watched path's newest record, None before it has one (for ``wait_for``)."""
    record = record_at(state, path)
    return record.status if record is not None else None


def test_a_growing_or_half_copied_file_is_not_settled_until_complete(tmp_path: Path) -> None:
    full = muon_file(tmp_path / "src.nxs").read_bytes()
    watched = tmp_path / "archive"
    watched.mkdir()
    target = watched / "MUSR00000001.nxs"
    target.write_bytes(full[: len(full) // 2])
    clock = Clock()
    w = watcher(watched, clock)
    try:
        assert w.poll() == []
        clock.now += 5  # unchanged longer than the quiet period, but half an HDF5 file
        assert w.poll() == []
        assert hdf5_verdict(str(target)) == WAIT
        with open(target, "ab") as fh:  # the copy goes on: the quiet period starts again
            fh.write(full[len(full) // 2:])
        assert w.poll() == []
        clock.now += 1
        assert w.poll() == []
        clock.now += 5
        assert w.poll() == [str(target)]
        w.take(str(target))
        clock.now += 5
        assert w.poll() == []
    finally:
        w.close()


def test_a_file_that_is_not_hdf5_is_handed_over_to_fail_visibly(tmp_path: Path) -> None:
    (tmp_path / "junk.nxs").write_bytes(b"this is not an HDF5 file at all")
    (tmp_path / "empty.nxs").write_bytes(b"")
    (tmp_path / "notes.txt").write_bytes(b"ignored: no pattern matches")
    assert hdf5_verdict(str(tmp_path / "junk.nxs")) == BAD
    assert hdf5_verdict(str(tmp_path / "empty.nxs")) == WAIT  # a copy that has not written its first bytes
    clock = Clock()
    w = watcher(tmp_path, clock, inotify=False)
    clock.now += 5
    assert w.poll() == [str(tmp_path / "junk.nxs")]


@pytest.mark.parametrize("inotify", [True, False], ids=["inotify", "polling"])
def test_old_files_are_looked_up_once_and_never_stat_again(tmp_path: Path, inotify: bool) -> None:
    old = {str(muon_file(tmp_path / f"old_{i}.nxs", size_mb=0.01)) for i in range(20)}
    calls: list[str] = []
    clock = Clock()
    w = watcher(tmp_path, clock, known=old, inotify=inotify, calls=calls)
    try:
        assert sorted(calls) == sorted(old)
        new = str(muon_file(tmp_path / "new.nxs", size_mb=0.01))
        for _ in range(3):
            clock.now += 5
            time.sleep(0.05)
            settled = w.poll()
        assert settled == [new]
        assert sorted(calls) == sorted(old | {new})  # each name asked about exactly once
        assert w.mode == ("inotify" if inotify else "polling")
        if inotify:
            assert w.scans == 1  # only the start-up scan: the new file came from an inotify event
        else:
            assert w.scans >= 3
    finally:
        w.close()


def test_run_index_matches_file_name_and_run_name() -> None:
    index = RunIndex()
    start = SimpleNamespace(job_id="j1", run_name="MUSR00000007", filename="/writer/local/MUSR00000007.nxs")
    index.add_start(start, b"pl72", "t/0@0")
    other = SimpleNamespace(job_id="j2", run_name="run-b", filename="named_by_client.nxs")
    index.add_stop(SimpleNamespace(job_id="j2", run_name="run-b"))  # a stop read before its start
    index.add_start(other, b"pl72", "t/0@2")
    found = index.find("/archive/MUSR00000007.nxs")
    assert found is not None and found.job_id == "j1" and not found.stopped
    index.add_stop(SimpleNamespace(job_id="j1", run_name="MUSR00000007"))
    assert found_run(index, "/archive/MUSR00000007.nxs").stopped
    by_name = index.find("/elsewhere/named_by_client.nxs")
    assert by_name is not None and by_name.job_id == "j2" and by_name.stopped
    assert found_run(index, "/archive/run-b.nxs").job_id == "j2"  # SuperMuSR names files after the run
    assert index.find("/archive/unknown.nxs") is None
    index.add_start(SimpleNamespace(job_id="j3", run_name="MUSR00000007", filename="MUSR00000007.nxs"), b"", "")
    assert found_run(index, "/archive/MUSR00000007.nxs").job_id == "j3"  # a re-used name is the newest run


def test_watcher_ingests_each_settled_file_once_across_restarts(tmp_path: Path) -> None:
    cfg = watch_config(tmp_path)
    archive = tmp_path / "archive"
    archive.mkdir()
    for i in range(3):
        muon_file(archive / f"MUSR0000010{i}.nxs", run_name=f"MUSR0000010{i}")
    (archive / "broken.nxs").write_bytes(b"not HDF5, never will be")
    state = StateStore(tmp_path / "state")
    sink = CatalogueDir(str(tmp_path / "catalogue"))
    options = WatchOptions([str(archive)], quiet_period=0.2, poll_interval=0.1, workers=2)

    first = run_watcher(cfg, options, state, sink, lambda: len(state.files()) >= 4)
    assert first.outcomes == {"created": 3, "failed": 1}
    exported = first.metrics.render()
    assert 'sfi_datasets_total{outcome="created"} 3' in exported
    assert 'sfi_datasets_total{outcome="failed"} 1' in exported
    assert {name: ok for name, (ok, _detail) in first.health().items()} == {"folders": True, "scicat": True,
                                                                           "state": True}
    assert {r.status for r in state.files()} == {"created", "failed"}
    failed = state.files(("failed",))
    assert [Path(r.writer_path).name for r in failed] == ["broken.nxs"]
    assert "HDF5" in (failed[0].error or "")
    docs = sorted((tmp_path / "catalogue").glob("*/dataset.json"))
    assert len(docs) == 3

    muon_file(archive / "MUSR00000200.nxs", run_name="MUSR00000200")  # arrives while nobody watches
    second = run_watcher(cfg, options, state, sink, lambda: len(state.files()) >= 5)
    time.sleep(0.5)  # anything ingested twice would show up now
    assert second.outcomes == {"created": 1}
    assert len(sorted((tmp_path / "catalogue").glob("*/dataset.json"))) == 4
    state.close()


def test_cli_rejects_a_missing_directory_and_a_supermusr_run_without_archive(sfi, tmp_path: Path) -> None:
    result = sfi("watch", str(tmp_path / "nope"), "--state-dir", str(tmp_path / "st"), "--catalogue-dir",
                 str(tmp_path / "cat"), "--processes", "0")
    assert result.returncode == 2, result.stderr
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    result = sfi("produce-test", "--writer", "supermusr", "-o", str(tmp_path))
    assert result.returncode == 2 and "--archive-dir" in result.stderr
    result = sfi("produce-test", "--writer", "supermusr", "-o", str(tmp_path), "--archive-dir", str(tmp_path))
    assert result.returncode == 2 and "must differ" in result.stderr
    result = sfi("produce-test", "--writer", "other", "-o", str(tmp_path))
    assert result.returncode == 2 and "kafka-to-nexus or supermusr" in result.stderr


def test_inotify_sees_a_file_renamed_into_the_folder(tmp_path: Path) -> None:
    watched = tmp_path / "w"
    watched.mkdir()
    clock = Clock()
    w = watcher(watched, clock)
    try:
        if w.mode != "inotify":
            pytest.skip("no inotify on this platform")
        src = muon_file(tmp_path / "elsewhere.nxs")
        os.rename(src, watched / "moved.nxs")
        time.sleep(0.05)
        clock.now += 5
        w.poll()
        clock.now += 5
        assert w.poll() == [str(watched / "moved.nxs")]
        assert w.scans == 1
        with h5py.File(watched / "moved.nxs") as fh:
            assert fh["raw_data_1/name"][()] == b"MUSR00000001"
        assert hdf5_verdict(str(watched / "moved.nxs")) == OK
    finally:
        w.close()


@pytest.mark.kafka
def test_a_file_waits_for_its_runs_stop_and_takes_the_run_start(tmp_path: Path, kafka_bootstrap: str,
                                                                topic: str) -> None:
    import json

    from streaming_data_types import serialise_6s4t, serialise_pl72

    from scicat_fw_ingest.kafka import ensure_topics, make_producer, produce_sync

    cfg_file = tmp_path / "sfi.toml"
    cfg_file.write_text(DEFAULTS_TOML + '\n[ingest]\nchecksum = "none"\n')
    cfg = load_config(cfg_file, env={}, overrides={"kafka": {"bootstrap.servers": kafka_bootstrap}})
    ensure_topics(cfg, [topic])
    producer = make_producer(cfg)
    job = "7d1e0c52-1313-4000-8000-000000000013"
    produce_sync(producer, topic, serialise_pl72(job, "/writer/local/MUSR00000300.nxs", start_time=1_700_000_000_000,
                                                 run_name="MUSR00000300", instrument_name="SuperMuSR",
                                                 metadata=json.dumps({"proposal_id": "RB2413013"})))
    archive = tmp_path / "archive"
    archive.mkdir()
    running = str(muon_file(archive / "MUSR00000300.nxs", run_name="MUSR00000300"))
    alone = str(muon_file(archive / "MUSR00000301.nxs", run_name="MUSR00000301"))  # no run start names it
    state = StateStore(tmp_path / "state")
    options = WatchOptions([str(archive)], quiet_period=0.2, poll_interval=0.1, topics=[topic], workers=2)
    w = Watcher(cfg, options, ingestor=Ingestor(cfg, CatalogueDir(str(tmp_path / "cat"))), state=state)
    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: record_at(state, alone) is not None and running in w.held, 30, "one ingested, one held")
        assert record_at(state, running) is None  # settled, but its run has not stopped
        produce_sync(producer, topic, serialise_6s4t(job, "MUSR00000300", "", "c0", 1_700_000_060_000))
        wait_for(lambda: record_at(state, running) is not None, 30, "the file of the stopped run")
    finally:
        w.stop()
        thread.join(30)
    record = recorded(state, running)
    assert record.status == "created" and record.pid == job and record.job_id == job
    docs = {json.loads(p.read_text())["pid"]: json.loads(p.read_text())
            for p in (tmp_path / "cat").glob("*/dataset.json")}
    assert docs[job]["proposalId"] == "RB2413013"  # the run start's metadata filled the dataset
    assert docs[job]["datasetName"] == "MUSR00000300"
    assert recorded(state, alone).pid != job and recorded(state, alone).status == "created"
    state.close()


def test_scicat_down_queues_the_file_and_the_watcher_retries_it(tmp_path: Path) -> None:
    from scicat_fw_ingest.scicat import ScicatClient
    from scicat_fw_ingest.testing.scicat_server import ScicatTestServer

    archive = tmp_path / "archive"
    archive.mkdir()
    path = str(muon_file(archive / "MUSR00000400.nxs", run_name="MUSR00000400"))
    cfg_file = tmp_path / "sfi.toml"
    cfg_file.write_text(DEFAULTS_TOML + '\n[ingest]\nchecksum = "md5"\n[scicat]\nmax_attempts = 1\nbackoff = 0.05\n')
    with ScicatTestServer() as scicat:
        cfg = load_config(cfg_file, env={"SFI_SCICAT_URL": scicat.url, "SFI_SCICAT_TOKEN": scicat.token})
        scicat.refuse()
        sink = ScicatClient.from_config(cfg.scicat)
        state = StateStore(tmp_path / "state")
        options = WatchOptions([str(archive)], quiet_period=0.2, poll_interval=0.1, retry_base=0.3, retry_max=0.6)
        w = Watcher(cfg, options, ingestor=Ingestor(cfg, sink), state=state)
        thread = threading.Thread(target=w.run, daemon=True)
        thread.start()
        try:
            wait_for(lambda: (record_at(state, path) or SimpleNamespace(status="")).status == "queued", 30,
                     "the file queued while SciCat is down")
            assert not scicat.datasets
            scicat.resume()
            wait_for(lambda: status_at(state, path) == "created", 30, "the retry after SciCat is back")
        finally:
            w.stop()
            thread.join(30)
            sink.close()
        record = recorded(state, path)
        assert record.attempts >= 2 and record.source.startswith("watch:")
        assert len(state.files()) == 1  # retried under the key it was queued with, not recorded anew
        st = os.stat(path)
        assert record.file_key == watched_identity(path, st.st_size, st.st_mtime_ns) != path
        assert record.pid is not None
        assert len(scicat.datasets) == 1 and len(scicat.origdatablocks[record.pid]) == 1
        state.close()


def test_health_and_metrics_are_served(tmp_path: Path) -> None:
    import json
    import socket
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = {k: v for k, v in os.environ.items() if not k.startswith("SFI_")}
    proc = subprocess.Popen([sys.executable, "-m", "scicat_fw_ingest", "watch", str(tmp_path), "--processes", "0",
                             "--state-dir", str(tmp_path / "st"), "--catalogue-dir", str(tmp_path / "cat"),
                             "--http-port", str(port)], env=base, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def get(path: str) -> bytes | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
                    return answer.read()
            except OSError:
                return None

        wait_for(lambda: get("/health") is not None, 30, "the ops port")
        health = json.loads(get("/health") or b"{}")
        assert health["checks"]["folders"]["ok"] and health["checks"]["state"]["ok"], health
        assert b"sfi_watch_pending_files 0" in (get("/metrics") or b"")
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, proc.stderr.read().decode() if proc.stderr else ""


def test_cli_watched_folder_is_the_data_root_a_symlink_out_of_it_is_rejected(sfi, tmp_path: Path) -> None:
    """The watched folders are the data roots: a link in them pointing elsewhere is rejected, never opened."""
    import signal
    import subprocess
    import sys

    archive, outside, state = tmp_path / "archive", tmp_path / "outside", tmp_path / "state"
    archive.mkdir()
    outside.mkdir()
    muon_file(archive / "MUSR00000011.nxs", run_name="MUSR00000011")
    muon_file(outside / "MUSR00000012.nxs", run_name="MUSR00000012")
    (archive / "MUSR00000012.nxs").symlink_to(outside / "MUSR00000012.nxs")
    config = tmp_path / "sfi.toml"
    config.write_text(DEFAULTS_TOML)
    base = {k: v for k, v in os.environ.items() if not k.startswith("SFI_")}
    args = [sys.executable, "-m", "scicat_fw_ingest", "watch", str(archive), "--settle", "0.2", "--poll-interval",
            "0.2", "--processes", "0", "--state-dir", str(state), "--catalogue-dir", str(tmp_path / "cat"),
            "-c", str(config)]
    proc = subprocess.Popen(args, env=base, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def settled() -> bool:
            if not (state / "sfi-state.sqlite3").exists():
                return False
            return {r.status for r in StateStore(state).files()} >= {"created", "rejected"}
        wait_for(settled, 30, "one file created and the symlinked one rejected")
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode()
    records = {Path(r.writer_path).name: r for r in StateStore(state).files()}
    assert records["MUSR00000011.nxs"].status == "created", out
    assert records["MUSR00000012.nxs"].status == "rejected"
    assert "outside the data roots" in (records["MUSR00000012.nxs"].error or "")
    assert "Traceback" not in out
    # a configured data root that does not hold the watched folder is a configuration error, before any work
    result = sfi("watch", str(archive), "--state-dir", str(state), "--catalogue-dir", str(tmp_path / "cat"),
                 env={"SFI_INGEST_DATA_ROOTS": str(outside)})
    assert result.returncode == 2 and "outside [ingest] data_roots" in result.stderr
