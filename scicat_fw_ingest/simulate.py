"""A simulated file writer: the messages one writing job emits, in the order real writers emit them.

Used by ``sfi produce-test``, the demo and the tests. The sequence follows kafka-to-nexus: pl72 to
the job pool; on the control topic the pl72 echo, answ(StartJob, 201), x5f2 heartbeats, 6s4t,
answ(SetStopTime) and wrdn (see ../shared/docs/filewriter-protocol.md).

``simulate_jobs`` goes further than ``job_messages``: like a real writer it also writes the NeXus
file (from the pl72's nexus_structure, via ``nexus.writer``) before it announces it with wrdn, so
the whole pipeline — status, listener, ingest — can run without a file writer.
"""

from __future__ import annotations

import json
import socket
import string
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
from .nexus.writer import NexusStructureError, WriteReport, check_structure, iso_ms, parse_structure, write_nexus

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


# -- the simulated writer: files and sequences on a real broker ----------------------------------

LAYOUTS = ("ess", "isis")
DEFAULT_POOL_TOPIC = "sfi_pool"
DEFAULT_PROPOSAL = "123456"
DEFAULT_INSTRUMENT = {"ess": "DUMMY", "isis": "LOQ"}
#: The wrdn message of a job ended with ``fail``.
FAILURE_MESSAGE = "simulated write failure (sfi produce-test --fail)"

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

    def to_json(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "file": self.file, "pool_topic": self.pool_topic,
                "control_topic": self.control_topic, "failed": self.failed, "run_name": self.run_name}


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


def placeholder_values(job: Job, *, run_number: int, proposal_id: str, instrument: str) -> dict[str, str]:
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
    job = Job(filename="check.nxs", start_time=0, stop_time=1000)
    return placeholder_values(job, run_number=1, proposal_id=DEFAULT_PROPOSAL, instrument="CHECK")


def plan_jobs(count: int, *, output_dir: str | Path, layout: str = "ess", pool_topic: str = DEFAULT_POOL_TOPIC,
              control_topic: str | None = None, nexus_structure: dict[str, Any] | None = None, fail: int = 0,
              instrument: str | None = None, proposal_id: str = DEFAULT_PROPOSAL, duration_ms: int = 2000,
              heartbeats: int = 2, broker: str = "", now_ms: int | None = None) -> list[Job]:
    """``count`` back-to-back jobs that ended by ``now_ms``; the last ``fail`` of them end in error.

    Each job's nexus_structure is the template with its placeholders filled, so the pl72 carries
    exactly what the file will contain.
    """
    if layout not in LAYOUTS:
        raise NexusStructureError(f"layout '{layout}': unknown (known: {', '.join(LAYOUTS)})")
    template = nexus_structure if nexus_structure is not None else parse_structure(template_text(layout))
    instrument = instrument or DEFAULT_INSTRUMENT[layout]
    out = Path(output_dir).resolve()
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    first_run = (now_ms // 1000) % 10_000_000
    host = socket.gethostname()
    jobs: list[Job] = []
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
        metadata = {"proposal_id": proposal_id, "run_number": run_number, "simulated_by": SOFTWARE_NAME}
        job = Job(filename=filename, job_id=job_id, control_topic=control_topic or "", pool_topic=pool_topic,
                  host_name=host, run_name=run_name, instrument_name=instrument, broker=broker,
                  metadata=json.dumps(metadata), start_time=start, stop_time=start + duration_ms,
                  written_path=str(out / filename), heartbeats=heartbeats,
                  error=FAILURE_MESSAGE if i >= count - fail else None)
        values = placeholder_values(job, run_number=run_number, proposal_id=proposal_id, instrument=instrument)
        job.nexus_structure = json.dumps(fill_placeholders(template, values), separators=(",", ":"))
        jobs.append(job)
    return jobs


def simulate_jobs(cfg: Config, count: int, *, output_dir: str | Path, layout: str = "ess",
                  pool_topic: str = DEFAULT_POOL_TOPIC, control_topic: str | None = None,
                  nexus_structure: dict[str, Any] | None = None, fail: int = 0, instrument: str | None = None,
                  proposal_id: str = DEFAULT_PROPOSAL, heartbeats: int = 2, rng_seed: int | None = None,
                  on_job: Callable[[JobResult, WriteReport], None] | None = None) -> list[JobResult]:
    """Run ``count`` simulated writing jobs on the broker of ``cfg``, writing one file per job.

    Per job, in real-writer order: pl72 (pool topic), pl72 echo and answ(StartJob) on the control
    topic; the file is written; x5f2 heartbeats, 6s4t, answ(SetStopTime); wrdn — published only
    once the file is complete. Missing topics are created.
    """
    if count < 1 or not 0 <= fail <= count:
        raise ValueError(f"count must be >= 1 and fail within 0..count (count={count}, fail={fail})")
    out = Path(output_dir)
    if not out.is_dir():
        raise NexusStructureError(f"output directory {out}: does not exist or is not a directory")
    jobs = plan_jobs(count, output_dir=out, layout=layout, pool_topic=pool_topic, control_topic=control_topic,
                     nexus_structure=nexus_structure, fail=fail, instrument=instrument, proposal_id=proposal_id,
                     heartbeats=heartbeats, broker=cfg.bootstrap or "")
    ensure_topics(cfg, sorted({pool_topic, *(job.control_topic for job in jobs)}))
    producer = make_producer(cfg)
    results = []
    for index, job in enumerate(jobs):
        messages = job_messages(job)
        _publish(producer, messages[:3])  # run start on the pool, echo and answ(StartJob) on the control topic
        seed = None if rng_seed is None else rng_seed + index
        report = write_nexus(job.written_path or job.filename, job.nexus_structure, job=job, rng_seed=seed)
        _publish(producer, messages[3:])  # heartbeats, stop, answ(SetStopTime), wrdn: after the file exists
        result = JobResult(job.job_id, job.written_path or job.filename, job.pool_topic, job.control_topic,
                           job.error is not None, job.run_name)
        results.append(result)
        if on_job is not None:
            on_job(result, report)
    return results


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
