"""A simulated file writer: the messages one writing job emits, in the order kafka-to-nexus emits them.

Used by ``sfi produce-test``, the demo and the tests. The sequence and identities follow
kafka-to-nexus (../shared/docs/filewriter-protocol.md, "Details of kafka-to-nexus that tools get
wrong"): pl72 to the job pool; on the control topic the pl72 echo, answ(StartJob, 201) whose
command_id is the job_id and whose stop time is the "no stop time" sentinel, x5f2 heartbeats (stop
time still the sentinel), 6s4t, answ(SetStopTime) and wrdn carrying the pl72 metadata verbatim; then
idle x5f2 on the writer's default (status) topic. A failed start (400/500) is the pl72 echo and the
answ on the default topic, and nothing follows it. answ texts are kafka-to-nexus's own (``Handler.cpp``), x5f2
status JSON is compact with sorted keys; a job may be stopped "now" (6s4t stop time 0). service_id is
``kafka-to-nexus:<host>-pid:<pid>-<4 hex>``.

``simulate_jobs`` goes further than ``job_messages``: like a real writer it also writes the NeXus
file (from the pl72's nexus_structure, via ``nexus.writer``) before it announces it with wrdn, so
the whole pipeline — status, listener, ingest — can run without a file writer.
"""

from __future__ import annotations

from ..nexus.writer import parse_structure
from ._job import (
    DEFAULT_STATUS_TOPIC,
    FAILURES,
    SOFTWARE_NAME,
    SOFTWARE_VERSION,
    UPDATE_INTERVAL_MS,
    SimulatedJob,
    heartbeat,
    idle_heartbeat,
    job_messages,
    job_phases,
    run_start,
    writer_service_id,
)
from ._layouts import (
    DEFAULT_INSTRUMENT,
    DEFAULT_POOL_TOPIC,
    DEFAULT_PROPOSAL,
    FAILURE_MESSAGE,
    LAYOUTS,
    PLACEHOLDERS,
    fill_placeholders,
    load_structure_file,
    placeholder_values,
    template_text,
)
from ._run import JobResult, plan_jobs, simulate_jobs

__all__ = [
    "DEFAULT_INSTRUMENT", "DEFAULT_POOL_TOPIC", "DEFAULT_PROPOSAL", "DEFAULT_STATUS_TOPIC", "FAILURES",
    "FAILURE_MESSAGE", "LAYOUTS", "PLACEHOLDERS", "SOFTWARE_NAME", "SOFTWARE_VERSION", "UPDATE_INTERVAL_MS",
    "JobResult", "SimulatedJob", "fill_placeholders", "heartbeat", "idle_heartbeat", "job_messages", "job_phases",
    "load_structure_file", "parse_structure", "placeholder_values", "plan_jobs", "run_start", "simulate_jobs",
    "template_text", "writer_service_id",
]
