"""`sfi listen` when a topic it consumes is deleted: it keeps running (restarted once, with one line) and goes on."""

from __future__ import annotations

import dataclasses

import pytest

from scicat_fw_ingest.kafka import make_admin
from scicat_fw_ingest.testing.listener import config_file, listener, make_jobs, publish, wait_for
from scicat_fw_ingest.testing.scicat_server import ScicatTestServer

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def scicat():
    with ScicatTestServer() as server:
        yield server


@pytest.mark.parametrize("subscription", ["list", "regex"])
def test_deleting_a_consumed_topic_leaves_the_listener_running(tmp_path, kafka_config, kafka_bootstrap, scicat,
                                                               topic, subscription) -> None:
    data_dir = tmp_path / "data"
    doomed_topic, kept_topic = f"{topic}_doomed", f"{topic}_kept"
    topics_of_jobs = (doomed_topic, kept_topic, kept_topic)
    doomed, kept, later = (dataclasses.replace(job, control_topic=t, pool_topic=t) for job, t in
                           zip(make_jobs(data_dir, 3, topic=topic), topics_of_jobs, strict=True))
    publish(kafka_config, [doomed, kept])
    cfg_path = config_file(tmp_path, data_dir)
    topics = ["--topic", f"^{topic}_.*"] if subscription == "regex" else ["--topic", kept_topic]
    proc = listener(tmp_path, "d", bootstrap=kafka_bootstrap, scicat=scicat, cfg_path=cfg_path,
                    topic=doomed_topic if subscription == "list" else kept_topic, group=f"g-{topic}",
                    extra=topics).start()
    assert proc.proc is not None
    popen = proc.proc
    try:
        wait_for(lambda: len(scicat.origdatablocks) == 2, 60, "both files before the deletion")
        admin = make_admin(kafka_config)
        for future in admin.delete_topics([doomed_topic]).values():
            future.result(10)
        wait_for(lambda: "restarting it" in proc.log() or popen.poll() is not None, 10,
                 "the crash (or nothing) after the deletion")  # Tansu: librdkafka SIGSEGVs within ~0.5 s
        publish(kafka_config, [later])
        wait_for(lambda: len(scicat.origdatablocks) == 3, 60, "a file on the kept topic after the deletion")
        assert popen.poll() is None, proc.log()[-3000:]
    finally:
        code = proc.terminate()
    log = proc.log()
    assert code == 0, log[-3000:]
    crash_lines = [line for line in log.splitlines() if "the listener process died of" in line]
    assert len(crash_lines) <= 1, crash_lines
    if crash_lines:
        assert "SIGSEGV" in crash_lines[0] and "consumed topic is deleted" in crash_lines[0]
        assert "ERROR" in crash_lines[0]
    assert sorted(p.rsplit("/", 1)[-1] for p in scicat.datasets) == sorted(j.job_id for j in (doomed, kept, later))
