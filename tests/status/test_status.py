"""The tracker's rules, fed with real encoded messages (ess-streaming-data-types) and explicit times."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from streaming_data_types import (
    serialise_6s4t,
    serialise_answ,
    serialise_f144,
    serialise_pl72,
    serialise_wrdn,
    serialise_x5f2,
)
from streaming_data_types.fbschemas.action_response_answ.ActionOutcome import ActionOutcome
from streaming_data_types.fbschemas.action_response_answ.ActionType import ActionType

from scicat_fw_ingest.messages import NO_STOP_TIME_MS, decode
from scicat_fw_ingest.simulate import SimulatedJob, heartbeat, idle_heartbeat, job_messages, job_phases, run_start
from scicat_fw_ingest.status import Timeouts, Tracker

T0 = 1_700_000_000_000  # ms since epoch
WRITER = "kafka-to-nexus:writer-host-pid:4242-ab12"  # kafka-to-nexus's service_id form
STOP_DT = datetime.fromtimestamp((T0 + 1000) / 1000, tz=UTC)


def _job(i: int, **kw: object) -> SimulatedJob:
    return SimulatedJob(filename=f"/data/run{i}.nxs", job_id=f"00000000-0000-4000-8000-00000000000{i}",
               command_id=f"10000000-0000-4000-8000-00000000000{i}", start_time=T0 + i * 10_000,
               run_name=f"run{i}", **{"service_id": WRITER, **kw})  # type: ignore[arg-type]


def _timed(job: SimulatedJob) -> list[tuple[str, bytes, int]]:
    """The job's messages, each with the Kafka timestamp it would carry (100 ms apart)."""
    return [(topic, data, job.start_time + n * 100) for n, (topic, data) in enumerate(job_messages(job))]


def _feed(tracker: Tracker, items: Sequence[tuple[str, bytes, int | None]]) -> Tracker:
    for topic, data, ts in items:
        tracker.feed(decode(data), topic=topic, timestamp_ms=ts)
    return tracker


def _answ(job: SimulatedJob, action: int, outcome: int, status: int, message: str, command_id: str = "") -> bytes:
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
    assert (worker.service_id, worker.host, worker.state) == (WRITER, "writer-host", "idle")
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


def test_writing_job_times_out_after_its_silence_whatever_its_stop_time() -> None:
    job = _job(0)  # stop time T0 + 1000
    items = [(job.pool_topic, run_start(job), T0), (job.control_topic, heartbeat(job), T0 + 500)]
    tracker = _feed(Tracker(Timeouts(job_silence_ms=10_000)), items)
    assert tracker.jobs(T0 + 10_500)[0].state == "writing"
    assert tracker.jobs(T0 + 10_501)[0].state == "timeout"
    # news (the writer is still busy) pushes the deadline on
    _feed(tracker, [(job.control_topic, heartbeat(job), T0 + 9_000)])
    assert tracker.jobs(T0 + 15_000)[0].state == "writing"


# -- kafka-to-nexus's own sequences, message for message ---------------------------------------

STATUS_TOPIC = "writer_status"


def _replay(items: list[tuple[str, bytes]], first_ts: int, step: int = 100) -> list[tuple[str, bytes, int]]:
    return [(topic, data, first_ts + n * step) for n, (topic, data) in enumerate(items)]


def _writing(job: SimulatedJob, beats: int, first_ts: int = T0) -> list[tuple[str, bytes, int]]:
    """pl72, echo, answ(StartJob) then an x5f2 every 2 s: a writer in the middle of a run."""
    started, _ = job_phases(job)
    items = _replay(started[:3], first_ts)
    return items + [(job.control_topic, heartbeat(job), first_ts + 300 + 2000 * n) for n in range(beats)]


