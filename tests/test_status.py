"""The tracker's rules, fed with real encoded messages (ess-streaming-data-types) and explicit times."""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st
from streaming_data_types import serialise_6s4t, serialise_answ, serialise_f144, serialise_wrdn, serialise_x5f2
from streaming_data_types.fbschemas.action_response_answ.ActionOutcome import ActionOutcome
from streaming_data_types.fbschemas.action_response_answ.ActionType import ActionType

from scicat_fw_ingest.messages import decode
from scicat_fw_ingest.simulate import Job, heartbeat, job_messages, run_start
from scicat_fw_ingest.status import Timeouts, Tracker

T0 = 1_700_000_000_000  # ms since epoch
STOP_DT = datetime.fromtimestamp((T0 + 1000) / 1000, tz=timezone.utc)


def _job(i: int, **kw: object) -> Job:
    return Job(filename=f"/data/run{i}.nxs", job_id=f"00000000-0000-4000-8000-00000000000{i}",
               command_id=f"10000000-0000-4000-8000-00000000000{i}", start_time=T0 + i * 10_000,
               run_name=f"run{i}", **kw)  # type: ignore[arg-type]


def _timed(job: Job) -> list[tuple[str, bytes, int]]:
    """The job's messages, each with the Kafka timestamp it would carry (100 ms apart)."""
    return [(topic, data, job.start_time + n * 100) for n, (topic, data) in enumerate(job_messages(job))]


def _feed(tracker: Tracker, items: list[tuple[str, bytes, int | None]]) -> Tracker:
    for topic, data, ts in items:
        tracker.feed(decode(data), topic=topic, timestamp_ms=ts)
    return tracker


def _answ(job: Job, action: int, outcome: int, status: int, message: str, command_id: str = "") -> bytes:
    return serialise_answ(job.service_id, job.job_id, command_id, action, outcome, message, status, STOP_DT)


def _three_jobs() -> list[tuple[str, bytes, int]]:
    items: list[tuple[str, bytes, int]] = []
    for i, error in ((0, None), (1, None), (2, "HDF5 write failed: disk full")):
        items += _timed(_job(i, error=error))
    return items


NOW = T0 + 25_000  # a little after the third job finished


def test_three_jobs_end_done_done_error_with_files_and_message() -> None:
    tracker = _feed(Tracker(), _three_jobs())
    jobs = {j.run_name: j for j in tracker.jobs(NOW)}
    assert [jobs[f"run{i}"].state for i in range(3)] == ["done", "done", "error"]
    assert [jobs[f"run{i}"].file_written for i in range(3)] == [f"/data/run{i}.nxs" for i in range(3)]
    assert jobs["run2"].error == "HDF5 write failed: disk full"
    assert jobs["run0"].error is None
    assert jobs["run1"].control_topic == _job(1).control_topic
    assert jobs["run1"].start == T0 + 10_000 and jobs["run1"].stop == T0 + 11_000
    (worker,) = tracker.workers(NOW)
    assert (worker.service_id, worker.host, worker.state) == ("sfi-writer-1", "writer-host", "idle")
    commands = tracker.commands(NOW)
    assert len(commands) == 6  # StartJob and SetStopTime per job
    assert {c.state for c in commands} == {"success"}
    stop = next(c for c in commands if c.command_id == _job(0).command_id)
    assert (stop.action, stop.job_id, stop.outcome) == ("SetStopTime", _job(0).job_id, "Success")


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_order_with_repeats_gives_the_same_snapshot(data: st.DataObject) -> None:
    items = _three_jobs()
    expected = _feed(Tracker(), items).to_jsonable(NOW)
    shuffled = data.draw(st.permutations(items))
    repeats = data.draw(st.lists(st.sampled_from(items), max_size=10))
    assert _feed(Tracker(), [*shuffled, *repeats]).to_jsonable(NOW) == expected


def test_seeded_shuffles_without_timestamps_agree() -> None:
    """Brokers may not give timestamps: the result must still not depend on the order."""
    items = [(t, d, None) for t, d, _ in _three_jobs()]
    snapshots = set()
    for seed in range(20):
        rng = random.Random(seed)
        order = items + rng.sample(items, 5)
        rng.shuffle(order)
        snapshots.add(json.dumps(_feed(Tracker(), order).to_jsonable(NOW), sort_keys=True))
    assert len(snapshots) == 1
    states = sorted(j["state"] for j in json.loads(snapshots.pop())["jobs"])
    assert states == ["done", "done", "error"]


