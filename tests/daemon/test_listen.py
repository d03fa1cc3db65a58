"""`sfi listen` on the real broker and the SciCat test server: each finished file exactly once."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from scicat_fw_ingest.kafka import make_producer
from scicat_fw_ingest.simulate import job_messages
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

pytestmark = pytest.mark.kafka


@pytest.fixture
def scicat():
    with ScicatTestServer() as server:
        yield server


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


def test_n_jobs_give_n_datasets_and_offsets_are_committed(tmp_path, data_dir, kafka_config, kafka_bootstrap,
                                                           scicat, topic) -> None:
    jobs = make_jobs(data_dir, 5, topic=topic)
    publish(kafka_config, jobs)
    cfg_path = config_file(tmp_path, data_dir)
    proc = listener(tmp_path, "a", bootstrap=kafka_bootstrap, scicat=scicat, cfg_path=cfg_path, topic=topic,
                    group=f"g-{topic}").start()
    try:
        wait_for(lambda: sum(len(v) for v in scicat.origdatablocks.values()) >= 5, 60, "5 datablocks")
    finally:
        assert proc.terminate() == 0, proc.log()
    assert_each_once(scicat, jobs, data_dir)
    doc = next(iter(scicat.datasets.values()))
    assert doc["proposalId"] == "p2026001" and doc["type"] == "raw"
    assert doc["sourceFolder"] == str(data_dir)
    # 6 control messages per job, all committed after a clean stop
    assert committed(kafka_config, f"g-{topic}", topic) == [30]
    assert not any(r.headers.get("access_token") for r in scicat.requests)
    assert all("access_token" not in r.query for r in scicat.requests)
    assert scicat.token not in proc.log()


def test_kill_9_at_random_moments_then_restart_each_file_once(tmp_path, data_dir, kafka_config, kafka_bootstrap,
                                                               scicat, topic) -> None:
    jobs = make_jobs(data_dir, 200, topic=topic)
    publish(kafka_config, jobs, partitions=2)
    cfg_path = config_file(tmp_path, data_dir)
    rng = random.Random(4242)
    group = f"g-{topic}"
    kills = 0
    for _ in range(3):
        proc = listener(tmp_path, "k", bootstrap=kafka_bootstrap, scicat=scicat, cfg_path=cfg_path, topic=topic,
                        group=group).start()
        # let it join the group and get some way into the stream, then pull the plug mid-work
        wait_for(lambda p=proc: len(scicat.datasets) > 0 or p.proc.poll() is not None, 60,  # type: ignore[misc]
                 "a first dataset")
        time.sleep(rng.uniform(0.0, 1.5))
        proc.kill()
        kills += 1
        if len(scicat.datasets) == len(jobs):
            break
    proc = listener(tmp_path, "k", bootstrap=kafka_bootstrap, scicat=scicat, cfg_path=cfg_path, topic=topic,
                    group=group).start()
    try:
        wait_for(lambda: sum(len(v) for v in scicat.origdatablocks.values()) >= len(jobs), 120,
                 "all 200 datablocks")
        time.sleep(1.0)  # anything duplicated would land now
    finally:
        assert proc.terminate() == 0, proc.log()[-3000:]
    assert kills >= 1
    assert_each_once(scicat, jobs, data_dir)


def test_scicat_refusing_connections_loses_nothing(tmp_path, data_dir, kafka_config, kafka_bootstrap, scicat,
                                                   topic) -> None:
    jobs = make_jobs(data_dir, 10, topic=topic)
    cfg_path = config_file(tmp_path, data_dir)
    # two client attempts only, so that the outage outlasts them and the durable retry queue takes over
    proc = listener(tmp_path, "o", bootstrap=kafka_bootstrap, scicat=scicat, cfg_path=cfg_path, topic=topic,
                    group=f"g-{topic}", env_extra={"SFI_SCICAT_MAX_ATTEMPTS": "2"}).start()
    try:
        publish(kafka_config, jobs[:2])
        wait_for(lambda: len(scicat.datasets) == 2, 60, "the first 2 datasets")
        scicat.refuse()
        publish(kafka_config, jobs[2:])
        time.sleep(30.0)  # SciCat away for 30 s mid-stream; the listener keeps consuming and queues
        assert len(scicat.datasets) == 2
        # all read and recorded (queued), but the commit waits at the first queued file's wrdn (job 3, offset
        # 2 * 6 + 5): queued work stays the group's, so another member would redo it if this host died
        assert committed(kafka_config, f"g-{topic}", topic) == [17]
        scicat.resume()
        wait_for(lambda: sum(len(v) for v in scicat.origdatablocks.values()) >= 10, 60, "all 10 after the outage")
    finally:
        assert proc.terminate() == 0, proc.log()[-3000:]
    assert committed(kafka_config, f"g-{topic}", topic) == [60]
    assert_each_once(scicat, jobs, data_dir)
    assert "will retry" in proc.log()


def test_run_start_after_wrdn_duplicate_wrdn_and_writer_error(tmp_path, data_dir, kafka_config, kafka_bootstrap,
                                                              scicat, topic) -> None:
    late, dup, failed = make_jobs(data_dir, 3, topic=topic)
    failed.error = "disk full"
    producer = make_producer(kafka_config)
    publish(kafka_config, [dup, failed])
    seq = dict((value[4:8].decode(), value) for _, value in job_messages(late)[1:])
    producer.produce(topic, seq["wrdn"])  # finished before its run start arrives
    producer.produce(topic, seq["pl72"])
    producer.produce(topic, job_messages(dup)[-1][1])  # the same wrdn twice
    producer.produce(topic, b"not a flatbuffer at all")  # and a bad message in between
    producer.flush(10)
    cfg_path = config_file(tmp_path, data_dir)
    proc = listener(tmp_path, "e", bootstrap=kafka_bootstrap, scicat=scicat, cfg_path=cfg_path, topic=topic,
                    group=f"g-{topic}").start()
    try:
        wait_for(lambda: sum(len(v) for v in scicat.origdatablocks.values()) >= 2, 60, "2 datablocks")
        time.sleep(1.5)
    finally:
        assert proc.terminate() == 0
    assert_each_once(scicat, [late, dup], data_dir)
    late_doc = next(d for p, d in scicat.datasets.items() if p.endswith(late.job_id))
    assert late_doc["datasetName"] and late_doc["proposalId"] == "p2026001"
    env = {"SFI_STATE_DIR": str(tmp_path / "state-e")}
    from scicat_fw_ingest.testing.sfi_process import run_sfi

    report = run_sfi("failures", "--json", env=env)
    assert report.returncode == 0
    bad = [json.loads(line) for line in report.stdout.splitlines()]
    assert any(b["kind"] == "message" and b["source"] == f"{topic}/0@15" and "unknown schema id" in b["error"]
               for b in bad), bad
    total = 6 * 2 + 4
    assert committed(kafka_config, f"g-{topic}", topic) == [total]


def test_writer_error_ingested_when_configured(tmp_path, data_dir, kafka_config, kafka_bootstrap, scicat,
                                                topic) -> None:
    (job,) = make_jobs(data_dir, 1, topic=topic)
    job.error = "stream timed out"
    publish(kafka_config, [job])
    cfg_path = config_file(tmp_path, data_dir)
    proc = listener(tmp_path, "w", bootstrap=kafka_bootstrap, scicat=scicat, cfg_path=cfg_path, topic=topic,
                    group=f"g-{topic}", extra=["--on-writer-error", "ingest"]).start()
    try:
        wait_for(lambda: len(scicat.origdatablocks) == 1, 60, "the dataset of the failed write")
    finally:
        proc.terminate()
    doc = next(iter(scicat.datasets.values()))
    assert "stream timed out" in json.dumps(doc)


def test_two_listeners_share_four_partitions_without_duplicates(tmp_path, data_dir, kafka_config,
                                                                kafka_bootstrap, scicat, topic) -> None:
    jobs = make_jobs(data_dir, 40, topic=topic)
    publish(kafka_config, jobs, partitions=4)
    cfg_path = config_file(tmp_path, data_dir)
    group = f"g-{topic}"
    a = listener(tmp_path, "a", bootstrap=kafka_bootstrap, scicat=scicat, cfg_path=cfg_path, topic=topic,
                 group=group).start()
    b = listener(tmp_path, "b", bootstrap=kafka_bootstrap, scicat=scicat, cfg_path=cfg_path, topic=topic,
                 group=group).start()
    try:
        wait_for(lambda: sum(len(v) for v in scicat.origdatablocks.values()) >= 40, 90, "40 datablocks")
        time.sleep(1.0)
    finally:
        assert a.terminate() == 0 and b.terminate() == 0
    assert_each_once(scicat, jobs, data_dir)
    assert sum(committed(kafka_config, group, topic, 4)) == 6 * len(jobs)
    # both members did part of the work (the group split the four partitions between them)
    assert "created" in a.log() and "created" in b.log()


def test_broker_restart_is_survived(tmp_path, data_dir, scicat, topic) -> None:
    from scicat_fw_ingest.config import load_config
    from scicat_fw_ingest.testing.broker import TansuBroker

    with TansuBroker() as broker:  # a broker of its own: the test takes it away
        cfg = load_config(None, env={}, overrides={"kafka": {"bootstrap.servers": broker.bootstrap}})
        jobs = make_jobs(data_dir, 4, topic=topic)
        publish(cfg, jobs[:2])
        proc = listener(tmp_path, "r", bootstrap=broker.bootstrap, scicat=scicat,
                        cfg_path=config_file(tmp_path, data_dir), topic=topic, group=f"g-{topic}").start()
        try:
            wait_for(lambda: len(scicat.origdatablocks) == 2, 60, "2 datasets before the restart")
            broker.stop()
            time.sleep(2.0)
            assert proc.proc is not None and proc.proc.poll() is None, "the listener died with the broker"
            broker.start()  # memory storage: an empty broker comes back on the same port
            publish(cfg, jobs[2:])
            wait_for(lambda: len(scicat.origdatablocks) == 4, 90, "2 more datasets after the restart")
        finally:
            assert proc.terminate() == 0, proc.log()[-3000:]
    assert_each_once(scicat, jobs, data_dir)


def test_failures_listed_and_retry_now_redrives_them(tmp_path, data_dir, kafka_config, kafka_bootstrap, scicat,
                                                     topic, sfi) -> None:
    good, broken = make_jobs(data_dir, 2, topic=topic)
    (data_dir / broken.filename).write_bytes(b"this is not HDF5")  # a permanent failure: not retried by itself
    (data_dir / broken.filename).chmod(0o440)  # finished by its writer: judged at once, not after a settle time
    publish(kafka_config, [good, broken])
    cfg_path = config_file(tmp_path, data_dir)
    proc = listener(tmp_path, "f", bootstrap=kafka_bootstrap, scicat=scicat, cfg_path=cfg_path, topic=topic,
                    group=f"g-{topic}", extra=["--exit-when-idle", "2"]).start()
    assert proc.proc is not None
    assert proc.proc.wait(60) == 0, proc.log()
    assert len(scicat.datasets) == 1
    env = {"SFI_STATE_DIR": str(tmp_path / "state-f"), "SFI_CONFIG": str(cfg_path),
           "SFI_SCICAT_URL": scicat.url, "SFI_SCICAT_TOKEN": scicat.token}
    listed = sfi("failures", "--json", env=env)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["kind"], r["status"], Path(r["file"]).name) for r in rows] == [("file", "failed", broken.filename)]
    assert rows[0]["error"]
    table = sfi("failures", env={**env, "COLUMNS": "200"})
    assert table.returncode == 0 and broken.filename in table.stdout
    from scicat_fw_ingest.testing.listener import write_ess_file

    write_ess_file(data_dir / broken.filename, broken)  # the operator fixes the file
    redo = sfi("retry", "--now", "--json", env=env)
    assert redo.returncode == 0, redo.stderr
    assert json.loads(redo.stdout)["status"] == "created"
    assert_each_once(scicat, [good, broken], data_dir)
    assert sfi("failures", "--json", env=env).stdout == ""
    assert sfi("failures", env={"SFI_STATE_DIR": str(tmp_path / "nowhere")}).returncode == 2


def test_health_and_metrics_endpoints(tmp_path, data_dir, kafka_config, kafka_bootstrap, scicat, topic) -> None:

    from scicat_fw_ingest.testing.broker import free_port

    jobs = make_jobs(data_dir, 3, topic=topic)
    publish(kafka_config, jobs)
    port = free_port()
    proc = listener(tmp_path, "h", bootstrap=kafka_bootstrap, scicat=scicat,
                    cfg_path=config_file(tmp_path, data_dir, "health_interval = 0.5\n"),
                    topic=topic, group=f"g-{topic}", extra=["--http-port", str(port), "--log-format", "json"]).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: len(scicat.origdatablocks) == 3, 60, "3 datasets")
        wait_for(lambda: "sfi_datasets_total" in _get(f"{base}/metrics")[1], 10, "metrics")
        status, body = _get(f"{base}/health")
        assert status == 200 and json.loads(body)["status"] == "ok"
        metrics = _get(f"{base}/metrics")[1]
        assert 'sfi_datasets_total{outcome="created"} 3' in metrics
        assert 'sfi_messages_consumed_total{schema="wrdn"} 3' in metrics
        assert "sfi_retry_queue_depth 0" in metrics
        scicat.refuse()  # checks run in the background: /health answers from the last one
        wait_for(lambda: _get(f"{base}/health")[0] == 503, 10, "/health to see SciCat gone")
        assert json.loads(_get(f"{base}/health")[1])["checks"]["scicat"]["ok"] is False
        scicat.resume()
        wait_for(lambda: _get(f"{base}/health")[0] == 200, 10, "/health to see SciCat back")
        scicat.slow(8.0)  # SciCat hangs: /health still answers (from the cache) and says so
        wait_for(lambda: "no answer for" in _get(f"{base}/health")[1], 15, "/health to report the hanging SciCat")
        scicat.slow(0.0)
    finally:
        assert proc.terminate() == 0
    lines = [json.loads(line) for line in proc.log().splitlines() if line.startswith("{")]
    assert lines and all({"ts", "level", "msg"} <= set(entry) for entry in lines)
    assert scicat.token not in proc.log()


def _get(url: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_pattern_subscription_picks_up_a_control_topic_created_later(tmp_path, data_dir, kafka_config,
                                                                     kafka_bootstrap, scicat, topic) -> None:
    first, later = f"{topic}_a_control", f"{topic}_b_control"
    jobs = make_jobs(data_dir, 2, topic=first)
    jobs[1].control_topic = later
    publish(kafka_config, jobs[:1])
    proc = listener(tmp_path, "p", bootstrap=kafka_bootstrap, scicat=scicat, cfg_path=config_file(tmp_path, data_dir),
                    topic=f"^{topic}_.*_control$", group=f"g-{topic}").start()
    try:
        wait_for(lambda: len(scicat.origdatablocks) == 1, 60, "the dataset from the first control topic")
        publish(kafka_config, jobs[1:])  # a new job, on a control topic that did not exist at start
        wait_for(lambda: len(scicat.origdatablocks) == 2, 60, "the dataset from the new control topic")
    finally:
        assert proc.terminate() == 0, proc.log()[-3000:]
    assert_each_once(scicat, jobs, data_dir)


def test_a_partition_holding_held_max_queued_files_pauses_until_they_are_done(tmp_path, data_dir, kafka_config,
                                                                               kafka_bootstrap, scicat, topic) -> None:
    """Queued files keep their offsets uncommitted; the bound: a partition holding ``held_max`` of them stops
    being consumed (new wrdns wait in Kafka, not in memory) until they are done."""
    from scicat_fw_ingest.daemon.state import StateStore

    jobs = make_jobs(data_dir, 7, topic=topic)
    cfg_path = config_file(tmp_path, data_dir, "held_max = 3\n")
    scicat.refuse()
    publish(kafka_config, jobs[:4])
    proc = listener(tmp_path, "h", bootstrap=kafka_bootstrap, scicat=scicat, cfg_path=cfg_path, topic=topic,
                    group=f"g-{topic}", env_extra={"SFI_SCICAT_MAX_ATTEMPTS": "1"}).start()
    try:
        wait_for(lambda: "hold 3 queued file(s) each: consumption paused" in proc.log(), 60, "the partition to pause")
        publish(kafka_config, jobs[4:])
        time.sleep(3.0)
        seen = {r.job_id for r in StateStore(tmp_path / "state-h").files()}
        assert not seen & {j.job_id for j in jobs[4:]}, "a paused partition was consumed"
        assert committed(kafka_config, f"g-{topic}", topic) == [5]  # the first queued wrdn
        scicat.resume()
        wait_for(lambda: sum(len(v) for v in scicat.origdatablocks.values()) >= 7, 60, "all 7 after the outage")
    finally:
        assert proc.terminate() == 0, proc.log()[-3000:]
    assert "resumed" in proc.log()
    assert committed(kafka_config, f"g-{topic}", topic) == [42]
    assert_each_once(scicat, jobs, data_dir)
