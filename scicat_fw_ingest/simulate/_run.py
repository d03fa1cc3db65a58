"""The simulated writer on a real broker: plans jobs, writes their files, publishes their messages."""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import KafkaError, SfiError
from ..kafka import ensure_topics, make_producer
from ..nexus.writer import NexusStructureError, WriteReport, parse_structure, unknown_stream_modules, write_nexus
from ._finish import LateFinish, finish_late, seal
from ._job import (
    DEFAULT_STATUS_TOPIC,
    FAILURES,
    UPDATE_INTERVAL_MS,
    SimulatedJob,
    idle_heartbeat,
    job_phases,
    writer_service_id,
)
from ._layouts import (
    DEFAULT_INSTRUMENT,
    DEFAULT_POOL_TOPIC,
    DEFAULT_PROPOSAL,
    FAILURE_MESSAGE,
    LAYOUTS,
    fill_placeholders,
    placeholder_values,
    template_text,
)


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
    #: Seconds the writer kept writing the file after its wrdn (``--finish-late``); 0: finished before it.
    finish_late_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "file": self.file, "pool_topic": self.pool_topic,
                "control_topic": self.control_topic, "failed": self.failed, "run_name": self.run_name,
                "outcome": self.outcome, "finish_late_s": round(self.finish_late_s, 3)}


def plan_jobs(count: int, *, output_dir: str | Path, layout: str = "ess", pool_topic: str = DEFAULT_POOL_TOPIC,
              control_topic: str | None = None, status_topic: str = DEFAULT_STATUS_TOPIC,
              nexus_structure: dict[str, Any] | None = None, fail: list[str] | tuple[str, ...] = (),
              instrument: str | None = None, proposal_id: str = DEFAULT_PROPOSAL, duration_ms: int = 2000,
              heartbeats: int = 2, broker: str = "", service_id: str | None = None,
              now_ms: int | None = None, stop_now: bool = False) -> list[SimulatedJob]:
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
                           start_message=(f"No writer module '{unknown[0]}' (kafka-to-nexus has none of "
                                          f"that name)" if unknown else None), stop_now=stop_now,
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
                  linger_s: float = 0.0, late: LateFinish | None = None, final_chmod: bool = True,
                  stop_now: bool = False,
                  on_job: Callable[[JobResult, WriteReport | None], None] | None = None) -> list[JobResult]:
    """Run ``count`` simulated writing jobs on the broker of ``cfg``, writing one file per started job.

    Per job, in kafka-to-nexus's order: pl72 (pool topic), pl72 echo and answ(StartJob) on the
    control topic, x5f2 heartbeats; the file is written; 6s4t, answ(SetStopTime); wrdn — published
    only once the file is complete. Between jobs, and for ``linger_s`` after the last, the writer is
    idle: x5f2 every 2 s on ``status_topic``. Missing topics are created.

    The file is closed and (``final_chmod``, kafka-to-nexus >= eed2958d) made read-only 0440 before the
    wrdn — unless ``late`` is given: then, as kafka-to-nexus really does, the wrdn goes out first and the
    file keeps being written for that many seconds (drawn per file), then is closed and made 0440, in the
    background while the next jobs run (``simulate._finish``). Returns once every file is finished.
    """
    if count < 1 or len(fail) > count:
        raise ValueError(f"count must be >= 1 and at most count jobs can fail (count={count}, fail={len(fail)})")
    out = Path(output_dir)
    if not out.is_dir():
        raise NexusStructureError(f"output directory {out}: does not exist or is not a directory")
    jobs = plan_jobs(count, output_dir=out, layout=layout, pool_topic=pool_topic, control_topic=control_topic,
                     status_topic=status_topic, nexus_structure=nexus_structure, fail=fail, instrument=instrument,
                     proposal_id=proposal_id, heartbeats=heartbeats, broker=cfg.bootstrap or "", stop_now=stop_now)
    ensure_topics(cfg, sorted({pool_topic, status_topic, *(job.control_topic for job in jobs if job.control_topic)}))
    producer = make_producer(cfg)
    results = []
    finishing = _LateFinishes(late, final_chmod, rng_seed)
    first = jobs[0]
    idle_heartbeats = _IdleHeartbeats(producer, status_topic, first.service_id, first.host_name, first.process_id)
    with finishing, idle_heartbeats as idle:
        for index, job in enumerate(jobs):
            started, finished = job_phases(job)
            report: WriteReport | None = None
            seconds = 0.0
            if job.start_failure is not None:
                _publish(producer, started)  # the pl72 and the failed answ; the writer stays idle
            else:
                idle.writing.set()
                _publish(producer, started)  # run start, echo, answ(StartJob), heartbeats while writing
                seed = None if rng_seed is None else rng_seed + index
                report = write_nexus(job.written_path or job.filename, job.nexus_structure, rng_seed=seed,
                                     start_time_ms=job.start_time, stop_time_ms=job.stop_time)
                seconds = finishing.before_wrdn(job.written_path or job.filename)
                _publish(producer, finished)  # stop, answ(SetStopTime), wrdn: after the file exists
                finishing.after_wrdn(job.written_path or job.filename, seconds)
                idle.writing.clear()
                idle.beat()  # back on its default topic
            result = JobResult(job.job_id, job.written_path or job.filename, job.pool_topic, job.control_topic,
                               job.error is not None or job.start_failure is not None, job.run_name, _outcome(job),
                               finish_late_s=seconds if report is not None else 0.0)
            results.append(result)
            if on_job is not None:
                on_job(result, report)
        time.sleep(linger_s)
    if producer.flush(15):
        raise KafkaError(f"idle heartbeats to '{status_topic}' not confirmed within 15 s")
    return results


class _LateFinishes:
    """The end of each file: sealed (0440) before its wrdn, or finished late in a thread after it."""

    def __init__(self, late: LateFinish | None, final_chmod: bool, rng_seed: int | None) -> None:
        self.late, self.final_chmod = late, final_chmod
        self._rng = random.Random(rng_seed)
        self._threads: list[threading.Thread] = []
        self._errors: list[str] = []

    def before_wrdn(self, path: str) -> float:
        """Seconds this file will be finished after its wrdn; a file finished now is sealed now."""
        seconds = self.late.draw(self._rng) if self.late is not None else 0.0
        if seconds <= 0 and self.final_chmod:
            seal(path)
        return seconds

    def after_wrdn(self, path: str, seconds: float) -> None:
        if seconds > 0:
            thread = threading.Thread(target=self._finish, args=(path, seconds), name="sfi-finish-late", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _finish(self, path: str, seconds: float) -> None:
        try:
            finish_late(path, seconds, final_chmod=self.final_chmod)
        except (OSError, ValueError) as exc:
            self._errors.append(f"{path}: finishing it late failed: {exc}")

    def __enter__(self) -> _LateFinishes:
        return self

    def __exit__(self, *exc: object) -> None:
        for thread in self._threads:
            thread.join()
        if self._errors and exc[0] is None:
            raise SfiError(self._errors[0])  # a file error: exit 1


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