def test_late_heartbeat_does_not_reopen_a_done_job() -> None:
    job = _job(0)
    tracker = _feed(Tracker(), _timed(job))
    tracker.feed(decode(heartbeat(job)), topic=job.control_topic, timestamp_ms=T0 + 5_000)
    assert tracker.jobs(NOW)[0].state == "done"


def test_late_heartbeat_does_not_reopen_an_error_job() -> None:
    job = _job(0, error="broken")
    tracker = _feed(Tracker(), _timed(job))
    tracker.feed(decode(heartbeat(job)), topic=job.control_topic, timestamp_ms=T0 + 5_000)
    assert (tracker.jobs(NOW)[0].state, tracker.jobs(NOW)[0].error) == ("error", "broken")


def test_wrdn_without_metadata_or_message_is_a_done_job() -> None:
    job = _job(0)
    wrdn = serialise_wrdn(job.service_id, job.job_id, False, "/out/run0.nxs", None, None)
    tracker = _feed(Tracker(), [(job.control_topic, wrdn, T0)])
    (only,) = tracker.jobs(NOW)
    assert (only.state, only.file_written, only.error) == ("done", "/out/run0.nxs", None)


def test_wrdn_before_its_run_start_is_done_and_filled_in_later() -> None:
    job = _job(0)
    wrdn = serialise_wrdn(job.service_id, job.job_id, False, "/out/run0.nxs", None, None)
    tracker = _feed(Tracker(), [(job.control_topic, wrdn, T0 + 500)])
    assert tracker.jobs(NOW)[0].run_name is None
    _feed(tracker, [(job.pool_topic, run_start(job), T0)])
    (only,) = tracker.jobs(NOW)
    assert (only.state, only.run_name, only.filename, only.file_written) == \
        ("done", "run0", "/data/run0.nxs", "/out/run0.nxs")


def test_run_start_on_pool_and_its_echo_is_one_job_and_one_start_command() -> None:
    job = _job(0)
    tracker = _feed(Tracker(), [(job.pool_topic, run_start(job), T0), (job.control_topic, run_start(job), T0 + 10)])
    assert len(tracker.jobs(NOW)) == 1
    assert [(c.action, c.state) for c in tracker.commands(T0 + 20)] == [("StartJob", "pending")]


def test_start_job_accepted_means_writing_not_done() -> None:
    job = _job(0)
    tracker = _feed(Tracker(), [(job.pool_topic, run_start(job), T0),
                                (job.control_topic, _answ(job, ActionType.StartJob, ActionOutcome.Success, 201,
                                                          "ok"), T0 + 10)])
    assert tracker.jobs(T0 + 100)[0].state == "writing"
    (command,) = tracker.commands(T0 + 100)
    assert (command.state, command.status_code, command.outcome) == ("success", 201, "Success")


def test_rejected_start_is_a_job_error_with_the_message_and_a_failed_command() -> None:
    job = _job(0)
    tracker = _feed(Tracker(), [(job.pool_topic, run_start(job), T0),
                                (job.control_topic, _answ(job, ActionType.StartJob, ActionOutcome.Failure, 400,
                                                          "control_topic is empty"), T0 + 10)])
    (only,) = tracker.jobs(T0 + 100)
    assert (only.state, only.error) == ("error", "control_topic is empty")
    (command,) = tracker.commands(T0 + 100)
    assert (command.state, command.status_code, command.message) == ("failure", 400, "control_topic is empty")
    assert type(command.status_code) is int
    data = tracker.to_jsonable(T0 + 100)
    assert data["commands"][0]["status_code"] == 400


def test_status_500_with_outcome_success_is_still_a_failure() -> None:
    job = _job(0)
    tracker = _feed(Tracker(), [(job.control_topic, _answ(job, ActionType.StartJob, ActionOutcome.Success, 500,
                                                          "writer crashed"), T0)])
    assert tracker.jobs(T0)[0].state == "error"
    assert tracker.commands(T0)[0].state == "failure"


