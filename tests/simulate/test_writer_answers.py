"""produce-test answers as kafka-to-nexus does, text for text.

The expected texts are kafka-to-nexus's, from ess-dmsc/kafka-to-nexus ``src/CommandSystem/Handler.cpp`` (the
version whose ``Handler::handleStartCommand`` calls ``CommandResponse->echo_message(start_message)``):

- line 178  ``CommandResponse->echo_message(start_message);`` then ``publishResponse`` (line 180): the pl72 echo
  precedes every start answer, whatever its status code;
- line 229  ``"Rejected start job as control topic was empty."`` (400);
- line 241  ``"Failed to start filewriting job. The failure message was: {}"`` (500);
- line 247  ``"Started write job with start time {} and stop time {}."`` (201), times by ``toUTCDateTime``
  (``src/TimeUtility.cpp``: ``"%Y-%m-%dT%H:%M:%SZ"`` of the time floored to milliseconds, so 3 decimals);
- line 331  ``"Attempting to stop writing job now."`` (6s4t stop time 0, 201);
- line 335  ``"File writing job stop time set to: {}"`` (201);
- ``src/Master.cpp`` ``Master::stopNow``: ``setStopTimeInternal(time_point{0ms})`` — x5f2 stop_time 0 after a stop now;
- ``src/Status/StatusReporterBase.cpp`` ``createJSONReport`` / ``reportStatus``: ``nlohmann::json`` ``dump()`` —
  compact, keys sorted (``std::map``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scicat_fw_ingest.config import Config
from scicat_fw_ingest.kafka import read_topic
from scicat_fw_ingest.messages import decode
from scicat_fw_ingest.simulate import SimulatedJob, job_messages

START_MS = 1732456789125  # 2024-11-24T13:59:49.125Z
STOP_MS = 1732456791000


def _job(**kwargs: Any) -> SimulatedJob:
    return SimulatedJob(filename="/data/f.nxs", start_time=START_MS, stop_time=STOP_MS, heartbeats=1, **kwargs)


def _answers(messages: list[tuple[str, bytes]]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for topic, data in messages:
        message = decode(data)
        if message.schema == "answ":
            out.append((topic, (message.value.status_code, message.value.message)))
        else:
            out.append((topic, message.schema))
    return out


def test_started_and_stop_time_set_texts() -> None:
    job = _job()
    got = _answers(job_messages(job))
    assert got == [
        (job.pool_topic, "pl72"), (job.control_topic, "pl72"),
        (job.control_topic, (201, "Started write job with start time 2024-11-24T13:59:49.125Z and stop time "
                                  "2262-04-11T23:47:16.854Z.")),  # no stop time: time_point::max()
        (job.control_topic, "x5f2"), (job.control_topic, "6s4t"),
        (job.control_topic, (201, "File writing job stop time set to: 2024-11-24T13:59:51.000Z")),
        (job.control_topic, "wrdn")]


def test_stop_now_answers_attempting_and_reports_stop_time_0() -> None:
    job = _job(stop_now=True)
    messages = job_messages(job)
    decoded = [decode(data) for _, data in messages]
    assert [m.schema for m in decoded] == ["pl72", "pl72", "answ", "x5f2", "6s4t", "answ", "x5f2", "wrdn"]
    stop, answer, beat = decoded[4], decoded[5], decoded[6]
    assert stop.value.stop_time == 0
    assert (answer.value.status_code, answer.value.message) == (201, "Attempting to stop writing job now.")
    assert answer.value.stop_time.timestamp() == 0 and answer.value.command_id == stop.value.command_id
    assert beat.json_values["status_json"]["stop_time"] == 0


@pytest.mark.parametrize("code, text", [
    (400, "Rejected start job as control topic was empty."),
    (500, "Failed to start filewriting job. The failure message was: simulated failure "
          "(sfi produce-test --fail start-500)"),
])
def test_a_failed_start_echoes_the_run_start_then_answers(code: int, text: str) -> None:
    job = _job(start_failure=code)
    got = _answers(job_messages(job))
    assert got == [(job.pool_topic, "pl72"), (job.status_topic, "pl72"), (job.status_topic, (code, text))]


def test_x5f2_status_json_is_compact_with_sorted_keys() -> None:
    job = _job()
    beats = [decode(data) for _, data in job_messages(job) if data[4:8] == b"x5f2"]
    raw = beats[0].value.status_json
    assert raw == json.dumps(json.loads(raw), separators=(",", ":"), sort_keys=True)
    assert raw.startswith('{"file_being_written":"/data/f.nxs","job_id":"')


@pytest.mark.kafka
def test_cli_start_400_and_stop_now_on_the_broker(sfi: Any, kafka_bootstrap: str, kafka_config: Config, topic: str,
                                                 tmp_path: Path) -> None:
    control, status = f"{topic}_control", f"{topic}_status"
    run = sfi("produce-test", "-b", kafka_bootstrap, "--count", "2", "--fail", "start-400", "--stop-now",
              "--pool-topic", topic, "--control-topic", control, "--status-topic", status,
              "--output-dir", str(tmp_path), "--heartbeats", "1", "--json")
    assert run.returncode == 0, run.stderr
    first, second = [json.loads(line) for line in run.stdout.splitlines()]
    on_status = [decode(rec.value) for rec in read_topic(kafka_config, status)]
    failed = [(m.schema, m.value.job_id) for m in on_status if m.schema in ("pl72", "answ")]
    assert failed == [("pl72", second["job_id"]), ("answ", second["job_id"])]  # the echo, then the answer
    answer = next(m for m in on_status if m.schema == "answ")
    assert (answer.value.status_code, answer.value.message) == (400, "Rejected start job as control topic was empty.")
    on_control = [decode(rec.value) for rec in read_topic(kafka_config, control)]
    stopped = [m for m in on_control if m.schema == "answ"][-1]
    assert (stopped.value.status_code, stopped.value.message) == (201, "Attempting to stop writing job now.")
    assert [m.schema for m in on_control][-4:] == ["6s4t", "answ", "x5f2", "wrdn"]
    assert on_control[-1].value.file_name == first["file"]
    listed = sfi("list-status", "-b", kafka_bootstrap, "-t", status, "-t", control, "--from-beginning", "--json")
    states = {j["job_id"]: j["state"] for j in json.loads(listed.stdout)["jobs"]}
    assert states == {first["job_id"]: "done", second["job_id"]: "error"}
