"""``sfi forward-runinfo`` against the real Kafka-protocol broker, run as an operator would."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from streaming_data_types import serialise_6s4t, serialise_fc00
from streaming_data_types.fbschemas.forwarder_config_update_fc00.Protocol import Protocol
from streaming_data_types.fbschemas.forwarder_config_update_fc00.UpdateType import UpdateType
from streaming_data_types.forwarder_config_update_fc00 import StreamInfo

from scicat_fw_ingest.config import Config
from scicat_fw_ingest.kafka import ensure_topics, make_producer, produce_sync
from scicat_fw_ingest.messages import decode
from scicat_fw_ingest.testing.isis_run_start import (
    child,
    dataset_value,
    icp_structure,
    produce,
    read_run_starts,
    run_start_bytes,
    streams,
)

pytestmark = pytest.mark.kafka


def uid() -> str:
    return uuid.uuid4().hex[:8]


def isis_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "sfi.toml"
    path.write_text('[isis]\nsample_env = {ZOOM = ["Temp_1", "Pressure=IN:ZOOM:P1"]}\n'
                    'monitors = {"*" = ["monitor_1"]}\n' + extra)
    return path


class Service:
    """``sfi forward-runinfo`` as a running process whose stderr lines can be waited for."""

    def __init__(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SFI_")}
        self.proc = subprocess.Popen([sys.executable, "-m", "scicat_fw_ingest", "forward-runinfo", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} within {timeout} s; stderr so far: {''.join(self.seen)}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self._pump_thread.join(5)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return code


@pytest.fixture
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        if service.proc.poll() is None:
            service.proc.kill()
            service.proc.wait(10)


def test_icp_run_start_on_zoom_runinfo_comes_out_enriched_on_the_output_topic(
        sfi, kafka_bootstrap: str, kafka_config: Config, tmp_path: Path) -> None:
    out = f"ALL_runInfo_{uid()}"
    ensure_topics(kafka_config, ["ZOOM_runInfo", out])
    job = str(uuid.uuid4())
    produce(kafka_config, "ZOOM_runInfo", run_start_bytes(job_id=job))
    run = sfi("forward-runinfo", "-b", kafka_bootstrap, "-c", str(isis_config(tmp_path)), "--instruments", "ZOOM",
              "--output-topic", out, "--group", f"g_{uid()}", "--from-beginning", "--once")
    assert run.returncode == 0, run.stderr
    assert "forwarded ZOOM_runInfo/0@" in run.stderr and f"job {job}" in run.stderr
    [result] = read_run_starts(kafka_config, out)
    original = decode(run_start_bytes(job_id=job)).value
    for name in ("job_id", "filename", "start_time", "stop_time", "run_name", "broker", "metadata", "control_topic",
                 "service_id"):
        assert getattr(result, name) == getattr(original, name), name
    structure = json.loads(result.nexus_structure)  # valid JSON, not str(dict)
    entry = child(structure, "raw_data_1")
    assert dataset_value(child(entry, "instrument"), "name") == "ZOOM"
    assert dataset_value(child(child(entry, "instrument"), "source"), "name") == "ISIS"
    produced = streams(structure)
    for stream in streams(icp_structure()):  # the ICP's ev44 and f144 streams are all kept
        assert stream in produced
    assert ("f144", "ZOOM_sampleEnv", "IN:ZOOM:P1") in produced  # configured block added
    assert ("da00", "ZOOM_monitorHistograms", "monitor_1") in produced


def test_bad_messages_are_logged_committed_and_not_forwarded_and_a_restart_does_not_reforward(
        sfi, services: list[Service], kafka_bootstrap: str, kafka_config: Config) -> None:
    inst, out, group = f"BAD{uid()}", f"out_{uid()}", f"g_{uid()}"
    source = f"{inst}_runInfo"
    ensure_topics(kafka_config, [source, out])
    good = str(uuid.uuid4())
    produce(kafka_config, source, b"not a flatbuffer at all", serialise_6s4t("job", "run"),
            run_start_bytes("{'children': []}"), run_start_bytes(job_id=good))
    args = ("-b", kafka_bootstrap, "--instruments", inst, "--output-topic", out, "--group", group)
    run = sfi("forward-runinfo", *args, "--from-beginning", "--once")
    assert run.returncode == 0, run.stderr
    skipped = [line for line in run.stderr.splitlines() if "skipped" in line]
    assert [line.split("skipped ")[1].split(":")[0] for line in skipped] == [f"{source}/0@0", f"{source}/0@1",
                                                                            f"{source}/0@2"]
    assert "expected a 'pl72'" in skipped[1] and "nexus_structure is not valid JSON" in skipped[2]
    assert "Traceback" not in run.stderr
    assert [r.job_id for r in read_run_starts(kafka_config, out)] == [good]
    # same group again: everything was committed, nothing is re-read; SIGTERM stops it cleanly
    service = Service(*args, "--from-beginning")
    services.append(service)
    service.wait_for("assigned")
    time.sleep(1)
    assert service.stop() == 0
    rest = "".join(service.seen)
    assert "SIGTERM received" in rest and "stopped after 0 run start(s)" in rest
    assert [r.job_id for r in read_run_starts(kafka_config, out)] == [good]


def test_dry_run_prints_the_structure_produces_and_commits_nothing_and_uses_forwarder_pvs(
        sfi, kafka_bootstrap: str, kafka_config: Config) -> None:
    inst, out, group, fwd = f"DRY{uid()}", f"out_{uid()}", f"g_{uid()}", f"fwd_config_{uid()}"
    ensure_topics(kafka_config, [f"{inst}_runInfo", out, fwd])
    produce(kafka_config, fwd, serialise_fc00(UpdateType.ADD, [
        StreamInfo(f"IN:{inst}:SE:Temp_9", "f144", f"{inst}_sampleEnv", Protocol.PVA, 0),
        StreamInfo(f"IN:{inst}:SE:Other", "f144", "OTHER_sampleEnv", Protocol.PVA, 0)]))
    job = str(uuid.uuid4())
    produce(kafka_config, f"{inst}_runInfo", run_start_bytes(icp_structure(inst, blocks=()), job_id=job))
    args = ("-b", kafka_bootstrap, "--instruments", inst, "--output-topic", out, "--group", group,
            "--from-beginning", "--once", "--forwarder-config-topic", fwd)
    dry = sfi("forward-runinfo", *args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    record = json.loads(dry.stdout)
    assert record["output_topic"] == out and record["job_id"] == job and record["input"] == f"{inst}_runInfo/0@0"
    selog = child(child(record["nexus_structure"], "raw_data_1"), "selog")
    assert [(c["name"], streams(c)) for c in selog["children"]] == [
        ("Temp_9", [("f144", f"{inst}_sampleEnv", f"IN:{inst}:SE:Temp_9")])]
    assert read_run_starts(kafka_config, out) == []
    # nothing was committed: the same group forwards the run start for real
    real = sfi("forward-runinfo", *args)
    assert real.returncode == 0, real.stderr
    [result] = read_run_starts(kafka_config, out)
    assert json.loads(result.nexus_structure) == record["nexus_structure"]


def test_topic_pattern_subscription_with_a_per_instrument_template(
        sfi, kafka_bootstrap: str, kafka_config: Config, tmp_path: Path) -> None:
    tag = uid()
    first, second, out = f"PA{tag}", f"PB{tag}", f"out_{tag}_runInfo"  # the output matches the pattern too
    ensure_topics(kafka_config, [f"{first}_runInfo", f"{second}_runInfo", out])
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / f"{first}.json").write_text(json.dumps({"children": [{"type": "group", "name": "raw_data_1",
        "children": [{"module": "dataset", "config": {"name": "beamline", "values": "custom ${INSTRUMENT}"}}]}]}))
    produce(kafka_config, out, run_start_bytes(job_id="already-on-output"))  # must not be re-enriched
    produce(kafka_config, f"{first}_runInfo", run_start_bytes(icp_structure(first), job_id="job-a"))
    produce(kafka_config, f"{second}_runInfo", run_start_bytes(icp_structure(second), job_id="job-b"))
    run = sfi("forward-runinfo", "-b", kafka_bootstrap, "--topic-pattern", f"^(P.{tag}|out_{tag})_runInfo$",
              "--output-topic", out, "--group", f"g_{tag}", "--from-beginning", "--count", "2",
              "--template-dir", str(templates))
    assert run.returncode == 0, run.stderr
    starts = read_run_starts(kafka_config, out)
    assert sorted(r.job_id for r in starts) == ["already-on-output", "job-a", "job-b"]
    results = {r.job_id: json.loads(r.nexus_structure) for r in starts}
    entry_a, entry_b = child(results["job-a"], "raw_data_1"), child(results["job-b"], "raw_data_1")
    assert dataset_value(entry_a, "beamline") == f"custom {first}"
    assert "instrument" not in [c.get("name") for c in entry_a["children"]]  # the override replaced the built-in
    assert dataset_value(child(entry_b, "instrument"), "name") == second
    assert dataset_value(entry_b, "beamline") == second


def produce_at(cfg: Config, topic: str, items: list[tuple[bytes, int]]) -> None:
    """Run starts with the Kafka timestamps (ms) they would carry."""
    producer = make_producer(cfg)
    for value, timestamp_ms in items:
        producer.produce(topic, value, timestamp=timestamp_ms)
    assert producer.flush(10) == 0


@pytest.mark.slow
def test_a_new_group_starts_at_the_look_back_not_at_old_run_starts(
        services: list[Service], kafka_bootstrap: str, kafka_config: Config) -> None:
    inst, out = f"LAT{uid()}", f"out_{uid()}"
    ensure_topics(kafka_config, [f"{inst}_runInfo", out])
    now = int(time.time() * 1000)
    produce_at(kafka_config, f"{inst}_runInfo", [(run_start_bytes(job_id="old-run"), now - 600_000),  # 10 min
                                                 (run_start_bytes(job_id="recent-run"), now - 30_000)])
    service = Service("-b", kafka_bootstrap, "--instruments", inst, "--output-topic", out, "--group",
                      f"g_{uid()}", "--count", "2")
    services.append(service)
    service.wait_for("no committed offset")
    service.wait_for("forwarded")
    produce(kafka_config, f"{inst}_runInfo", run_start_bytes(job_id="new-run"))
    assert service.proc.wait(30) == 0
    assert [r.job_id for r in read_run_starts(kafka_config, out)] == ["recent-run", "new-run"]


@pytest.mark.slow
def test_restart_before_the_first_commit_loses_no_run_start(
        services: list[Service], kafka_bootstrap: str, kafka_config: Config) -> None:
    inst, out, group = f"RST{uid()}", f"out_{uid()}", f"g_{uid()}"
    ensure_topics(kafka_config, [f"{inst}_runInfo", out])
    args = ("-b", kafka_bootstrap, "--instruments", inst, "--output-topic", out, "--group", group)
    first = Service(*args)
    services.append(first)
    first.wait_for("assigned")
    assert first.stop() == 0  # nothing forwarded, nothing committed
    jobs = [str(uuid.uuid4()) for _ in range(3)]
    produce(kafka_config, f"{inst}_runInfo", *(run_start_bytes(job_id=job) for job in jobs))  # while it is down
    again = Service(*args, "--count", "3")
    services.append(again)
    assert again.proc.wait(60) == 0, "".join(again.seen)
    assert [r.job_id for r in read_run_starts(kafka_config, out)] == jobs


@pytest.mark.slow
def test_acceptance_topic_created_after_start_loses_no_run_start(
        services: list[Service], kafka_bootstrap: str, kafka_config: Config) -> None:
    """Started before <INST>_runInfo exists; created 3 s in; 20 run starts over 8 s: 20 forwarded."""
    inst, out = f"NEW{uid()}", f"out_{uid()}"
    ensure_topics(kafka_config, [out])
    service = Service("-b", kafka_bootstrap, "--instruments", inst, "--output-topic", out, "--group",
                      f"g_{uid()}", "--count", "20")
    services.append(service)
    time.sleep(3)
    ensure_topics(kafka_config, [f"{inst}_runInfo"])
    producer = make_producer(kafka_config)
    jobs = [str(uuid.uuid4()) for _ in range(20)]
    for job in jobs:
        produce_sync(producer, f"{inst}_runInfo", run_start_bytes(job_id=job))
        time.sleep(0.4)
    assert service.proc.wait(60) == 0, "".join(service.seen)
    assert sorted(r.job_id for r in read_run_starts(kafka_config, out)) == sorted(jobs)


@pytest.mark.parametrize("args, message", [
    ((), "give exactly one of --instruments"),
    (("--instruments", "ZOOM", "--topic-pattern", ".*_runInfo"), "give exactly one of --instruments"),
    (("--topic-pattern", "(unclosed"), "not a valid regular expression"),
    (("--instruments", "ZOOM", "--template-dir", "/nonexistent/templates"), "not a directory"),
])
def test_bad_configuration_is_one_line_and_exit_2(sfi, args: tuple[str, ...], message: str) -> None:
    run = sfi("forward-runinfo", "-b", "127.0.0.1:1", *args)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