def test_failed_stop_command_fails_the_command_not_the_job() -> None:
    job = _job(0)
    items = [(job.pool_topic, run_start(job), T0),
             (job.control_topic, _answ(job, ActionType.StartJob, ActionOutcome.Success, 201, "ok"), T0 + 10),
             (job.control_topic, serialise_6s4t(job.job_id, job.run_name, job.service_id, job.command_id,
                                                T0 + 1000), T0 + 20),
             (job.control_topic, _answ(job, ActionType.SetStopTime, ActionOutcome.Failure, 400, "stop time in past",
                                       job.command_id), T0 + 30)]
    tracker = _feed(Tracker(), items)
    assert tracker.jobs(T0 + 100)[0].state == "writing"
    stop = next(c for c in tracker.commands(T0 + 100) if c.action == "SetStopTime")
    assert (stop.command_id, stop.state, stop.status_code, stop.message) == \
        (job.command_id, "failure", 400, "stop time in past")


def test_stop_now_takes_the_request_time() -> None:
    job = _job(0)
    tracker = _feed(Tracker(), [(job.control_topic, serialise_6s4t(job.job_id, "run0", job.service_id, "c1", 0),
                                 T0 + 777)])
    assert tracker.jobs(T0 + 800)[0].stop == T0 + 777


def test_worker_goes_unknown_after_n_update_intervals() -> None:
    job = _job(0)
    tracker = _feed(Tracker(Timeouts(worker_intervals=3)), [(job.control_topic, heartbeat(job), T0)])
    (worker,) = tracker.workers(T0 + 5_999)  # interval 2000 ms: 3 intervals = 6 s
    assert (worker.state, worker.job_id, worker.file_being_written) == ("writing", job.job_id, job.filename)
    assert tracker.workers(T0 + 6_001)[0].state == "unknown"


def test_idle_heartbeat_gives_an_idle_worker() -> None:
    job = _job(0)
    tracker = _feed(Tracker(), [(job.control_topic, heartbeat(job, "idle"), T0)])
    (worker,) = tracker.workers(T0 + 1)
    assert (worker.state, worker.job_id, worker.file_being_written) == ("idle", None, None)


def test_writing_job_times_out_after_stop_time_plus_grace() -> None:
    job = _job(0)  # stop time T0 + 1000
    items = [(job.pool_topic, run_start(job), T0), (job.control_topic, heartbeat(job), T0 + 500)]
    tracker = _feed(Tracker(Timeouts(job_grace_ms=10_000)), items)
    assert tracker.jobs(T0 + 11_000)[0].state == "writing"
    assert tracker.jobs(T0 + 11_001)[0].state == "timeout"
    # news after the stop time (the writer is still busy) pushes the deadline on
    _feed(tracker, [(job.control_topic, heartbeat(job), T0 + 9_000)])
    assert tracker.jobs(T0 + 15_000)[0].state == "writing"


def test_command_without_answer_times_out() -> None:
    job = _job(0)
    stop = serialise_6s4t(job.job_id, job.run_name, job.service_id, job.command_id, T0 + 1000)
    tracker = _feed(Tracker(Timeouts(command_ms=5_000)), [(job.control_topic, stop, T0)])
    assert tracker.commands(T0 + 5_000)[0].state == "pending"
    assert tracker.commands(T0 + 5_001)[0].state == "timeout"


def test_bad_status_json_gives_an_unknown_worker_not_a_crash() -> None:
    bad = serialise_x5f2("kafka-to-nexus", "6.0", "w1", "host1", 1, 2000, "{not json")
    tracker = _feed(Tracker(), [("status", bad, T0)])
    (worker,) = tracker.workers(T0)
    assert (worker.service_id, worker.host, worker.state) == ("w1", "host1", "unknown")


def test_other_schemas_are_ignored() -> None:
    tracker = Tracker()
    assert tracker.feed(decode(serialise_f144("temp", 1.5, T0 * 1_000_000)), topic="x", timestamp_ms=T0) is False
    assert tracker.to_jsonable(T0) == {"workers": [], "jobs": [], "commands": []}


def test_json_snapshot_has_iso_utc_times() -> None:
    data = _feed(Tracker(), _timed(_job(0))).to_jsonable(NOW)
    assert set(data) == {"workers", "jobs", "commands"}
    job = data["jobs"][0]
    assert job["start"] == "2023-11-14T22:13:20Z" and job["stop"] == "2023-11-14T22:13:21Z"
    assert data["workers"][0]["last_seen"].endswith("Z")
    json.dumps(data)  # plain data throughout
