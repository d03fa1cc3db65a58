"""Acceptance of the real-backend issue: `sfi listen` keeps working while its SciCat token expires.

On each backend version started with ``JWT_EXPIRES_IN=20``: 100 jobs arrive spread over
``SPREAD`` seconds; all 100 datasets appear with one datablock each and the file's size, none failed.
The spread is 65 s rather than 90 s (the test suite's time budget): the token expires at 20, 40 and
60 s, so every run crosses expiry three times — the renewal happens before each expiry (``expires_in``)
or, failing that, on the 401 (5.1.0) or 403 (4.5.0) that follows it. The account is the non-admin
ingestor and the datasets' groups are not its own, so nothing can be read back: the hardest case.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from pathlib import Path

import pytest

from scicat_fw_ingest.kafka import ensure_topics, make_producer
from scicat_fw_ingest.scicat import pid_path
from scicat_fw_ingest.simulate import job_messages
from scicat_fw_ingest.testing.backend import VERSIONS
from scicat_fw_ingest.testing.fault_proxy import FaultProxy
from scicat_fw_ingest.testing.listener import ListenerProcess, config_file, make_jobs, wait_for

pytestmark = pytest.mark.kafka

JOBS = int(os.environ.get("SFI_TEST_EXPIRY_JOBS", "100"))
SPREAD = float(os.environ.get("SFI_TEST_EXPIRY_SPREAD", "65"))


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_listen_ingests_100_jobs_while_the_token_expires(tmp_path: Path, real_scicat_factory, kafka_config,
                                                         kafka_bootstrap: str, topic: str, version: str) -> None:
    backend = real_scicat_factory(version, jwt_expires_in=20)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    jobs = make_jobs(data_dir, JOBS, topic=topic)
    cfg_path = config_file(tmp_path, data_dir)
    proxy = FaultProxy(backend.base).start()  # injects nothing: counts the logins
    env = {"SFI_KAFKA_BOOTSTRAP": kafka_bootstrap, "SFI_SCICAT_URL": proxy.url, "SFI_SCICAT_USERNAME": "ingestor",
           "SFI_SCICAT_PASSWORD": "ingestorpass", "SFI_CONFIG": str(cfg_path), "SFI_STATE_DIR": str(tmp_path / "state"),
           "SFI_SCICAT_LOCK_DIR": str(tmp_path / "locks")}
    ensure_topics(kafka_config, [topic])
    proc = ListenerProcess(["--topic", topic, "--group", f"g-{topic}"], env, tmp_path / "listen.log").start()
    started = time.monotonic()
    try:
        producer = make_producer(kafka_config)
        for i, job in enumerate(jobs):
            for t, value in job_messages(job)[1:]:
                producer.produce(t, value, key=job.job_id.encode())
            producer.poll(0)
            time.sleep(max(0.0, started + (i + 1) * SPREAD / JOBS - time.monotonic()))
        assert producer.flush(20) == 0
        wait_for(lambda: proc.log().count(" -> pid ") >= JOBS, 120, f"{JOBS} ingested files")
    finally:
        try:
            assert proc.terminate() == 0, proc.log()[-3000:]
        finally:
            proxy.stop()
    log = proc.log()
    logins = sum(path.endswith("/auth/login") for _, path in proxy.forwarded)
    if SPREAD >= 60:  # every SciCat-talking process renewed its 20 s token at least three times
        assert logins >= 4, f"{logins} logins in {time.monotonic() - started:.0f} s"
    assert "failed " not in log and "will retry" not in log, log[-3000:]
    where = {"where": {"sourceFolder": str(data_dir)}, "limit": 1000}
    status, docs = backend.request("GET", "/api/v3/Datasets?filter=" + urllib.parse.quote(json.dumps(where)))
    assert status == 200 and len(docs) == JOBS
    by_job = {job.job_id: job for job in jobs}
    seen = set()
    for doc in docs:
        job = next(by_job[j] for j in by_job if doc["pid"].endswith(j))
        seen.add(job.job_id)
        size = (data_dir / job.filename).stat().st_size
        status, blocks = backend.request("GET", f"/api/v3/Datasets/{pid_path(doc['pid'])}/origdatablocks")
        assert status == 200 and len(blocks) == 1, f"{job.job_id}: {len(blocks)} datablocks"
        assert (doc["size"], doc["numberOfFiles"]) == (size, 1)
    assert seen == set(by_job)


def test_an_expired_static_token_queues_files_then_a_new_token_ingests_them(tmp_path: Path, kafka_config,
                                                                           kafka_bootstrap: str, topic: str) -> None:
    """A static token that SciCat refuses makes files queued (retryable), never failed; a restart with a new
    token ingests them from the durable retry queue."""
    from scicat_fw_ingest.testing.listener import publish
    from scicat_fw_ingest.testing.scicat_server import ScicatTestServer

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    jobs = make_jobs(data_dir, 3, topic=topic)
    cfg_path = config_file(tmp_path, data_dir)
    with ScicatTestServer() as server:
        old = server.token
        server.expire_tokens()
        env = {"SFI_KAFKA_BOOTSTRAP": kafka_bootstrap, "SFI_SCICAT_URL": server.url, "SFI_SCICAT_TOKEN": old,
               "SFI_CONFIG": str(cfg_path), "SFI_STATE_DIR": str(tmp_path / "state"),
               "SFI_SCICAT_LOCK_DIR": str(tmp_path / "locks")}
        args = ["--topic", topic, "--group", f"g-{topic}"]
        publish(kafka_config, jobs)
        first = ListenerProcess(args, env, tmp_path / "first.log").start()
        from scicat_fw_ingest.daemon.state import StateStore

        def queued() -> int:
            if not (tmp_path / "state" / "sfi-state.sqlite3").exists():
                return 0
            return sum(1 for r in StateStore(tmp_path / "state").files() if r.status == "queued")

        try:
            wait_for(lambda: queued() >= 3, 60, "3 queued files")
        finally:
            assert first.terminate() == 0, first.log()[-3000:]
        # said once while it lasts, not once per file or per attempt
        assert first.log().count("SciCat token expired or refused: set a new one") == 1, first.log()[-3000:]
        assert "failed " not in first.log() and not server.datasets
        from scicat_fw_ingest.testing.sfi_process import run_sfi

        shown = run_sfi("failures", "--state-dir", str(tmp_path / "state"))
        assert shown.stdout.count("SciCat token expired or refused") == 1, shown.stdout
        assert "3 file(s) queued until SciCat accepts the credentials" in shown.stdout
        second = ListenerProcess(args, {**env, "SFI_SCICAT_TOKEN": server.token}, tmp_path / "second.log").start()
        try:
            wait_for(lambda: sum(len(v) for v in server.origdatablocks.values()) >= 3, 60, "3 datasets")
        finally:
            assert second.terminate() == 0, second.log()[-3000:]
        assert len(server.datasets) == 3
