"""Building blocks for the listener tests: real NeXus files, real jobs on the broker, a real `sfi listen`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
from confluent_kafka import TopicPartition

from scicat_fw_ingest.config import Config
from scicat_fw_ingest.kafka import ensure_topics, make_consumer, make_producer
from scicat_fw_ingest.simulate import SimulatedJob as Job
from scicat_fw_ingest.simulate import job_messages
from scicat_fw_ingest.testing.scicat_server import ScicatTestServer

#: Where the simulated writer "writes"; the listener maps it to the test's directory.
WRITER_PREFIX = "/writer/out"

DEFAULTS_TOML = """
[defaults]
owner = "Ingestor Test"
ownerGroup = "ess"
accessGroups = ["ess", "dream"]
contactEmail = "data@facility.example"
principalInvestigator = "Ada Lovelace"
creationLocation = "ESS:DREAM"
"""


def write_ess_file(path: Path, job: Job) -> None:
    """A small file in the kafka-to-nexus layout (what the ESS profile reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry["entry_identifier_uuid"] = job.job_id
        entry["entry_identifier"] = job.run_name
        entry["title"] = f"Title of {job.run_name}"
        entry["experiment_identifier"] = "p2026001"
        entry["start_time"] = "2026-11-21T10:00:00Z"
        entry["end_time"] = "2026-11-21T10:05:00Z"
        instrument = entry.create_group("instrument")
        instrument.attrs["NX_class"] = "NXinstrument"
        instrument["name"] = "DREAM"
        sample = entry.create_group("sample")
        sample.attrs["NX_class"] = "NXsample"
        sample["name"] = "powder"
        user = entry.create_group("user_1")
        user.attrs["NX_class"] = "NXuser"
        user["name"] = "Ada Lovelace"
        user["email"] = "ada@example.org"
    os.chmod(path, 0o440)  # closed and read-only, as kafka-to-nexus (>= eed2958d) leaves it: complete for sfi


def make_jobs(data_dir: Path, n: int, *, topic: str, prefix: str = "run") -> list[Job]:
    jobs = []
    for i in range(n):
        name = f"{prefix}_{i:04d}.nxs"
        job = Job(filename=name, run_name=f"{prefix}_{i:04d}", control_topic=topic, pool_topic=topic,
                  instrument_name="DREAM", metadata=json.dumps({"proposal_id": "p2026001"}),
                  written_path=f"{WRITER_PREFIX}/{name}")
        write_ess_file(data_dir / name, job)
        jobs.append(job)
    return jobs


def publish(cfg: Config, jobs: list[Job], *, partitions: int = 1, only: tuple[str, ...] | None = None,
            key_by_job: bool = True) -> None:
    """The control-topic part of each job (pl72 echo ... wrdn), keyed by job so a job stays in one partition."""
    ensure_topics(cfg, sorted({j.control_topic for j in jobs}), partitions=partitions)
    producer = make_producer(cfg)
    for job in jobs:
        for topic, value in job_messages(job)[1:]:
            if only is not None and value[4:8].decode() not in only:
                continue
            producer.produce(topic, value, key=job.job_id.encode() if key_by_job else None)
    assert producer.flush(20) == 0


def config_file(tmp_path: Path, data_dir: Path, extra: str = "") -> Path:
    path = tmp_path / "sfi.toml"
    path.write_text(
        f"{DEFAULTS_TOML}\n[ingest]\nchecksum = \"none\"\nfile_wait = 2.0\n"
        f"path_map = [[\"{WRITER_PREFIX}\", \"{data_dir}\"]]\n"
        # takeover_wait: the test server stores every request at once, so no earlier owner's POST lands later
        f"[listen]\nretry_base = 0.2\nretry_max = 1.0\ntakeover_wait = 1.0\n{extra}"
    )
    return path


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class ListenerProcess:
    """A real `sfi listen` in a subprocess."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None

    def start(self) -> ListenerProcess:
        base = {k: v for k, v in os.environ.items() if not k.startswith("SFI_")}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "scicat_fw_ingest", "listen", *self.args],
                                         env={**base, **self.env}, stdout=log, stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def listener(tmp_path: Path, name: str, *, bootstrap: str, scicat: ScicatTestServer, cfg_path: Path,
             topic: str, group: str, extra: list[str] | None = None,
             env_extra: dict[str, str] | None = None) -> ListenerProcess:
    env = {"SFI_KAFKA_BOOTSTRAP": bootstrap, "SFI_SCICAT_URL": scicat.url, "SFI_SCICAT_TOKEN": scicat.token,
           "SFI_CONFIG": str(cfg_path), "SFI_STATE_DIR": str(tmp_path / f"state-{name}"), **(env_extra or {})}
    return ListenerProcess(["--topic", topic, "--group", group, *(extra or [])], env, tmp_path / f"{name}.log")


def assert_each_once(scicat: ScicatTestServer, jobs, data_dir: Path) -> None:
    """Every job's file is one dataset with exactly one datablock listing that file."""
    pids = {p.split("/")[-1] if "/" in p else p: p for p in scicat.datasets}
    assert len(scicat.datasets) == len(jobs), f"{len(scicat.datasets)} datasets for {len(jobs)} jobs"
    for job in jobs:
        matching = [p for p in scicat.datasets if p.endswith(job.job_id)]
        assert len(matching) == 1, f"job {job.job_id}: {len(matching)} datasets"
        blocks = scicat.origdatablocks.get(matching[0], [])
        assert len(blocks) == 1, f"job {job.job_id}: {len(blocks)} datablocks"
        files = blocks[0]["dataFileList"]
        assert [Path(f["path"]).name for f in files] == [job.filename]
        assert files[0]["size"] == (data_dir / job.filename).stat().st_size
    assert pids  # silence unused


def committed(bootstrap_cfg, group: str, topic: str, partitions: int = 1) -> list[int]:
    consumer = make_consumer(bootstrap_cfg, group)
    try:
        got = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [tp.offset for tp in got]
    finally:
        consumer.close()
