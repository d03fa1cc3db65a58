"""`sfi listen` and the files a wrdn names: rejected outside the roots, failed when gone for good, new at a reused path."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from scicat_fw_ingest.state import StateStore
from scicat_fw_ingest.testing.scicat_server import ScicatTestServer

from .listen_helpers import WRITER_PREFIX, config_file, listener, make_jobs, publish, wait_for, write_ess_file

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def scicat():
    with ScicatTestServer() as server:
        yield server


def test_rejected_failed_and_reused_paths(tmp_path, kafka_config, kafka_bootstrap, scicat, topic, sfi) -> None:
    data_dir = tmp_path / "data"
    first, outside, too_long, missing = make_jobs(data_dir, 4, topic=topic)
    outside.written_path = "/etc/passwd"
    too_long.written_path = f"{WRITER_PREFIX}/{'x' * 300}.nxs"
    missing.written_path = f"{WRITER_PREFIX}/never_written.nxs"
    # a new run written later to the same path as the first (a writer reusing names)
    reused = dataclasses.replace(first, job_id="11111111-2222-3333-4444-555555555555", run_name="run_again")
    cfg_path = config_file(tmp_path, data_dir, "")
    cfg_path.write_text(cfg_path.read_text().replace("file_wait = 2.0", "file_wait = 0.5\nmissing_hours = 0.001"))
    publish(kafka_config, [first, outside, too_long, missing])
    proc = listener(tmp_path, "f", bootstrap=kafka_bootstrap, scicat=scicat, cfg_path=cfg_path, topic=topic,
                    group=f"g-{topic}").start()
    state_dir = tmp_path / "state-f"
    try:
        wait_for(lambda: len(scicat.origdatablocks) == 1, 60, "the first file's dataset")
        write_ess_file(data_dir / first.filename, reused)
        publish(kafka_config, [reused])
        wait_for(lambda: len(scicat.origdatablocks) == 2, 60, "the new file at the reused path")
        wait_for(lambda: StateStore(state_dir).counts().get("queued", 0) == 0, 60, "the missing file to give up")
    finally:
        assert proc.terminate() == 0, proc.log()[-3000:]
    store = StateStore(state_dir)
    records = {r.writer_path: r for r in store.files()}
    assert records["/etc/passwd"].status == "rejected"
    assert "outside the data roots" in records["/etc/passwd"].error
    assert records[too_long.written_path].status == "failed" and records[too_long.written_path].attempts == 1
    assert "too long" in records[too_long.written_path].error
    gone = records[missing.written_path]
    assert gone.status == "failed" and "gave up after" in gone.error and gone.attempts > 1
    assert sorted(p.rsplit("/", 1)[-1] for p in scicat.datasets) == sorted([first.job_id, reused.job_id])
    assert store.counts() == {"created": 2, "rejected": 1, "failed": 2}
    rows = [json.loads(line) for line in sfi("failures", "--json", env={"SFI_STATE_DIR": str(state_dir)}).stdout
            .splitlines()]
    assert {(r["status"], r["file"]) for r in rows if r["kind"] == "file"} >= {("rejected", "/etc/passwd")}
    log = proc.log()
    rejected_lines = [line for line in log.splitlines() if "/etc/passwd" in line and "rejected" in line]
    assert len(rejected_lines) == 1 and "WARNING" in rejected_lines[0]
    assert Path("/etc/passwd").exists()
