"""A simulated file writer: the messages one writing job emits, in the order real writers emit them.

Used by ``sfi produce-test``, the demo and the tests. The sequence follows kafka-to-nexus: pl72 to
the job pool; on the control topic the pl72 echo, answ(StartJob, 201), x5f2 heartbeats, 6s4t,
answ(SetStopTime) and wrdn (see ../shared/docs/filewriter-protocol.md).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from streaming_data_types import (
    serialise_6s4t,
    serialise_answ,
    serialise_pl72,
    serialise_wrdn,
    serialise_x5f2,
)
from streaming_data_types.fbschemas.action_response_answ.ActionOutcome import ActionOutcome
from streaming_data_types.fbschemas.action_response_answ.ActionType import ActionType

SOFTWARE_NAME = "sfi-simulated-writer"
SOFTWARE_VERSION = "1.0"


@dataclass
class Job:
    """One simulated writing job. Times are ms since the epoch."""

    filename: str
    job_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    control_topic: str = ""
    pool_topic: str = "sfi_pool"
    service_id: str = "sfi-writer-1"
    host_name: str = "writer-host"
    run_name: str = "run"
    instrument_name: str = "DUMMY"
    nexus_structure: str = "{}"
    metadata: str = "{}"
    broker: str = ""
    start_time: int = field(default_factory=lambda: int(time.time() * 1000))
    stop_time: int | None = None
    command_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: The path the writer reports in wrdn (``<hdf-output-prefix>/<filename>``); defaults to filename.
    written_path: str | None = None
    error: str | None = None
    heartbeats: int = 1

    def __post_init__(self) -> None:
        if not self.control_topic:
            self.control_topic = f"sfi_control_{self.job_id[:8]}"
        if self.stop_time is None:
            self.stop_time = self.start_time + 1000


def _status(job: Job, state: str) -> str:
    status: dict[str, Any] = {"state": state}
    if state == "writing":
        status.update(job_id=job.job_id, file_being_written=job.filename,
                      start_time=job.start_time, stop_time=job.stop_time)
    return json.dumps(status)


def heartbeat(job: Job, state: str = "writing") -> bytes:
    return serialise_x5f2(SOFTWARE_NAME, SOFTWARE_VERSION, job.service_id, job.host_name, 4242, 2000,
                          _status(job, state))


def run_start(job: Job) -> bytes:
    return serialise_pl72(
        job_id=job.job_id, filename=job.filename, start_time=job.start_time, stop_time=None,
        run_name=job.run_name, nexus_structure=job.nexus_structure, service_id=job.service_id,
        instrument_name=job.instrument_name, broker=job.broker, metadata=job.metadata,
        control_topic=job.control_topic,
    )


def job_messages(job: Job) -> list[tuple[str, bytes]]:
    """``[(topic, bytes), ...]`` for one complete job, in emission order."""
    stop_dt = datetime.fromtimestamp((job.stop_time or 0) / 1000, tz=timezone.utc)
    start = run_start(job)
    messages = [
        (job.pool_topic, start),
        (job.control_topic, start),  # the writer echoes the run start on the control topic
        (job.control_topic, serialise_answ(job.service_id, job.job_id, "", ActionType.StartJob,
                                           ActionOutcome.Success, "Start job accepted", 201, stop_dt)),
    ]
    messages += [(job.control_topic, heartbeat(job)) for _ in range(job.heartbeats)]
    messages += [
        (job.control_topic, serialise_6s4t(job.job_id, job.run_name, job.service_id, job.command_id,
                                           job.stop_time)),
        (job.control_topic, serialise_answ(job.service_id, job.job_id, job.command_id, ActionType.SetStopTime,
                                           ActionOutcome.Success, "Stop time set", 201, stop_dt)),
        (job.control_topic, serialise_wrdn(job.service_id, job.job_id, job.error is not None,
                                           job.written_path or job.filename, job.metadata or None, job.error)),
    ]
    return messages