def test_normal_sequence_done_writer_that_answered_idle_and_stop_set_only_by_the_stop() -> None:
    job = _job(0, status_topic=STATUS_TOPIC, heartbeats=2)
    started, finished = job_phases(job)
    tracker = _feed(Tracker(), _replay(started, T0))
    (running,) = tracker.jobs(T0 + 1_000)
    # answ(StartJob) and x5f2 carry the no-stop-time sentinel: not a stop time (year 2262)
    assert (running.state, running.stop, running.service_id) == ("writing", None, WRITER)
    (start_cmd,) = tracker.commands(T0 + 1_000)
    assert (start_cmd.command_id, start_cmd.state, start_cmd.status_code) == (job.job_id, "success", 201)
    _feed(tracker, [*_replay(finished, T0 + 1_000), (STATUS_TOPIC, idle_heartbeat(WRITER, "writer-host", 4242),
                                                     T0 + 2_000)])
    (done,) = tracker.jobs(T0 + 2_100)
    assert (done.state, done.stop, done.file_written, done.control_topic) == \
        ("done", job.stop_time, job.filename, job.control_topic)
    (worker,) = tracker.workers(T0 + 2_100)
    assert (worker.service_id, worker.state, worker.job_id) == (WRITER, "idle", None)
    assert len(tracker.jobs(T0 + 2_100)) == 1  # idle x5f2's "not_currently_writing" is no job


def test_stop_now_sequence_takes_the_request_time_and_ends_done() -> None:
    job = _job(0)
    items = _writing(job, beats=2)
    items += [(job.control_topic, serialise_6s4t(job.job_id, job.run_name, "", "c-now", 0), T0 + 5_000),
              (job.control_topic, serialise_answ(WRITER, job.job_id, "c-now", ActionType.SetStopTime,
                                                 ActionOutcome.Success, "ok", 201,
                                                 datetime.fromtimestamp(0, tz=UTC)), T0 + 5_010),
              (job.control_topic, serialise_wrdn(WRITER, job.job_id, False, job.filename, "{}", None), T0 + 5_500)]
    tracker = _feed(Tracker(), items)
    (only,) = tracker.jobs(T0 + 6_000)
    assert (only.state, only.stop) == ("done", T0 + 5_000)
    stop = next(c for c in tracker.commands(T0 + 6_000) if c.action == "SetStopTime")
    assert (stop.command_id, stop.state) == ("c-now", "success")


@pytest.mark.parametrize("status", [400, 500])
def test_failed_start_on_the_default_topic_is_an_error_not_a_control_topic(status: int) -> None:
    job = _job(0, status_topic=STATUS_TOPIC, start_failure=status)
    started, finished = job_phases(job)
    assert finished == [] and {t for t, _ in started[1:]} == {STATUS_TOPIC}
    tracker = _feed(Tracker(), [*_replay(started, T0), (STATUS_TOPIC, idle_heartbeat(WRITER, "h", 1), T0 + 500)])
    (only,) = tracker.jobs(T0 + 1_000)
    assert only.state == "error" and only.error and only.service_id == WRITER
    assert only.control_topic == (job.control_topic or None)  # never the writer's status topic
    (command,) = tracker.commands(T0 + 1_000)
    assert (command.command_id, command.state, command.status_code) == (job.job_id, "failure", status)
    assert tracker.workers(T0 + 1_000)[0].state == "idle"
    assert tracker.jobs(T0 + 60_000)[0].state == "error"  # a failed start never times out


def test_write_error_sequence_is_an_error_with_the_wrdn_message() -> None:
    job = _job(0, error="Unable to write to file: disk full")
    tracker = _feed(Tracker(), _replay(job_messages(job), T0))
    (only,) = tracker.jobs(T0 + 2_000)
    assert (only.state, only.error) == ("error", "Unable to write to file: disk full")


def test_writer_dies_mid_run_without_stop_time_times_out_15_s_after_its_last_heartbeat() -> None:
    job = _job(0)
    items = _writing(job, beats=5)
    last = max(ts for _, _, ts in items)
    tracker = _feed(Tracker(), items)
    assert tracker.jobs(last + 15_000)[0].state == "writing"
    (dead,) = tracker.jobs(last + 15_001)
    assert (dead.state, dead.stop) == ("timeout", None)
    assert tracker.to_jsonable(last + 16_000)["jobs"][0]["state"] == "timeout"
    assert tracker.workers(last + 16_000)[0].state == "unknown"


def test_writer_dies_mid_run_with_a_future_stop_time_times_out_all_the_same() -> None:
    job = _job(0)
    stop = T0 + 3_600_000  # an hour away
    items = _writing(job, beats=3)
    items += [(job.control_topic, serialise_6s4t(job.job_id, job.run_name, "", "c1", stop), T0 + 6_400),
              (job.control_topic, serialise_answ(WRITER, job.job_id, "c1", ActionType.SetStopTime,
                                                 ActionOutcome.Success, "ok", 201,
                                                 datetime.fromtimestamp(stop / 1000, tz=UTC)), T0 + 6_410),
              (job.control_topic, heartbeat(job, stop_ms=stop), T0 + 8_300)]
    tracker = _feed(Tracker(), items)
    assert tracker.jobs(T0 + 20_000)[0].state == "writing"
    (dead,) = tracker.jobs(T0 + 8_300 + 15_001)
    assert (dead.state, dead.stop) == ("timeout", stop)


