"""A simulated file writer: the messages one writing job emits, in the order kafka-to-nexus emits them.

Used by ``sfi produce-test``, the demo and the tests. The sequence and identities follow
kafka-to-nexus (../shared/docs/filewriter-protocol.md, "Details of kafka-to-nexus that tools get
wrong"): pl72 to the job pool; on the control topic the pl72 echo, answ(StartJob, 201) whose
command_id is the job_id and whose stop time is the "no stop time" sentinel, x5f2 heartbeats (stop
time still the sentinel), 6s4t, answ(SetStopTime) and wrdn carrying the pl72 metadata verbatim; then
idle x5f2 on the writer's default (status) topic. A failed start (400/500) goes to the default topic
and nothing follows it. service_id is ``kafka-to-nexus:<host>-pid:<pid>-<4 hex>``.

``simulate_jobs`` goes further than ``job_messages``: like a real writer it also writes the NeXus
file (from the pl72's nexus_structure, via ``nexus.writer``) before it announces it with wrdn, so
the whole pipeline — status, listener, ingest — can run without a file writer.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import string
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
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

from .config import Config
from .errors import KafkaError
from .kafka import ensure_topics, make_producer
from ._time import iso_ms
from .messages import NO_STOP_TIME_MS
from .nexus.writer import (
    NexusStructureError,
    WriteReport,
    check_structure,
    parse_structure,
    unknown_stream_modules,
    write_nexus,
)

#: What the simulated writer calls itself in x5f2: the writer it imitates, and a version saying it is not.
SOFTWARE_NAME = "kafka-to-nexus"
SOFTWARE_VERSION = "0.0.0+sfi-simulated"
#: kafka-to-nexus's default status interval (ms): x5f2 every 2 s, writing or idle.
UPDATE_INTERVAL_MS = 2000
#: The writer's default command/status topic (its --command-status-topic) when none is given.
DEFAULT_STATUS_TOPIC = "sfi_writer_status"
#: Ways ``--fail`` ends a job, as kafka-to-nexus would: a rejected start (400: e.g. no control topic),
#: a failed start (500: e.g. file exists), or a write error reported in wrdn.
FAILURES = ("start-400", "start-500", "write-error")
_START_FAILURE_MESSAGES = {
    400: "Rejected: the run start has no control topic",
    500: "Failed to start job: simulated failure (sfi produce-test --fail start-500)",
}


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
    #: The failed answ's message (default: one naming the simulated failure).
    start_message: str | None = None
    heartbeats: int = 1

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
    return serialise_x5f2(SOFTWARE_NAME, SOFTWARE_VERSION, job.service_id, job.host_name, job.process_id,
                          UPDATE_INTERVAL_MS, json.dumps(status))


def idle_heartbeat(service_id: str, host_name: str, process_id: int) -> bytes:
    """The x5f2 an idle kafka-to-nexus sends every 2 s on its default status topic."""
    idle = json.dumps({"state": "idle", "job_id": "not_currently_writing", "file_being_written": "",
                       "start_time": 0, "stop_time": 0})
    return serialise_x5f2(SOFTWARE_NAME, SOFTWARE_VERSION, service_id, host_name, process_id, UPDATE_INTERVAL_MS,
                          idle)


def run_start(job: SimulatedJob) -> bytes:
    return serialise_pl72(
        job_id=job.job_id, filename=job.filename, start_time=job.start_time, stop_time=None,
        run_name=job.run_name, nexus_structure=job.nexus_structure, service_id="",
        instrument_name=job.instrument_name, broker=job.broker, metadata=job.metadata,
        control_topic=job.control_topic,
    )


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def job_phases(job: SimulatedJob) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """``(until the file is being written, from the stop on)``: the writer writes the file in between.

    The second part ends with the wrdn (nothing for a failed start).
    """
    start = run_start(job)
    if job.start_failure is not None:
        answer = serialise_answ(job.service_id, job.job_id, job.job_id, ActionType.StartJob, ActionOutcome.Failure,
                                job.start_message or _START_FAILURE_MESSAGES[job.start_failure], job.start_failure,
                                _utc(NO_STOP_TIME_MS))
        echo = [(job.status_topic, start)] if job.start_failure == 500 else []
        return [(job.pool_topic, start), *echo, (job.status_topic, answer)], []
    stop_ms = job.stop_time or job.start_time
    started = [
        (job.pool_topic, start),
        (job.control_topic, start),  # the writer echoes the run start on the control topic
        (job.control_topic, serialise_answ(job.service_id, job.job_id, job.job_id, ActionType.StartJob,
                                           ActionOutcome.Success, "Started write job", 201,
                                           _utc(NO_STOP_TIME_MS))),
    ]
    started += [(job.control_topic, heartbeat(job)) for _ in range(job.heartbeats)]
    finished = [
        (job.control_topic, serialise_6s4t(job.job_id, job.run_name, "", job.command_id, stop_ms)),
        (job.control_topic, serialise_answ(job.service_id, job.job_id, job.command_id, ActionType.SetStopTime,
                                           ActionOutcome.Success, "Stop time set", 201, _utc(stop_ms))),
        (job.control_topic, serialise_wrdn(job.service_id, job.job_id, job.error is not None,
                                           job.written_path or job.filename, job.metadata or None, job.error)),
    ]
    return started, finished


def job_messages(job: SimulatedJob) -> list[tuple[str, bytes]]:
    """``[(topic, bytes), ...]`` for one complete job, in emission order (the wrdn last, when there is one)."""
    started, finished = job_phases(job)
    return started + finished


# -- the simulated writer: files and sequences on a real broker ----------------------------------

LAYOUTS = ("ess", "isis")
DEFAULT_POOL_TOPIC = "sfi_pool"
DEFAULT_PROPOSAL = "123456"
DEFAULT_INSTRUMENT = {"ess": "DUMMY", "isis": "LOQ"}
#: The wrdn message of a job ended with ``--fail write-error``.
FAILURE_MESSAGE = "simulated write failure (sfi produce-test --fail write-error)"

#: ``${name}`` placeholders filled per job in a template's string values (also in --nexus-structure files).
PLACEHOLDERS: dict[str, str] = {
    "job_id": "the job's UUID (pl72 job_id)",
    "run_name": "the pl72 run_name",
    "run_number": "the run number (a number; ESS entry_identifier, ISIS run_number)",
    "filename": "the pl72 filename (relative to the output directory)",
    "file_path": "the absolute path reported in wrdn",
    "proposal_id": "the proposal (experiment_identifier)",
    "title": "'Simulated run <run_number> on <instrument>'",
    "instrument": "the instrument name as given", "instrument_lower": "the instrument name in lower case",
    "sample_name": "'Simulated sample <run_number>'",
    "user_name": "'Simulated User'", "user_email": "'simulated.user@example.org'",
    "user_affiliation": "'sfi simulation'", "user_id": "'simuser'",
    "start_time": "run start, ISO-8601 UTC", "end_time": "run stop, ISO-8601 UTC",
    "duration": "run length in seconds", "good_frames": "duration x 10", "total_counts": "good_frames x 100",
}


@dataclass(frozen=True)
class JobResult:
    """One simulated job as ``produce-test --json`` reports it."""

    job_id: str
    file: str
    pool_topic: str
    control_topic: str
    failed: bool
    run_name: str
    #: ``done``, ``write-error``, ``start-400`` or ``start-500`` (no file written for the last two).
    outcome: str = "done"

    def to_json(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "file": self.file, "pool_topic": self.pool_topic,
                "control_topic": self.control_topic, "failed": self.failed, "run_name": self.run_name,
                "outcome": self.outcome}


def template_text(layout: str) -> str:
    """The packaged default nexus_structure of a layout (with its ``${...}`` placeholders)."""
    if layout not in LAYOUTS:
        raise NexusStructureError(f"layout '{layout}': unknown (known: {', '.join(LAYOUTS)})")
    return resources.files("scicat_fw_ingest").joinpath("templates", f"sim_{layout}.json").read_text("utf-8")


def load_structure_file(path: str | Path) -> dict[str, Any]:
    """A nexus_structure file, checked by writing it in memory; errors name the file."""
    source = f"nexus structure file {path}"
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise NexusStructureError(f"{source}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise NexusStructureError(f"{source}: not UTF-8 text: {exc.reason}") from None
    structure = parse_structure(text, source)
    check_structure(fill_placeholders(structure, _sample_values()), source)
    return structure


def fill_placeholders(structure: Any, values: Mapping[str, str]) -> Any:
    """A copy of ``structure`` with ``${name}`` replaced in every string; unknown names stay as written."""
    if isinstance(structure, str):
        return string.Template(structure).safe_substitute(values)
    if isinstance(structure, list):
        return [fill_placeholders(v, values) for v in structure]
    if isinstance(structure, dict):
        return {k: fill_placeholders(v, values) for k, v in structure.items()}
    return structure


def placeholder_values(job: SimulatedJob, *, run_number: int, proposal_id: str, instrument: str) -> dict[str, str]:
    start, stop = job.start_time, job.stop_time or job.start_time
    duration = (stop - start) / 1000
    good_frames = int(duration * 10)
    return {
        "job_id": job.job_id, "run_name": job.run_name, "run_number": str(run_number), "filename": job.filename,
        "file_path": job.written_path or job.filename, "proposal_id": proposal_id,
        "title": f"Simulated run {run_number} on {instrument}", "instrument": instrument,
        "instrument_lower": instrument.lower(), "sample_name": f"Simulated sample {run_number}",
        "user_name": "Simulated User", "user_email": "simulated.user@example.org",
        "user_affiliation": "sfi simulation", "user_id": "simuser",
        "start_time": iso_ms(start), "end_time": iso_ms(stop), "duration": f"{duration:g}",
        "good_frames": str(good_frames), "total_counts": str(good_frames * 100),
    }


def _sample_values() -> dict[str, str]:
    job = SimulatedJob(filename="check.nxs", start_time=0, stop_time=1000)
    return placeholder_values(job, run_number=1, proposal_id=DEFAULT_PROPOSAL, instrument="CHECK")


def plan_jobs(count: int, *, output_dir: str | Path, layout: str = "ess", pool_topic: str = DEFAULT_POOL_TOPIC,
              control_topic: str | None = None, status_topic: str = DEFAULT_STATUS_TOPIC,
              nexus_structure: dict[str, Any] | None = None, fail: list[str] | tuple[str, ...] = (),
              instrument: str | None = None, proposal_id: str = DEFAULT_PROPOSAL, duration_ms: int = 2000,
              heartbeats: int = 2, broker: str = "", service_id: str | None = None,
              now_ms: int | None = None) -> list[SimulatedJob]:
    """``count`` back-to-back jobs of one writer that ended by ``now_ms``; the last ``len(fail)`` of
    them fail, in the given ways (``FAILURES``), in order.

    Each job's nexus_structure is the template with its placeholders filled, so the pl72 carries
    exactly what the file will contain. A structure naming a stream module kafka-to-nexus does not
    have makes every start fail with 500, as the real writer rejects such a job whole.
    """
    if layout not in LAYOUTS:
        raise NexusStructureError(f"layout '{layout}': unknown (known: {', '.join(LAYOUTS)})")
    bad = [kind for kind in fail if kind not in FAILURES]
    if bad or len(fail) > count:
        raise ValueError(f"fail: {len(fail)} of {count} jobs, each one of {', '.join(FAILURES)} (got {list(fail)})")
    template = nexus_structure if nexus_structure is not None else parse_structure(template_text(layout))
    unknown = unknown_stream_modules(template)
    instrument = instrument or DEFAULT_INSTRUMENT[layout]
    out = Path(output_dir).resolve()
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    first_run = (now_ms // 1000) % 10_000_000
    host, pid = socket.gethostname(), os.getpid()
    service_id = service_id or writer_service_id(host, pid)
    failures = [None] * (count - len(fail)) + list(fail)
    jobs: list[SimulatedJob] = []
    for i in range(count):
        run_number = first_run + i
        job_id = str(uuid.uuid4())
        if layout == "isis":
            while (out / f"{instrument}{run_number:08d}.nxs").exists():
                run_number += count
            filename, run_name = f"{instrument}{run_number:08d}.nxs", str(run_number)
        else:
            filename, run_name = f"{instrument.lower()}_{run_number}_{job_id[:8]}.nxs", f"run-{run_number}"
        start = now_ms - (count - i) * duration_ms
        metadata = {"proposal_id": proposal_id, "run_number": run_number, "simulated_by": "sfi produce-test"}
        kind = failures[i]
        start_failure = 500 if unknown else {"start-400": 400, "start-500": 500}.get(kind or "")
        job = SimulatedJob(filename=filename, job_id=job_id, pool_topic=pool_topic, status_topic=status_topic,
                           control_topic="" if start_failure == 400 else control_topic or "",
                           host_name=host, process_id=pid, service_id=service_id, run_name=run_name, broker=broker,
                           metadata=json.dumps(metadata), start_time=start, stop_time=start + duration_ms,
                           written_path=str(out / filename), heartbeats=heartbeats, start_failure=start_failure,
                           start_message=(f"Failed to start job: no writer module '{unknown[0]}'"
                                          if unknown else None),
                           error=FAILURE_MESSAGE if kind == "write-error" else None)
        values = placeholder_values(job, run_number=run_number, proposal_id=proposal_id, instrument=instrument)
        job.nexus_structure = json.dumps(fill_placeholders(template, values), separators=(",", ":"))
        jobs.append(job)
    return jobs


class _IdleHeartbeats:
    """x5f2 "idle" every 2 s on the writer's default topic while it is not writing, like kafka-to-nexus."""

    def __init__(self, producer: Any, topic: str, service_id: str, host: str, pid: int) -> None:
        self._producer, self._topic = producer, topic
        self._message = idle_heartbeat(service_id, host, pid)
        self._stop = threading.Event()
        self.writing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sfi-idle-x5f2", daemon=True)

    def beat(self) -> None:
        self._producer.produce(self._topic, self._message)
        self._producer.poll(0)

    def _run(self) -> None:
        while not self._stop.wait(UPDATE_INTERVAL_MS / 1000):
            if not self.writing.is_set():
                self.beat()

    def __enter__(self) -> _IdleHeartbeats:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def simulate_jobs(cfg: Config, count: int, *, output_dir: str | Path, layout: str = "ess",
                  pool_topic: str = DEFAULT_POOL_TOPIC, control_topic: str | None = None,
                  status_topic: str = DEFAULT_STATUS_TOPIC, nexus_structure: dict[str, Any] | None = None,
                  fail: list[str] | tuple[str, ...] = (), instrument: str | None = None,
                  proposal_id: str = DEFAULT_PROPOSAL, heartbeats: int = 2, rng_seed: int | None = None,
                  linger_s: float = 0.0,
                  on_job: Callable[[JobResult, WriteReport | None], None] | None = None) -> list[JobResult]:
    """Run ``count`` simulated writing jobs on the broker of ``cfg``, writing one file per started job.

    Per job, in kafka-to-nexus's order: pl72 (pool topic), pl72 echo and answ(StartJob) on the
    control topic, x5f2 heartbeats; the file is written; 6s4t, answ(SetStopTime); wrdn — published
    only once the file is complete. Between jobs, and for ``linger_s`` after the last, the writer is
    idle: x5f2 every 2 s on ``status_topic``. Missing topics are created.
    """
    if count < 1 or len(fail) > count:
        raise ValueError(f"count must be >= 1 and at most count jobs can fail (count={count}, fail={len(fail)})")
    out = Path(output_dir)
    if not out.is_dir():
        raise NexusStructureError(f"output directory {out}: does not exist or is not a directory")
    jobs = plan_jobs(count, output_dir=out, layout=layout, pool_topic=pool_topic, control_topic=control_topic,
                     status_topic=status_topic, nexus_structure=nexus_structure, fail=fail, instrument=instrument,
                     proposal_id=proposal_id, heartbeats=heartbeats, broker=cfg.bootstrap or "")
    ensure_topics(cfg, sorted({pool_topic, status_topic, *(job.control_topic for job in jobs if job.control_topic)}))
    producer = make_producer(cfg)
    results = []
    with _IdleHeartbeats(producer, status_topic, jobs[0].service_id, jobs[0].host_name, jobs[0].process_id) as idle:
        for index, job in enumerate(jobs):
            started, finished = job_phases(job)
            report: WriteReport | None = None
            if job.start_failure is not None:
                _publish(producer, started)  # the pl72 and the failed answ; the writer stays idle
            else:
                idle.writing.set()
                _publish(producer, started)  # run start, echo, answ(StartJob), heartbeats while writing
                seed = None if rng_seed is None else rng_seed + index
                report = write_nexus(job.written_path or job.filename, job.nexus_structure, rng_seed=seed,
                                     start_time_ms=job.start_time, stop_time_ms=job.stop_time)
                _publish(producer, finished)  # stop, answ(SetStopTime), wrdn: after the file exists
                idle.writing.clear()
                idle.beat()  # back on its default topic
            result = JobResult(job.job_id, job.written_path or job.filename, job.pool_topic, job.control_topic,
                               job.error is not None or job.start_failure is not None, job.run_name, _outcome(job))
            results.append(result)
            if on_job is not None:
                on_job(result, report)
        time.sleep(linger_s)
    if producer.flush(15):
        raise KafkaError(f"idle heartbeats to '{status_topic}' not confirmed within 15 s")
    return results


def _outcome(job: SimulatedJob) -> str:
    if job.start_failure is not None:
        return f"start-{job.start_failure}"
    return "write-error" if job.error is not None else "done"


def _publish(producer: Any, messages: list[tuple[str, bytes]], timeout: float = 15.0) -> None:
    """Produce in order and wait for every delivery: the next step must not overtake these."""
    errors: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(f"delivery to '{msg.topic()}' failed: {err.str()}")

    for topic, value in messages:
        producer.produce(topic, value, on_delivery=delivered)
    if producer.flush(timeout):
        raise KafkaError(f"messages to '{messages[0][0]}' not confirmed within {timeout:.0f} s")
    if errors:
        raise KafkaError(errors[0])
