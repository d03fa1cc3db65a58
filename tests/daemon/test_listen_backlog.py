"""Bounded under big messages and backlog (issue 23.1, 23.4): what the state keeps of a run start, and how many
files the listener holds in memory, on the real broker with real files and the SciCat test server."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

import pytest
from streaming_data_types.finished_writing_wrdn import serialise_wrdn
from streaming_data_types.run_start_pl72 import serialise_pl72

from scicat_fw_ingest.completion.wrdn import run_info_for
from scicat_fw_ingest.daemon.compact import METADATA_KEPT
from scicat_fw_ingest.daemon.state import StateStore
from scicat_fw_ingest.simulate import job_messages
from scicat_fw_ingest.testing.broker import free_port
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


@pytest.fixture
def scicat():
    with ScicatTestServer() as server:
        yield server


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


def _huge_structure(size: int) -> str:
    """A valid nexus_structure of about ``size`` bytes (many streams, as a big instrument's is)."""
    stream = {"module": "f144", "config": {"source": "motor_" + "x" * 200, "topic": "motion", "dtype": "double"}}
    one = len(json.dumps(stream)) + 2
    return json.dumps({"children": [{"name": "entry", "type": "group", "children": [stream] * (size // one)}]})


def _big_metadata() -> str:
    """Proposal first (what the profile maps), then ~100 KiB of further keys: more than ``METADATA_KEPT``."""
    return json.dumps({"proposal_id": "p2026001", **{f"extra_{i:03d}": "v" * 1000 for i in range(100)}})


@pytest.mark.kafka
def test_a_huge_run_start_is_stored_compacted_and_its_file_ingested(tmp_path, data_dir, kafka_config,
                                                                    kafka_bootstrap, scicat, topic) -> None:
    jobs = make_jobs(data_dir, 1, topic=topic)
    job = jobs[0]
    job.nexus_structure, job.metadata = _huge_structure(850_000), _big_metadata()  # under the 1 MB producer limit
    pl72 = next(value for _topic, value in job_messages(job) if value[4:8] == b"pl72")
    assert len(pl72) > 900_000
    publish(kafka_config, jobs)
    proc = listener(tmp_path, "big", bootstrap=kafka_bootstrap, scicat=scicat,
                    cfg_path=config_file(tmp_path, data_dir), topic=topic, group=f"g-{topic}").start()
    try:
        wait_for(lambda: len(scicat.origdatablocks) == 1, 60, "the dataset of the huge run start")
    finally:
        assert proc.terminate() == 0, proc.log()[-3000:]
    assert_each_once(scicat, jobs, data_dir)
    assert next(iter(scicat.datasets.values()))["proposalId"] == "p2026001"  # from the kept metadata
    state = StateStore(tmp_path / "state-big")
    try:
        kept = state.get_run_start(job.job_id)
        assert kept is not None and len(kept) < METADATA_KEPT + 4096
        assert state.run_start_original(job.job_id) == (len(pl72), hashlib.sha256(pl72).hexdigest())
        (record,) = state.files()
        assert len(record.wrdn) < METADATA_KEPT + 4096  # kafka-to-nexus copies the metadata into the wrdn
    finally:
        state.close()
    log = proc.log()
    assert f"metadata of {len(job.metadata)} bytes exceeds {METADATA_KEPT}" in log
    assert max(len(line.encode()) for line in log.splitlines()) <= 8192


_OLD_SCHEMA = """
CREATE TABLE run_starts (job_id TEXT PRIMARY KEY, received_at REAL NOT NULL, source TEXT NOT NULL,
                         payload BLOB NOT NULL);
CREATE TABLE files (file_key TEXT PRIMARY KEY, job_id TEXT, writer_path TEXT NOT NULL, status TEXT NOT NULL,
                    pid TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL,
                    updated_at REAL NOT NULL, source TEXT NOT NULL, wrdn BLOB NOT NULL, first_seen REAL,
                    verify_at REAL);
CREATE TABLE bad_messages (source TEXT PRIMARY KEY, reason TEXT NOT NULL, received_at REAL NOT NULL, payload BLOB,
                           payload_length INTEGER, payload_sha256 TEXT);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
PRAGMA user_version = 3;
"""


def test_a_database_holding_whole_messages_is_compacted_once_at_open(tmp_path) -> None:
    """A state written before the bound (schema 3, messages stored whole) shrinks at its first open; the
    step is keyed on its columns and a meta flag, so a second open changes nothing."""
    path = tmp_path / "sfi-state.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(_OLD_SCHEMA)
    metadata = _big_metadata()
    run_starts = {f"job-{i}": serialise_pl72(job_id=f"job-{i}", filename=f"/w/run_{i}.nxs", start_time=1000 + i,
                                             run_name=f"run_{i}", nexus_structure=_huge_structure(300_000),
                                             instrument_name="DREAM", metadata=metadata) for i in range(20)}
    wrdn = serialise_wrdn("svc", "job-0", False, "/w/run_0.nxs", metadata, "")
    for job_id, payload in run_starts.items():
        db.execute("INSERT INTO run_starts VALUES (?, ?, ?, ?)", (job_id, time.time(), "t/0@1", payload))
    db.execute("INSERT INTO files (file_key, job_id, writer_path, status, updated_at, source, wrdn) "
               "VALUES (?, ?, ?, 'queued', ?, 't/0@2', ?)", ("/w/run_0.nxs#job=job-0", "job-0", "/w/run_0.nxs",
                                                            time.time(), wrdn))
    db.commit()
    db.close()
    before = path.stat().st_size
    assert before > 6_000_000

    state = StateStore(tmp_path)
    try:
        for job_id, original in run_starts.items():
            kept = state.get_run_start(job_id)
            assert kept is not None and len(kept) < METADATA_KEPT + 4096
            assert state.run_start_original(job_id) == (len(original), hashlib.sha256(original).hexdigest())
        record = state.get_file("/w/run_0.nxs#job=job-0")
        assert record is not None and len(record.wrdn) < METADATA_KEPT + 4096
        run = run_info_for(state, record.wrdn)  # what ingestion is told: unchanged but for the cut keys
        assert (run.job_id, run.run_name, run.instrument_name, run.start_time_ms, run.filename) == (
            "job-0", "run_0", "DREAM", 1000, "/w/run_0.nxs")
        assert run.metadata["proposal_id"] == "p2026001" and 0 < len(run.metadata) < 101
        kept_before = {job_id: state.get_run_start(job_id) for job_id in run_starts}
    finally:
        state.close()
    assert path.stat().st_size < before / 4
    row = sqlite3.connect(path).execute("SELECT wrdn_length, wrdn_sha256 FROM files").fetchone()
    assert row == (len(wrdn), hashlib.sha256(wrdn).hexdigest())

    again = StateStore(tmp_path)  # idempotent
    try:
        assert {job_id: again.get_run_start(job_id) for job_id in run_starts} == kept_before
        assert again.run_start_original("job-3") == (len(run_starts["job-3"]),
                                                     hashlib.sha256(run_starts["job-3"]).hexdigest())
    finally:
        again.close()


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.kafka
def test_files_held_in_memory_are_bounded_and_the_backlog_shows_as_unread(tmp_path, data_dir, kafka_config,
                                                                          kafka_bootstrap, scicat, topic) -> None:
    """With SciCat slow, at most ``inflight_max`` files are held in memory; the rest of the backlog waits in
    Kafka, where ``/metrics`` shows it as not yet read, and every file is still ingested once."""
    import urllib.request

    jobs = make_jobs(data_dir, 12, topic=topic)
    publish(kafka_config, jobs)
    port = free_port()
    scicat.slow(1.0)
    proc = listener(tmp_path, "m", bootstrap=kafka_bootstrap, scicat=scicat,
                    cfg_path=config_file(tmp_path, data_dir, "inflight_max = 2\n"), topic=topic,
                    group=f"g-{topic}", extra=["--http-port", str(port)]).start()
    samples: list[str] = []

    def scrape() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
                samples.append(resp.read().decode())
        except OSError:
            samples.append("")
        return samples[-1]

    try:
        wait_for(lambda: "held in memory ([listen] inflight_max): consumption paused" in proc.log(), 60,
                 "consumption to pause at inflight_max")
        wait_for(lambda: (_metric(scrape(), "sfi_messages_unread") or 0) > 0, 30, "/metrics to show the backlog")
        backlog = samples[-1]
        lags = [float(line.rsplit(" ", 1)[1]) for line in backlog.splitlines()
                if line.startswith("sfi_consumer_lag{") and f'topic="{topic}"' in line]
        assert lags and lags[0] > 0, backlog
        scicat.slow(0.0)
        wait_for(lambda: sum(len(v) for v in scicat.origdatablocks.values()) >= 12 and bool(scrape()), 90,
                 "all 12 datasets")
    finally:
        assert proc.terminate() == 0, proc.log()[-3000:]
    assert_each_once(scicat, jobs, data_dir)
    assert committed(kafka_config, f"g-{topic}", topic) == [72]
    held = [(_metric(s, "sfi_files_queued_in_memory") or 0) + (_metric(s, "sfi_files_ingesting") or 0)
            for s in samples if s]
    assert held and max(held) <= 2, held
    assert proc.log().count("held in memory ([listen] inflight_max)") == 1  # one line per backlog, not per pause
