"""One simulated kafka-to-nexus job: its identities and the messages it sends, in the writer's order."""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from streaming_data_types import (
    serialise_6s4t,
    serialise_answ,
    serialise_pl72,
    serialise_wrdn,
    serialise_x5f2,
)
from streaming_data_types.fbschemas.action_response_answ.ActionOutcome import ActionOutcome
from streaming_data_types.fbschemas.action_response_answ.ActionType import ActionType

from .._time import iso_ms
from ..messages import NO_STOP_TIME_MS

SOFTWARE_NAME = "kafka-to-nexus"
SOFTWARE_VERSION = "0.0.0+sfi-simulated"
#: kafka-to-nexus's default status interval (ms): x5f2 every 2 s, writing or idle.
UPDATE_INTERVAL_MS = 2000
#: The writer's default command/status topic (its --command-status-topic) when none is given.
DEFAULT_STATUS_TOPIC = "sfi_writer_status"
#: Ways ``--fail`` ends a job, as kafka-to-nexus would: a rejected start (400: e.g. no control topic),
#: a failed start (500: e.g. file exists), or a write error reported in wrdn.
FAILURES = ("start-400", "start-500", "write-error")
#: Why a simulated start fails, as kafka-to-nexus words it (src/CommandSystem/Handler.cpp,
#: ``Handler::startWritingProcess``): the 400 text verbatim; for 500 the exception text (``E.what()``) that
#: the writer puts after "The failure message was: ".
_START_FAILURE_MESSAGES = {
    400: "Rejected start job as control topic was empty.",
    500: "simulated failure (sfi produce-test --fail start-500)",
}


def started_text(start_ms: int, stop_ms: int | None) -> str:
    """kafka-to-nexus's answ(StartJob, 201) text; no stop time is ``time_point::max()`` (2262-04-11...)."""
    return (f"Started write job with start time {iso_ms(start_ms)} and stop time "
            f"{iso_ms(stop_ms or NO_STOP_TIME_MS)}.")


def start_failed_text(what: str) -> str:
    """kafka-to-nexus's answ(StartJob, 500) text around the exception's message."""
    return f"Failed to start filewriting job. The failure message was: {what}"


def stop_text(stop_ms: int) -> str:
    """kafka-to-nexus's answ(SetStopTime, 201) text: stop now (stop time 0) or a stop time set."""
    return "Attempting to stop writing job now." if stop_ms == 0 else \
        f"File writing job stop time set to: {iso_ms(stop_ms)}"


def status_json(status: dict[str, object]) -> str:
    """x5f2 status_json as kafka-to-nexus dumps it: nlohmann::json's ``dump()``, compact with sorted keys."""
    return json.dumps(status, separators=(",", ":"), sort_keys=True)


def writer_service_id(host: str | None = None, pid: int | None = None) -> str:
    """A service_id in kafka-to-nexus's form ``kafka-to-nexus:<host>-pid:<pid>-<4 hex>``."""
    return f"kafka-to-nexus:{host or socket.gethostname()}-pid:{os.getpid() if pid is None else pid}-" \
           f"{secrets.token_hex(2)}"


@dataclass
class SimulatedJob:
    """One simulated writing job. Times are ms since the epoch."""

    filename: str
    job_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    control_topic: str = ""
    pool_topic: str = "sfi_pool"
    #: The writer's default topic: failed starts are answered there, idle x5f2 go there.
    status_topic: str = DEFAULT_STATUS_TOPIC
    host_name: str = "writer-host"
    process_id: int = 4242
    #: The answering writer's identity; default ``kafka-to-nexus:<host_name>-pid:<process_id>-<4 hex>``.
    service_id: str = ""
    run_name: str = "run"
    #: Empty by default: a non-empty one makes kafka-to-nexus copy a template file ``<I>/<I>.hdf``.
    instrument_name: str = ""
    nexus_structure: str = "{}"
    metadata: str = "{}"
    broker: str = ""
    start_time: int = field(default_factory=lambda: int(time.time() * 1000))
    stop_time: int | None = None
    command_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: The path the writer reports in wrdn (``<hdf-output-prefix>/<filename>``); defaults to filename.
    written_path: str | None = None
    #: wrdn error message: the write failed (error_encountered).
    error: str | None = None
    #: 400 or 500: the writer does not start the job (answ on the status topic, no file, no wrdn).
    start_failure: int | None = None
    #: Why the start failed (500: the exception text kafka-to-nexus quotes; 400: the whole answ text).
    start_message: str | None = None
    heartbeats: int = 1
    #: Stop with a 6s4t whose stop time is 0 ("stop now") instead of the job's stop time.
    stop_now: bool = False

    def __post_init__(self) -> None:
        if not self.control_topic and self.start_failure != 400:
            self.control_topic = f"sfi_control_{self.job_id[:8]}"
        if self.stop_time is None:
            self.stop_time = self.start_time + 1000
        if not self.service_id:
            self.service_id = writer_service_id(self.host_name, self.process_id)
        if self.start_failure not in (None, 400, 500):
            raise ValueError(f"start_failure must be 400 or 500, not {self.start_failure}")


