"""`sfi listen` and the files a wrdn names: rejected outside the roots, failed when gone for good, new at a reused
path."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from scicat_fw_ingest.daemon.state import FileRecord, StateStore
from scicat_fw_ingest.testing.listener import (
    WRITER_PREFIX,
    config_file,
    listener,
    make_jobs,
    publish,
    wait_for,
    write_ess_file,
)
from scicat_fw_ingest.testing.scicat_server import ScicatTestServer

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def error_of(record: FileRecord) -> str:
    """The error a failed or rejected record holds; a record without one fails the test here."""
    assert record.error is not None, record
    return record.error


@pytest.fixture
def scicat():
    with ScicatTestServer() as server:
        yield server


def test_rejected_failed_and_reused_paths(tmp_path, kafka_config, kafka_bootstrap, scicat, topic, sfi) -> None:
    data_dir = tmp_path / "data"
    first, outside, too_long, missing, cut = make_jobs(data_dir, 5, topic=topic)
    whole = (data_dir / cut.filename).read_bytes()
    (data_dir / cut.filename).write_bytes(whole[: len(whole) // 2])  # a damaged file: failed at once, not queued
    outside.written_path = "/etc/passwd"
    too_long.written_path = f"{WRITER_PREFIX}/{'x' * 300}.nxs"
    missing.written_path = f"{WRITER_PREFIX}/never_written.nxs"
    # a new run written later to the same path as the first (a writer reusing names)
    reused = dataclasses.replace(first, job_id="11111111-2222-3333-4444-555555555555", run_name="run_again")
    cfg_path = config_file(tmp_path, data_dir, "")
    cfg_path.write_text(cfg_path.read_text().replace("file_wait = 2.0", "file_wait = 0.5\nmissing_hours = 0.001"))
    publish(kafka_config, [first, outside, too_long, missing, cut])
    proc = listener(tmp_path, "f", bootstrap=kafka_bootstrap, scicat=scicat, cfg_path=cfg_path, topic=topic,
                    group=f"g-{topic}").start()
    state_dir = tmp_path / "state-f"
    try:
        wait_for(lambda: len(scicat.origdatablocks) == 1, 60, "the first file's dataset")
        # written beside and renamed over: the listener may still hold the first file open (its preview), and
        # HDF5's lock would refuse a writer truncating it in place
        write_ess_file(data_dir / f".{first.filename}.new", reused)
        os.replace(data_dir / f".{first.filename}.new", data_dir / first.filename)
        publish(kafka_config, [reused])
        wait_for(lambda: len(scicat.origdatablocks) == 2, 60, "the new file at the reused path")
        wait_for(lambda: StateStore(state_dir).counts().get("queued", 0) == 0, 60, "the missing file to give up")
    finally:
        assert proc.terminate() == 0, proc.log()[-3000:]
    store = StateStore(state_dir)
    records = {r.writer_path: r for r in store.files()}
    assert records["/etc/passwd"].status == "rejected"
    assert "outside the data roots" in error_of(records["/etc/passwd"])
    assert records[too_long.written_path].status == "failed" and records[too_long.written_path].attempts == 1
    assert "too long" in error_of(records[too_long.written_path])
    gone = records[missing.written_path]
    assert gone.status == "failed" and "gave up after" in error_of(gone) and gone.attempts > 1
    assert sorted(p.rsplit("/", 1)[-1] for p in scicat.datasets) == sorted([first.job_id, reused.job_id])
    assert cut.written_path is not None
    damaged = records[cut.written_path]
    assert damaged.status == "failed" and damaged.attempts == 1 and "truncated file" in error_of(damaged)
    assert store.counts() == {"created": 2, "rejected": 1, "failed": 3}
    rows = [json.loads(line) for line in sfi("failures", "--json", env={"SFI_STATE_DIR": str(state_dir)}).stdout
            .splitlines()]
    assert {(r["status"], r["file"]) for r in rows if r["kind"] == "file"} >= {("rejected", "/etc/passwd")}
    log = proc.log()
    rejected_lines = [line for line in log.splitlines() if "/etc/passwd" in line and "rejected" in line]
    assert len(rejected_lines) == 1 and "WARNING" in rejected_lines[0]
    assert Path("/etc/passwd").exists()


def test_garbage_through_the_broker_keeps_the_state_small_and_health_logs_in_once(
        tmp_path, kafka_config, kafka_bootstrap, topic, sfi) -> None:
    import os
    import urllib.request

    from scicat_fw_ingest.kafka import ensure_topics, make_producer
    from scicat_fw_ingest.testing.broker import free_port

    data_dir = tmp_path / "data"
    (job,) = make_jobs(data_dir, 1, topic=topic)
    ensure_topics(kafka_config, [topic])
    producer = make_producer(kafka_config)
    garbage = bytearray(os.urandom(512 * 1024))  # a misrouted detector stream: big undecodable messages
    for i in range(60):
        garbage[:4] = i.to_bytes(4, "big")
        producer.produce(topic, bytes(garbage))
    assert producer.flush(30) == 0
    publish(kafka_config, [job])
    cfg_path = config_file(tmp_path, data_dir, "bad_messages_max = 20\nhealth_interval = 3600\n")
    port = free_port()
    with ScicatTestServer(users={"ingestor": "ingestor-password"}) as scicat:
        proc = listener(tmp_path, "g", bootstrap=kafka_bootstrap, scicat=scicat, cfg_path=cfg_path, topic=topic,
                        group=f"g-{topic}", extra=["--http-port", str(port), "--processes", "0"],
                        env_extra={"SFI_SCICAT_TOKEN": "", "SFI_SCICAT_USERNAME": "ingestor",
                                   "SFI_SCICAT_PASSWORD": "ingestor-password"})
        proc.start()
        try:
            wait_for(lambda: len(scicat.origdatablocks) == 1, 60, "the good file's dataset after the garbage")
            for _ in range(20):  # a scrape storm: answered from the cache, no login per request
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
                    assert json.loads(answer.read())["status"] == "ok"
            logins = [r for r in scicat.requests if r.path.endswith("/auth/login") or r.path.endswith("/Users/login")]
        finally:
            assert proc.terminate() == 0, proc.log()[-3000:]
    assert 1 <= len(logins) <= 2  # the health thread's client and the ingest worker's, never one per /health
    state = tmp_path / "state-g" / "sfi-state.sqlite3"
    size = sum(f.stat().st_size for f in state.parent.iterdir())
    assert size < 2 * 1024 * 1024  # 60 x 512 KiB went through: ~30 MB if kept whole
    rows = [json.loads(line) for line in sfi("failures", "--json", env={"SFI_STATE_DIR": str(state.parent)})
            .stdout.splitlines()]
    messages = [r for r in rows if r["kind"] == "message"]
    assert 20 <= len(messages) <= 21 and all(r["length"] == 512 * 1024 and len(r["sha256"]) == 64 for r in messages)
    assert f"{topic}/0@59" in {r["source"] for r in messages}  # the newest are kept