def test_pl72_service_id_is_not_the_writer_the_answering_writer_is() -> None:
    job = _job(0)
    asked = serialise_pl72(job.job_id, job.filename, start_time=T0, run_name="r", service_id="wanted-writer",
                           control_topic=job.control_topic, nexus_structure="{}")
    tracker = _feed(Tracker(), [(job.pool_topic, asked, T0)])
    assert tracker.jobs(T0 + 10)[0].service_id is None
    _feed(tracker, _writing(job, beats=1)[2:])
    assert tracker.jobs(T0 + 1_000)[0].service_id == WRITER


def test_job_moved_between_writers_belongs_to_the_one_that_took_it_over() -> None:
    job_a = _job(0)
    other = "kafka-to-nexus:other-host-pid:77-cd34"
    job_b = _job(0, service_id=other, host_name="other-host")
    items = _writing(job_a, beats=2)  # writer A starts, heartbeats until T0 + 2_300, then dies
    items += _writing(job_b, beats=3, first_ts=T0 + 20_000)[2:]  # B answers the same job and writes it
    tracker = _feed(Tracker(), items)
    (moved,) = tracker.jobs(T0 + 25_000)
    assert (moved.state, moved.service_id) == ("writing", other)
    workers = {w.service_id: w for w in tracker.workers(T0 + 25_000)}
    assert (workers[WRITER].state, workers[other].state, workers[other].job_id) == ("unknown", "writing", job_a.job_id)
    _feed(tracker, [(job_b.control_topic, serialise_wrdn(other, job_b.job_id, False, "/b/run0.nxs", "{}", None),
                     T0 + 26_000)])
    assert tracker.jobs(T0 + 27_000)[0].state == "done"


def test_start_failed_on_one_writer_then_started_by_another_is_writing() -> None:
    job = _job(0, status_topic=STATUS_TOPIC, start_failure=500)
    failed, _ = job_phases(job)
    other = "kafka-to-nexus:other-host-pid:77-cd34"
    tracker = _feed(Tracker(), _replay(failed, T0) + _writing(_job(0, service_id=other), 1, T0 + 5_000)[2:])
    assert (tracker.jobs(T0 + 6_000)[0].state, tracker.jobs(T0 + 6_000)[0].service_id) == ("writing", other)


def test_sentinel_never_shows_as_a_stop_time() -> None:
    job = _job(0)
    answer = serialise_answ(WRITER, job.job_id, job.job_id, ActionType.StartJob, ActionOutcome.Success, "ok", 201,
                            datetime.fromtimestamp(NO_STOP_TIME_MS / 1000, tz=UTC))
    tracker = _feed(Tracker(), [(job.control_topic, answer, T0), (job.control_topic, heartbeat(job), T0 + 100)])
    assert tracker.to_jsonable(T0 + 200)["jobs"][0]["stop"] is None


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
    assert job["start"] == "2023-11-14T22:13:20.000Z" and job["stop"] == "2023-11-14T22:13:21.000Z"
    assert data["workers"][0]["last_seen"].endswith("Z")
    json.dumps(data)  # plain data throughout


def test_json_written_record_by_record_is_the_whole_document() -> None:
    import io

    tracker = Tracker()
    empty = io.StringIO()
    tracker.write_json(empty.write, now_ms=1_800_000_000_000)
    assert empty.getvalue() == json.dumps(tracker.to_jsonable(now_ms=1_800_000_000_000))
    for i in range(12):
        job = SimulatedJob(filename=f"f{i}.nxs", control_topic="c", error="disk full" if i % 3 == 0 else None)
        for topic, value in job_messages(job):
            tracker.feed(decode(value), topic=topic, timestamp_ms=1_700_000_000_000 + i)
    out = io.StringIO()
    tracker.write_json(out.write, now_ms=1_800_000_000_000)
    document = json.loads(out.getvalue())
    assert len(document["jobs"]) == 12 and len(document["commands"]) == 24
    assert out.getvalue() == json.dumps(tracker.to_jsonable(now_ms=1_800_000_000_000))