def heartbeat(job: SimulatedJob, state: str = "writing", stop_ms: int | None = None) -> bytes:
    """x5f2 of the job's writer; while writing, the stop time is the sentinel until a stop is set."""
    if state != "writing":
        return idle_heartbeat(job.service_id, job.host_name, job.process_id)
    status = {"state": "writing", "job_id": job.job_id, "file_being_written": job.filename,
              "start_time": job.start_time, "stop_time": NO_STOP_TIME_MS if stop_ms is None else stop_ms}
    payload: bytes = serialise_x5f2(SOFTWARE_NAME, SOFTWARE_VERSION, job.service_id, job.host_name, job.process_id,
                                    UPDATE_INTERVAL_MS, status_json(status))
    return payload


def idle_heartbeat(service_id: str, host_name: str, process_id: int) -> bytes:
    """The x5f2 an idle kafka-to-nexus sends every 2 s on its default status topic."""
    idle = status_json({"state": "idle", "job_id": "not_currently_writing", "file_being_written": "",
                        "start_time": 0, "stop_time": 0})
    payload: bytes = serialise_x5f2(SOFTWARE_NAME, SOFTWARE_VERSION, service_id, host_name, process_id,
                                    UPDATE_INTERVAL_MS, idle)
    return payload


def run_start(job: SimulatedJob) -> bytes:
    payload: bytes = serialise_pl72(
        job_id=job.job_id, filename=job.filename, start_time=job.start_time, stop_time=None,
        run_name=job.run_name, nexus_structure=job.nexus_structure, service_id="",
        instrument_name=job.instrument_name, broker=job.broker, metadata=job.metadata,
        control_topic=job.control_topic,
    )
    return payload


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def job_phases(job: SimulatedJob) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """``(until the file is being written, from the stop on)``: the writer writes the file in between.

    The second part ends with the wrdn (nothing for a failed start). As ``Handler::handleStartCommand``
    does, the pl72 echo precedes every start answer, 400 and 500 included (on the default topic then,
    as the writer has not switched to the control topic or has switched back).
    """
    start = run_start(job)
    if job.start_failure is not None:
        reason = job.start_message or _START_FAILURE_MESSAGES[job.start_failure]
        text = start_failed_text(reason) if job.start_failure == 500 else reason
        answer = serialise_answ(job.service_id, job.job_id, job.job_id, ActionType.StartJob, ActionOutcome.Failure,
                                text, job.start_failure, _utc(NO_STOP_TIME_MS))
        return [(job.pool_topic, start), (job.status_topic, start), (job.status_topic, answer)], []
    # the 6s4t's stop time: 0 = stop now (the writer stops at once; job.stop_time is when it did)
    stop_ms = 0 if job.stop_now else job.stop_time or job.start_time
    started = [
        (job.pool_topic, start),
        (job.control_topic, start),  # the writer echoes the run start on the control topic
        (job.control_topic, serialise_answ(job.service_id, job.job_id, job.job_id, ActionType.StartJob,
                                           ActionOutcome.Success, started_text(job.start_time, None), 201,
                                           _utc(NO_STOP_TIME_MS))),
    ]
    started += [(job.control_topic, heartbeat(job)) for _ in range(job.heartbeats)]
    finished = [
        (job.control_topic, serialise_6s4t(job.job_id, job.run_name, "", job.command_id, stop_ms)),
        (job.control_topic, serialise_answ(job.service_id, job.job_id, job.command_id, ActionType.SetStopTime,
                                           ActionOutcome.Success, stop_text(stop_ms), 201, _utc(stop_ms))),
    ]
    if job.stop_now:  # Master::stopNow sets the reported stop time to 0: the x5f2 until the wrdn says so
        finished.append((job.control_topic, heartbeat(job, stop_ms=0)))
    finished.append((job.control_topic, serialise_wrdn(job.service_id, job.job_id, job.error is not None,
                                                       job.written_path or job.filename, job.metadata or None,
                                                       job.error)))
    return started, finished


def job_messages(job: SimulatedJob) -> list[tuple[str, bytes]]:
    """``[(topic, bytes), ...]`` for one complete job, in emission order (the wrdn last, when there is one)."""
    started, finished = job_phases(job)
    return started + finished
