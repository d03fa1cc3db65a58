"""``sfi produce-test`` on the real-protocol broker: the writer's sequences, decodable, and real files."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import h5py
import pytest

from scicat_fw_ingest.config import Config
from scicat_fw_ingest.kafka import read_topic
from scicat_fw_ingest.messages import NO_STOP_TIME_MS, Message, decode
from scicat_fw_ingest.nexus.writer import NexusStructureError, unknown_stream_modules, write_nexus
from scicat_fw_ingest.simulate import (
    FAILURE_MESSAGE,
    LAYOUTS,
    PLACEHOLDERS,
    fill_placeholders,
    load_structure_file,
    parse_structure,
    plan_jobs,
    simulate_jobs,
    template_text,
)
from scicat_fw_ingest.testing.k2n_conventions import convention_problems

#: kafka-to-nexus's service_id form.
SERVICE_ID = re.compile(r"kafka-to-nexus:.+-pid:\d+-[0-9a-f]{4}")
#: The writer modules of kafka-to-nexus (its src/WriterModule folders; no hs00/hs01) plus the static ones.
K2N_MODULES = {"ev44", "ev42", "f144", "f142", "tdct", "ad00", "da00", "ep00", "ep01", "al00", "mdat", "ns10",
               "senv", "se00", "NDAr", "ADAr", "dataset", "link"}

ESS_ENTRY = ("entry_identifier", "entry_identifier_uuid", "experiment_identifier", "experiment_description",
             "title", "start_time", "end_time", "instrument/name", "sample/name", "user_1/name", "user_1/email",
             "user_1/affiliation", "user_1/facility_user_id")
ISIS_ENTRY = ("run_number", "experiment_identifier", "title", "start_time", "end_time", "good_frames",
              "total_counts", "duration", "name", "beamline", "instrument/name", "instrument/source/name",
              "detector_1/event_id", "selog", "sample/name", "user_1/name")


def _text(item: h5py.Dataset | str | bytes) -> str:
    value = item[()] if isinstance(item, h5py.Dataset) else item
    value = value[0] if getattr(value, "shape", ()) == (1,) else value
    return value.decode() if isinstance(value, bytes) else str(value)


def _messages(cfg: Config, topic: str) -> list[tuple[Message, int | None]]:
    out = []
    for rec in read_topic(cfg, topic):
        message = decode(rec.value)
        assert message.json_errors == {}, (topic, rec.offset, message.json_errors)
        out.append((message, rec.timestamp))
    return out


def _check_sequence(seq: list[Message], job_id: str, file: str, failed: bool) -> None:
    """[pl72, answ, x5f2..., 6s4t, answ, wrdn], all about ``job_id``, as kafka-to-nexus emits them."""
    schemas = [m.schema for m in seq]
    assert schemas[:3] == ["pl72", "answ", "x5f2"] and schemas[-3:] == ["6s4t", "answ", "wrdn"], schemas
    assert set(schemas[2:-3]) == {"x5f2"}
    start, started, *beats, stop, stopped, done = seq
    assert start.value.job_id == job_id and start.value.control_topic
    assert start.json_values["nexus_structure"]["children"]
    assert start.value.instrument_name == ""  # a non-empty one makes the writer copy a template file
    assert (started.value.action, started.value.outcome, started.value.status_code) == (0, 0, 201)
    # kafka-to-nexus: answ(StartJob) carries the job id as command id, and no stop time yet (the sentinel)
    assert started.value.command_id == job_id
    assert round(started.value.stop_time.timestamp() * 1000) == NO_STOP_TIME_MS
    assert SERVICE_ID.fullmatch(started.value.service_id), started.value.service_id
    for beat in beats:
        status = beat.json_values["status_json"]
        assert status["state"] == "writing" and status["job_id"] == job_id
        assert status["file_being_written"] == start.value.filename
        assert status["stop_time"] == NO_STOP_TIME_MS  # before the 6s4t no stop is set
        assert beat.value.service_id == started.value.service_id and beat.value.software_name == "kafka-to-nexus"
    assert stop.value.job_id == job_id and uuid.UUID(stop.value.command_id)
    assert stopped.value.action == 1 and stopped.value.command_id == stop.value.command_id
    assert stopped.value.stop_time.timestamp() * 1000 == pytest.approx(stop.value.stop_time)
    assert done.value.job_id == job_id and done.value.file_name == file and Path(file).is_absolute()
    assert done.value.metadata == start.value.metadata
    assert done.value.error_encountered is failed
    assert done.value.message == (FAILURE_MESSAGE if failed else None)


@pytest.mark.kafka
def test_three_jobs_publish_complete_sequences_and_write_files(sfi: Any, kafka_bootstrap: str,
                                                              kafka_config: Config, topic: str,
                                                              tmp_path: Path) -> None:
    run = sfi("produce-test", "-b", kafka_bootstrap, "--count", "3", "--pool-topic", topic,
              "--output-dir", str(tmp_path), "--json")
    assert run.returncode == 0, run.stderr
    jobs = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(jobs) == 3 and len({j["control_topic"] for j in jobs}) == 3
    assert all(set(j) >= {"job_id", "file", "pool_topic", "control_topic", "failed"} for j in jobs)

    pool = _messages(kafka_config, topic)
    assert [m.schema for m, _ in pool] == ["pl72"] * 3
    assert [m.value.job_id for m, _ in pool] == [j["job_id"] for j in jobs]
    for job in jobs:
        assert str(uuid.UUID(job["job_id"])) == job["job_id"] and job["failed"] is False
        records = _messages(kafka_config, job["control_topic"])
        _check_sequence([m for m, _ in records], job["job_id"], job["file"], failed=False)
        wrdn_time = records[-1][1]
        assert wrdn_time is not None and wrdn_time >= int(os.stat(job["file"]).st_mtime * 1000)  # file first
        with h5py.File(job["file"], "r") as f:
            assert _text(f["entry/entry_identifier_uuid"]) == job["job_id"]
            assert f["entry/instrument/detector/events/event_id"].size > 0


@pytest.mark.kafka
def test_failures_as_kafka_to_nexus_fails_and_idle_heartbeats_on_the_status_topic(
        sfi: Any, kafka_bootstrap: str, kafka_config: Config, topic: str, tmp_path: Path) -> None:
    control, status = f"{topic}_control", f"{topic}_status"
    run = sfi("produce-test", "-b", kafka_bootstrap, "--count", "4", "--fail", "write-error", "--fail", "start-500",
              "--fail", "start-400", "--pool-topic", topic, "--control-topic", control, "--status-topic", status,
              "--output-dir", str(tmp_path), "--heartbeats", "1", "--json")
    assert run.returncode == 0, run.stderr
    jobs = [json.loads(line) for line in run.stdout.splitlines()]
    assert [(j["failed"], j["outcome"]) for j in jobs] == [
        (False, "done"), (True, "write-error"), (True, "start-500"), (True, "start-400")]
    messages = [m for m, _ in _messages(kafka_config, control)]
    assert len(messages) == 2 * 6  # the failed starts send nothing to the control topic
    for i, job in enumerate(jobs[:2]):  # one job after the other, like a single writer
        _check_sequence(messages[i * 6:(i + 1) * 6], job["job_id"], job["file"], failed=job["failed"])
        assert h5py.is_hdf5(job["file"])  # a failed writer leaves its file behind too
    assert not Path(jobs[2]["file"]).exists() and not Path(jobs[3]["file"]).exists()
    on_status = [m for m, _ in _messages(kafka_config, status)]
    idle = [m for m in on_status if m.schema == "x5f2"]
    assert len(idle) >= 3 and all(m.json_values["status_json"] == {
        "state": "idle", "job_id": "not_currently_writing", "file_being_written": "", "start_time": 0,
        "stop_time": 0} for m in idle)
    answers = [(m.value.job_id, m.value.command_id, m.value.status_code, m.value.outcome)
               for m in on_status if m.schema == "answ"]
    assert answers == [(jobs[2]["job_id"], jobs[2]["job_id"], 500, 1), (jobs[3]["job_id"], jobs[3]["job_id"], 400, 1)]
    echoes = [m.value.job_id for m in on_status if m.schema == "pl72"]
    assert echoes == [jobs[2]["job_id"], jobs[3]["job_id"]]  # a failed start (500, 400) echoes its run start first
    status_run = sfi("list-status", "-b", kafka_bootstrap, "-t", status, "-t", control, "--from-beginning", "--json")
    listed = {j["job_id"]: j["state"] for j in json.loads(status_run.stdout)["jobs"]}
    assert [listed[j["job_id"]] for j in jobs] == ["done", "error", "error", "error"]


@pytest.mark.kafka
def test_isis_layout_has_the_isis_raw_file_entry(kafka_config: Config, topic: str, tmp_path: Path,
                                                 shared_data: Path) -> None:
    results = simulate_jobs(kafka_config, 1, output_dir=tmp_path, layout="isis", pool_topic=topic, rng_seed=1)
    (result,) = results
    assert Path(result.file).name.startswith("LOQ") and result.run_name.isdigit()
    with h5py.File(result.file, "r") as f, h5py.File(shared_data / "isis_loq_minimal_histogram.nxs") as ref:
        entry = f["raw_data_1"]
        assert _text(entry.attrs["NX_class"]) == "NXentry"
        for name in ISIS_ENTRY:
            assert name in entry, name
        assert _text(entry["run_number"]) == result.run_name
        assert entry["name"].shape == ref["raw_data_1/name"].shape == (1,)
        assert _text(entry["name"]) == _text(ref["raw_data_1/name"]) == "LOQ"
        assert entry["duration"].attrs["units"] == ref["raw_data_1/duration"].attrs["units"].decode()
        assert _text(entry["instrument/source/type"]) == "Pulsed Neutron Source"


@pytest.mark.kafka
def test_a_given_template_with_placeholders_becomes_the_file(sfi: Any, kafka_bootstrap: str, topic: str,
                                                             tmp_path: Path, shared_data: Path) -> None:
    structure = json.loads((shared_data / "k2n_writer_modules_template.json").read_text())
    structure["children"][0]["children"].append(
        {"module": "dataset", "config": {"name": "job", "values": "${job_id} in ${proposal_id}"}})
    template = tmp_path / "template.json"
    template.write_text(json.dumps(structure))
    out = tmp_path / "out"
    out.mkdir()
    run = sfi("produce-test", "-b", kafka_bootstrap, "--pool-topic", topic, "--output-dir", str(out),
              "--nexus-structure", str(template), "--proposal", "999", "--json")
    assert run.returncode == 0, run.stderr
    (job,) = [json.loads(line) for line in run.stdout.splitlines()]
    with h5py.File(job["file"], "r") as f:
        assert _text(f["entry/job"]) == f"{job['job_id']} in 999"
        assert _text(f["entry/instrument/chopper/rotation_speed"].attrs["NX_class"]) == "NXlog"
        assert f["entry/instrument/event_detector/events/event_time_zero"].size > 0


def test_ess_default_template_has_what_the_ess_profile_reads(tmp_path: Path) -> None:
    (job,) = plan_jobs(1, output_dir=tmp_path, layout="ess", proposal_id="443503", instrument="ODIN")
    write_nexus(job.written_path or "", job.nexus_structure, start_time_ms=job.start_time,
                stop_time_ms=job.stop_time)
    with h5py.File(job.written_path or "", "r") as f:
        entry = f["entry"]
        for name in ESS_ENTRY:
            assert name in entry, name
        assert _text(entry["entry_identifier_uuid"]) == job.job_id
        assert _text(entry["experiment_identifier"]) == "443503"
        assert _text(entry["instrument/name"]) == "ODIN"
        assert _text(entry["user_1"].attrs["NX_class"]) == "NXuser"
        assert entry["data/events"] == entry["instrument/detector/events"]  # a hard link
    assert "${" not in job.nexus_structure  # every placeholder of the default templates is filled


def test_every_placeholder_of_the_templates_is_documented() -> None:
    import re

    for layout in ("ess", "isis"):
        used = set(re.findall(r"\$\{(\w+)\}", template_text(layout)))
        assert used and used <= set(PLACEHOLDERS), used - set(PLACEHOLDERS)
    assert fill_placeholders({"a": ["${x}", "$${x}", "${unknown}"]}, {"x": "1"}) == {"a": ["1", "${x}", "${unknown}"]}


@pytest.mark.parametrize(("content", "expected"), [
    ("{broken", "not valid JSON"),
    ('{"children": [{"type": "group"}]}', "needs a 'name'"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_bad_template_file_is_one_line_naming_it(sfi: Any, tmp_path: Path, content: str | bytes,
                                                 expected: str) -> None:
    bad = tmp_path / "bad template.json"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    # no broker needed: the template is checked before anything is published
    run = sfi("produce-test", "-b", "127.0.0.1:1", "--output-dir", str(tmp_path), "--nexus-structure", str(bad))
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and str(bad) in run.stderr and expected in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and list(tmp_path.glob("*.nxs")) == []
    with pytest.raises(NexusStructureError, match=r"bad template\.json"):
        load_structure_file(bad)


@pytest.mark.parametrize(("args", "expected"), [
    (["--count", "2", "--fail", "write-error", "--fail", "start-400", "--fail", "start-500"],
     "--fail given 3 times: at most --count (2) jobs can fail"),
    (["--count", "0"], "--count 0: must be at least 1"),
    (["--nexus-structure", "/no/such/file.json"],
     "nexus structure file /no/such/file.json: cannot read: No such file or directory"),
])
def test_bad_options_are_one_line(sfi: Any, tmp_path: Path, args: list[str], expected: str) -> None:
    run = sfi("produce-test", "-b", "127.0.0.1:1", "--output-dir", str(tmp_path), *args)
    assert run.returncode == 2 and run.stderr.strip() == f"sfi: error: {expected}", run.stderr


def test_missing_output_directory_is_named(sfi: Any, tmp_path: Path) -> None:
    run = sfi("produce-test", "-b", "127.0.0.1:1", "--output-dir", str(tmp_path / "nope"))
    assert run.returncode == 2 and f"--output-dir {tmp_path / 'nope'}: does not exist" in run.stderr


def _modules(node: Any) -> set[str]:
    if isinstance(node, dict):
        own = {node["module"]} if "module" in node else set()
        return own | _modules(node.get("children"))
    if isinstance(node, list):
        return set().union(*(_modules(child) for child in node)) if node else set()
    return set()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_default_pl72_has_only_kafka_to_nexus_writer_modules(layout: str, tmp_path: Path) -> None:
    (job,) = plan_jobs(1, output_dir=tmp_path, layout=layout)
    structure = json.loads(job.nexus_structure)
    assert _modules(structure) <= K2N_MODULES, _modules(structure) - K2N_MODULES
    assert "hs01" not in job.nexus_structure and "hs00" not in job.nexus_structure
    assert unknown_stream_modules(structure) == [] and job.start_failure is None


def test_a_structure_with_a_module_the_writer_lacks_fails_its_start_with_500(tmp_path: Path) -> None:
    structure = parse_structure(template_text("ess"))
    structure["children"][0]["children"].append(
        {"type": "group", "name": "hist", "children": [{"module": "hs01", "config": {"topic": "t", "source": "s"}}]})
    (job,) = plan_jobs(1, output_dir=tmp_path, nexus_structure=structure)
    assert job.start_failure == 500 and "hs01" in (job.start_message or "")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_default_files_follow_kafka_to_nexus_conventions(layout: str, tmp_path: Path) -> None:
    (job,) = plan_jobs(1, output_dir=tmp_path, layout=layout)
    path = Path(job.written_path or "")
    write_nexus(path, job.nexus_structure, start_time_ms=job.start_time, stop_time_ms=job.stop_time, rng_seed=2)
    assert convention_problems(path) == []
    with h5py.File(path, "r") as f:
        streams = []
        f.visititems(lambda name, obj: streams.append(name) if "writer_module" in obj.attrs else None)
        assert streams  # the check above saw stream groups


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_producer_example_runs_a_whole_exchange_on_the_embedded_broker() -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(EXAMPLES / "producer"), "--embedded", "--duration", "0.2",
                           "--timeout", "20"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    seen = [line.rsplit(": ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("  ")]
    assert seen == ["pl72", "answ", "x5f2", "6s4t", "answ", "wrdn"]
    assert os.access(EXAMPLES / "producer", os.X_OK)


def test_sample_config_has_every_table_and_loads() -> None:
    import tomllib

    from scicat_fw_ingest.config import load_config
    from scicat_fw_ingest.mapping import check_defaults

    text = (EXAMPLES / "sfi.toml").read_text()
    assert set(tomllib.loads(text)) == {"kafka", "scicat", "defaults", "ingest", "listen", "isis"}
    assert '# "sasl.password"' in text
    cfg = load_config(EXAMPLES / "sfi.toml", env={})
    check_defaults(cfg.defaults)
    assert cfg.listen.topics and cfg.isis.instruments  # path_map is commented out: its data root must exist
    unit = (EXAMPLES / "sfi-listen.service").read_text()
    for line in ("ExecStart=/opt/sfi/bin/sfi listen --config /etc/sfi/sfi.toml", "Restart=on-failure",
                 "Environment=SFI_STATE_DIR=/var/lib/sfi", "User=sfi"):
        assert line in unit.splitlines(), line


@pytest.mark.kafka
def test_an_idle_writer_heartbeats_every_2_s_on_its_status_topic(kafka_config: Config, topic: str,
                                                                tmp_path: Path) -> None:
    status = f"{topic}_status"
    simulate_jobs(kafka_config, 1, output_dir=tmp_path, pool_topic=topic, status_topic=status, linger_s=2.5)
    beats = [m for m, _ in _messages(kafka_config, status)]
    # one when it starts, one when it is back from the job, one from the 2 s timer while lingering
    assert len(beats) >= 3 and {m.json_values["status_json"]["state"] for m in beats} == {"idle"}
    assert {m.value.service_id for m in beats} == {beats[0].value.service_id}
    assert SERVICE_ID.fullmatch(beats[0].value.service_id) and beats[0].value.update_interval == 2000
