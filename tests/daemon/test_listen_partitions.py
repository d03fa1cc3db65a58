"""`sfi listen` when a job's run start (pl72) and its wrdn land on different partitions.

kafka-to-nexus copies the pl72 metadata verbatim into the wrdn, so a listener that never sees the
pl72 (another group member owns its partition) still has the job's metadata.
"""

from __future__ import annotations

import json
import time

import pytest

from scicat_fw_ingest.kafka import ensure_topics, make_producer
from scicat_fw_ingest.simulate import job_messages
from scicat_fw_ingest.testing.listener import ListenerProcess, config_file, make_jobs, wait_for
from scicat_fw_ingest.testing.scicat_server import ScicatTestServer

pytestmark = pytest.mark.kafka

PARTITIONS = 4


@pytest.mark.slow
def test_two_listeners_pl72_and_wrdn_on_different_partitions_all_complete(tmp_path, kafka_config, kafka_bootstrap,
                                                                         topic) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    jobs = make_jobs(data_dir, 40, topic=topic)
    for job in jobs:  # what only the run start says: the file does not hold it
        job.metadata = json.dumps({"proposal_id": "p2026001", "owner_group": f"group-{job.job_id[:8]}",
                                   "access_groups": ["dream", "split"]})
    ensure_topics(kafka_config, [topic], partitions=PARTITIONS)
    producer = make_producer(kafka_config)
    for i, job in enumerate(jobs):
        for _, value in job_messages(job)[1:]:
            partition = i % PARTITIONS if value[4:8] == b"pl72" else (i + 1) % PARTITIONS
            producer.produce(topic, value, partition=partition)
    assert producer.flush(20) == 0
    cfg_path = config_file(tmp_path, data_dir)
    with ScicatTestServer() as scicat:
        env = {"SFI_KAFKA_BOOTSTRAP": kafka_bootstrap, "SFI_SCICAT_URL": scicat.url,
               "SFI_SCICAT_TOKEN": scicat.token, "SFI_CONFIG": str(cfg_path)}
        members = [ListenerProcess(["--topic", topic, "--group", f"g-{topic}"],
                                   {**env, "SFI_STATE_DIR": str(tmp_path / f"state-{name}")},
                                   tmp_path / f"{name}.log").start() for name in ("a", "b")]
        try:
            wait_for(lambda: sum(len(v) for v in scicat.origdatablocks.values()) >= len(jobs), 120,
                     f"{len(jobs)} datablocks")
            time.sleep(1.0)
        finally:
            codes = [m.terminate() for m in members]
        logs = "".join(m.log() for m in members)
        assert codes == [0, 0], logs[-3000:]
        assert "failed" not in logs, logs[-3000:]
        assert len(scicat.datasets) == len(jobs)
        by_job = {pid.rsplit("/", 1)[-1]: ds for pid, ds in scicat.datasets.items()}
        for job in jobs:
            dataset = by_job[job.job_id]
            assert dataset["ownerGroup"] == f"group-{job.job_id[:8]}", dataset  # from the metadata, pl72 or wrdn
            assert dataset["accessGroups"] == ["dream", "split"]

