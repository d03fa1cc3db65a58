"""``sfi list-status`` on the real-protocol broker, run as an operator would (subprocess)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from scicat_fw_ingest.config import Config
from scicat_fw_ingest.kafka import ensure_topics, make_producer
from scicat_fw_ingest.simulate import SimulatedJob, job_messages, job_phases

pytestmark = pytest.mark.kafka

WRITER = "kafka-to-nexus:writer-host-pid:4242-ab12"


def _jobs(prefix: str, errors: list[str | None]) -> list[SimulatedJob]:
    return [SimulatedJob(filename=f"/data/{prefix}_{i}.nxs", control_topic=f"{prefix}_ctl_{i}",
                         pool_topic=f"{prefix}_pool", run_name=f"{prefix}-run{i}", error=error, service_id=WRITER)
            for i, error in enumerate(errors)]


def _publish(cfg: Config, jobs: list[SimulatedJob], timestamp_ms: int | None = None,
             extra: Sequence[tuple[str, bytes]] = ()) -> None:
    items = [item for job in jobs for item in job_messages(job)] + list(extra)
    ensure_topics(cfg, sorted({t for t, _ in items}))
    producer = make_producer(cfg)
    for topic, data in items:
        producer.produce(topic, data, timestamp=timestamp_ms or 0)
    assert producer.flush(10) == 0


def _status(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def three_jobs(kafka_config: Config, topic: str) -> list[SimulatedJob]:
    jobs = _jobs(topic, [None, None, "HDF5 error: disk full"])
    _publish(kafka_config, jobs)
    return jobs


def test_three_jobs_listed_done_done_error_with_files(sfi, kafka_bootstrap: str,
                                                      three_jobs: list[SimulatedJob]) -> None:
    topics = [arg for job in three_jobs for arg in ("--topic", job.control_topic)]
    data = _status(sfi("list-status", "-b", kafka_bootstrap, *topics, "--from-beginning", "--json"))
    assert set(data) == {"workers", "jobs", "commands"}
    by_id = {j["job_id"]: j for j in data["jobs"]}
    assert [by_id[job.job_id]["state"] for job in three_jobs] == ["done", "done", "error"]
    assert [by_id[job.job_id]["file_written"] for job in three_jobs] == [job.filename for job in three_jobs]
    assert by_id[three_jobs[2].job_id]["error"] == "HDF5 error: disk full"
    assert [w["service_id"] for w in data["workers"]] == [WRITER]
    assert {(c["action"], c["status_code"], c["state"]) for c in data["commands"]} == \
        {("StartJob", 201, "success"), ("SetStopTime", 201, "success")}


def test_regex_topics_and_tables(sfi, kafka_bootstrap: str, three_jobs: list[SimulatedJob], topic: str) -> None:
    result = sfi("list-status", "-b", kafka_bootstrap, "--topic", f"^{topic}_ctl_[0-9]+$", "--from-beginning",
                 env={"COLUMNS": "250"})
    assert result.returncode == 0, result.stderr
    for job in three_jobs:
        assert job.job_id[:8] in result.stdout
    assert "disk full" in result.stdout
    assert "workers" in result.stdout and "commands" in result.stdout
    data = _status(sfi("list-status", "-b", kafka_bootstrap, "-t", f"^{topic}_ctl_[01]$", "--from-beginning",
                       "--json"))
    assert sorted(j["job_id"] for j in data["jobs"]) == sorted(job.job_id for job in three_jobs[:2])


def test_pool_topic_alone_shows_waiting_jobs_and_pending_starts(sfi, kafka_bootstrap: str,
                                                                 three_jobs: list[SimulatedJob], topic: str) -> None:
    data = _status(sfi("list-status", "-b", kafka_bootstrap, "-t", f"{topic}_pool", "--json"))
    assert sorted(j["state"] for j in data["jobs"]) == ["waiting"] * 3
    assert {c["state"] for c in data["commands"]} == {"pending"}


def test_since_leaves_out_older_messages(sfi, kafka_config: Config, kafka_bootstrap: str, topic: str) -> None:
    old, new = _jobs(topic, [None, None])
    _publish(kafka_config, [old], timestamp_ms=int(time.time() * 1000) - 2 * 3600 * 1000)
    _publish(kafka_config, [new])
    pattern = f"^{topic}_ctl_"
    recent = _status(sfi("list-status", "-b", kafka_bootstrap, "-t", pattern, "--since", "1h", "--json"))
    assert [j["job_id"] for j in recent["jobs"]] == [new.job_id]
    default = _status(sfi("list-status", "-b", kafka_bootstrap, "-t", pattern, "--json"))  # default: --since 1h
    assert [j["job_id"] for j in default["jobs"]] == [new.job_id]
    everything = _status(sfi("list-status", "-b", kafka_bootstrap, "-t", pattern, "--since", "3h", "--json"))
    assert sorted(j["job_id"] for j in everything["jobs"]) == sorted([old.job_id, new.job_id])


def test_undecodable_messages_are_reported_and_skipped(sfi, kafka_config: Config, kafka_bootstrap: str,
                                                       topic: str) -> None:
    (job,) = _jobs(topic, [None])
    _publish(kafka_config, [job], extra=[(job.control_topic, b"not a flatbuffer at all")])
    result = sfi("list-status", "-b", kafka_bootstrap, "-t", job.control_topic, "--from-beginning", "--json")
    data = _status(result)
    assert [j["state"] for j in data["jobs"]] == ["done"]
    lines = [line for line in result.stderr.splitlines() if "undecodable" in line]
    assert any(f"{job.control_topic}/0@6" in line for line in lines), result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_topic_and_bad_flags_fail_in_one_line(sfi, kafka_bootstrap: str, topic: str) -> None:
    missing = sfi("list-status", "-b", kafka_bootstrap, "-t", f"{topic}_absent", "--json")
    assert missing.returncode != 0
    assert f"topic '{topic}_absent' does not exist" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and missing.stdout == ""
    nothing = sfi("list-status", "-b", kafka_bootstrap, "-t", f"^{topic}_nothing")
    assert nothing.returncode != 0 and "no topic" in nothing.stderr and "Traceback" not in nothing.stderr
    bad_regex = sfi("list-status", "-b", kafka_bootstrap, "-t", "^(unclosed")
    assert bad_regex.returncode != 0 and "not a valid regular expression" in bad_regex.stderr
    bad_since = sfi("list-status", "-b", kafka_bootstrap, "-t", "x", "--since", "yesterday")
    assert bad_since.returncode == 2 and "yesterday" in bad_since.stderr


def test_duration_listens_for_news_including_new_regex_topics(kafka_config: Config, kafka_bootstrap: str,
                                                              topic: str) -> None:
    first, later = _jobs(topic, [None, None])
    _publish(kafka_config, [first])
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "scicat_fw_ingest", "list-status", "-b", kafka_bootstrap,
                             "-t", f"^{topic}_ctl_", "--from-beginning", "--duration", "4", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    _publish(kafka_config, [later])  # a control topic that did not exist when list-status started
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert time.monotonic() - started >= 4
    states = {j["job_id"]: j["state"] for j in json.loads(out)["jobs"]}
    assert states == {first.job_id: "done", later.job_id: "done"}


def test_follow_view_ends_after_duration(sfi, kafka_bootstrap: str, three_jobs: list[SimulatedJob], topic: str) -> None:
    result = sfi("list-status", "-b", kafka_bootstrap, "-t", f"^{topic}_ctl_", "--from-beginning", "--follow",
                 "--duration", "1")
    assert result.returncode == 0, result.stderr
    assert three_jobs[0].job_id[:8] in result.stdout and "stopped" in result.stdout
    assert sfi("list-status", "-b", kafka_bootstrap, "-t", "x", "--follow", "--json").returncode == 2


def _has_produce_test() -> bool:
    return (Path(__file__).resolve().parents[2] / "scicat_fw_ingest" / "cli" / "produce_test.py").exists()


@pytest.mark.skipif(not _has_produce_test(), reason="sfi produce-test is not in this tree")
def test_acceptance_produce_test_then_list_status(sfi, kafka_bootstrap: str, tmp_path: Path) -> None:
    produced = sfi("produce-test", "-b", kafka_bootstrap, "--count", "3", "--output-dir", str(tmp_path), "--json")
    assert produced.returncode == 0, produced.stderr
    records = [json.loads(line) for line in produced.stdout.splitlines() if line.strip()]
    jobs = records[0]["jobs"] if len(records) == 1 and "jobs" in records[0] else records
    assert len(jobs) == 3
    topics = sorted({job["control_topic"] for job in jobs})
    args = [arg for t in topics for arg in ("--topic", t)]
    data = _status(sfi("list-status", "-b", kafka_bootstrap, *args, "--from-beginning", "--duration", "0.5", "--json"))
    by_id = {j["job_id"]: j for j in data["jobs"]}
    for job in jobs:
        listed = by_id[job["job_id"]]
        assert listed["state"] == "done"
        assert listed["file_written"] == job["file"] and Path(job["file"]).is_file()


@pytest.mark.parametrize(("silent_s", "state"), [(16, "timeout"), (5, "writing")])
def test_acceptance_writer_dies_mid_run_without_stop_time(sfi, kafka_config: Config, kafka_bootstrap: str,
                                                          topic: str, silent_s: int, state: str) -> None:
    """The writer started the job (no stop time: the sentinel) and heartbeated, then went silent."""
    (job,) = _jobs(topic, [None])
    job.heartbeats = 3
    started, _ = job_phases(job)  # pl72, echo, answ(StartJob), x5f2 x3: nothing after
    last_beat = int(time.time() * 1000) - silent_s * 1000
    ensure_topics(kafka_config, [job.pool_topic, job.control_topic])
    producer = make_producer(kafka_config)
    for n, (where, data) in enumerate(started):
        producer.produce(where, data, timestamp=last_beat - (len(started) - 1 - n) * 2000)
    assert producer.flush(10) == 0
    listing = _status(sfi("list-status", "-b", kafka_bootstrap, "-t", job.pool_topic, "-t", job.control_topic,
                          "--json"))
    (listed,) = listing["jobs"]
    assert (listed["state"], listed["stop"], listed["service_id"]) == (state, None, WRITER)


@pytest.mark.slow
def test_named_topic_created_after_start_is_picked_up(kafka_config: Config, kafka_bootstrap: str,
                                                      topic: str) -> None:
    (job,) = _jobs(topic, [None])
    proc = subprocess.Popen([sys.executable, "-m", "scicat_fw_ingest", "list-status", "-b", kafka_bootstrap,
                             "-t", job.control_topic, "--duration", "5", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    _publish(kafka_config, [job])  # the control topic is created now
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"topic '{job.control_topic}' does not exist yet; waiting for it" in err
    assert [(j["job_id"], j["state"]) for j in json.loads(out)["jobs"]] == [(job.job_id, "done")]


def test_tables_fit_80_columns_and_a_live_view_keeps_the_newest_rows() -> None:
    """Ids abbreviated, one line per row at 80 columns; a live view of 12 jobs on a short screen shows the newest."""
    from rich.console import Console

    from scicat_fw_ingest.cli.list_status import _tables
    from scicat_fw_ingest.messages import decode
    from scicat_fw_ingest.status import Tracker

    jobs = _jobs("fit", [None] * 12)
    tracker = Tracker()
    t0 = int(time.time() * 1000) - 60_000
    for n, job in enumerate(jobs):
        for topic, data in job_messages(job):
            tracker.feed(decode(data), topic=topic, timestamp_ms=t0 + n * 1000)
    console = Console(width=80, record=True, file=io.StringIO())
    for table in _tables(tracker, t0 + 60_000, rows=8):
        console.print(table)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    job_lines = [line for line in text.splitlines() if "/data/fit_" in line]
    assert len(job_lines) < 12 and "older not shown" in text
    assert "fit_11.nxs" in text and "fit_0.nxs" not in text  # the newest stay, the oldest go
    assert jobs[11].job_id[:8] in text and jobs[11].job_id not in text  # abbreviated; --json has it whole
    full = Console(width=80, record=True, file=io.StringIO())
    for table in _tables(tracker, t0 + 60_000):
        full.print(table)
    assert sum("/data/fit_" in line for line in full.export_text().splitlines()) == 12
