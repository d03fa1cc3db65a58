"""A tracker of file-writer workers, jobs and commands, fed with decoded messages.

Why a fact store instead of a state machine: Kafka gives no order across topics (pool, control,
status) and readers see repeats (the pl72 on the pool and its echo on the control topic, replays
after a restart). file-writer-control mutates states as messages arrive, so a late x5f2 turns a
DONE job back to WRITING. Here every message only adds facts (each kept as the maximum over a
total order, so feeding is commutative and idempotent), and states are derived from the facts
when a snapshot is taken, against an explicit ``now``. Any permutation of the same messages,
with any repetitions, gives the same snapshot.

No Kafka in here: callers feed ``messages.Message`` values with their topic and Kafka timestamp.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import datetime
from typing import Any

from .._time import iso_from_ms
from ..messages import NO_STOP_TIME_MS, Message
from .model import (
    DEFAULT_UPDATE_INTERVAL_MS,
    SET_STOP_TIME,
    START_JOB,
    Command,
    Job,
    Timeouts,
    Worker,
    _CommandFacts,
    _JobFacts,
    _WorkerFacts,
    _offer_text,
    _ts,
)

#: the answ's action and outcome codes, as file-writer-control names them
_ACTIONS = {0: START_JOB, 1: SET_STOP_TIME}
_OUTCOMES = {0: "Success", 1: "Failure"}


class Tracker:
    """Workers, jobs and commands of file writers, as the messages fed so far describe them."""

    #: The embedded JSON strings the tracker reads (``messages.decode(..., json_fields=)``): others need
    #: not be parsed for it.
    JSON_FIELDS = frozenset({"status_json"})

    def __init__(self, timeouts: Timeouts | None = None) -> None:
        self.timeouts = timeouts or Timeouts()
        self._jobs: dict[str, _JobFacts] = {}
        self._workers: dict[str, _WorkerFacts] = {}
        self._commands: dict[tuple[str, str], _CommandFacts] = {}
        self.fed = 0

    def feed(self, message: Message, *, topic: str, timestamp_ms: int | None) -> bool:
        """Record one decoded message; False when its schema says nothing about writers."""
        handler = _HANDLERS.get(message.schema)
        if handler is None:
            return False
        handler(self, message, topic, timestamp_ms)
        self.fed += 1
        return True

    # -- facts ---------------------------------------------------------------------------------

    def _job(self, job_id: str, timestamp_ms: int | None) -> _JobFacts:
        facts = self._jobs.get(job_id)
        if facts is None:  # not setdefault: that builds a _JobFacts for every message
            facts = self._jobs[job_id] = _JobFacts()
        facts.last_update = max(facts.last_update, _ts(timestamp_ms))
        return facts

    def _worker(self, service_id: str, timestamp_ms: int | None) -> _WorkerFacts:
        facts = self._workers.get(service_id)
        if facts is None:
            facts = self._workers[service_id] = _WorkerFacts()
        facts.last_seen = max(facts.last_seen, _ts(timestamp_ms))
        return facts

    def _command(self, key: tuple[str, str]) -> _CommandFacts:
        facts = self._commands.get(key)
        if facts is None:
            facts = self._commands[key] = _CommandFacts()
        return facts

    def _on_pl72(self, message: Message, topic: str, ts: int | None) -> None:
        v = message.value
        if not v.job_id:
            return
        job = self._job(v.job_id, ts)
        _offer_text(job.run_name, v.run_name, ts)
        _offer_text(job.filename, v.filename, ts, rank=1)
        if v.start_time:
            job.start.offer((1, _ts(ts)), int(v.start_time))
        if v.stop_time:
            job.stop.offer((0, _ts(ts)), int(v.stop_time))
        # kafka-to-nexus parses the pl72 service_id but does not use it: the writer that answers
        # (answ, x5f2, wrdn) is the one doing the job, so only those name it.
        _offer_text(job.control_topic, v.control_topic, ts, rank=1)
        command = self._command((START_JOB, v.job_id))
        command.job_id.offer((0,), v.job_id)
        command.action.offer((0,), START_JOB)
        if ts is not None:
            command.sent = ts if command.sent is None else min(command.sent, ts)

    def _on_6s4t(self, message: Message, topic: str, ts: int | None) -> None:
        v = message.value
        if v.job_id:
            job = self._job(v.job_id, ts)
            _offer_text(job.run_name, v.run_name, ts)
            _offer_text(job.control_topic, topic, ts)
            # stop_time 0 means "stop now": the request's own timestamp is the best guess.
            stop = int(v.stop_time) if v.stop_time else ts
            if stop:
                job.stop.offer((2, _ts(ts)), stop)
        key = (SET_STOP_TIME, v.command_id or v.job_id)
        if not key[1]:
            return
        command = self._command(key)
        if v.job_id:
            command.job_id.offer((0,), v.job_id)
        command.action.offer((0,), SET_STOP_TIME)
        if ts is not None:
            command.sent = ts if command.sent is None else min(command.sent, ts)

    def _on_answ(self, message: Message, topic: str, ts: int | None) -> None:
        v = message.value
        action = _ACTIONS.get(int(v.action), str(v.action))
        outcome = _OUTCOMES.get(int(v.outcome), str(v.outcome))
        status = int(v.status_code)
        failed = outcome != "Success" or status >= 400
        if v.service_id:
            self._worker(v.service_id, ts)
        if v.job_id:
            job = self._job(v.job_id, ts)
            _offer_text(job.service_id, v.service_id, ts)
            if action == START_JOB:
                # A failed start is answered on the writer's default topic, not the control topic.
                error = (v.message or f"start rejected (status {status})") if failed else None
                job.launch.offer((_ts(ts), failed), error)
                stop = _ms(v.stop_time)
                if stop and not failed:
                    job.stop.offer((0, _ts(ts)), stop)
            else:
                _offer_text(job.control_topic, topic, ts)
                if action == SET_STOP_TIME and not failed:
                    stop = _ms(v.stop_time)
                    if stop:
                        job.stop.offer((3, _ts(ts)), stop)
        # StartJob commands are keyed by job id (pl72 has no command id); others by command id.
        key = (action, (v.job_id or v.command_id) if action == START_JOB else (v.command_id or v.job_id))
        if not key[1]:
            return
        command = self._command(key)
        if v.job_id:
            command.job_id.offer((0,), v.job_id)
        command.action.offer((0,), action)
        command.answer.offer((_ts(ts), failed, status), (outcome, status, v.message or None, ts, v.command_id))

    def _on_x5f2(self, message: Message, topic: str, ts: int | None) -> None:
        v = message.value
        if not v.service_id:
            return
        worker = self._worker(v.service_id, ts)
        status = message.json_values.get("status_json")
        status = status if isinstance(status, dict) else {}
        state = status.get("state")
        state = state if state in ("idle", "writing") else "unknown"
        job_id = status.get("job_id") or None
        file = status.get("file_being_written") or None
        interval = int(v.update_interval) if v.update_interval and v.update_interval > 0 else DEFAULT_UPDATE_INTERVAL_MS
        software = f"{v.software_name} {v.software_version}".strip() or None
        worker.status.offer((_ts(ts), state == "writing"),
                            (state, job_id if state == "writing" else None, file if state == "writing" else None,
                             interval, v.host_name or "", software))
        if state == "writing" and isinstance(job_id, str):
            job = self._job(job_id, ts)
            job.launch.offer((_ts(ts), False), None)
            _offer_text(job.service_id, v.service_id, ts)
            _offer_text(job.filename, file if isinstance(file, str) else None, ts, rank=0)
            if isinstance(status.get("start_time"), int) and status["start_time"] > 0:
                job.start.offer((0, _ts(ts)), status["start_time"])
            stop = status.get("stop_time")
            if isinstance(stop, int) and 0 < stop < NO_STOP_TIME_MS:
                job.stop.offer((1, _ts(ts)), stop)

    def _on_wrdn(self, message: Message, topic: str, ts: int | None) -> None:
        v = message.value
        if v.service_id:
            self._worker(v.service_id, ts)
        if not v.job_id:
            return
        job = self._job(v.job_id, ts)
        _offer_text(job.service_id, v.service_id, ts)
        _offer_text(job.control_topic, topic, ts)
        error = bool(v.error_encountered)
        text = v.message or ("the writer reported an error" if error else None)
        # An error report beats a success report for the same job, whatever the order.
        job.finished.offer((error, _ts(ts)), (error, v.file_name or None, text))
        job.finished_at = max(job.finished_at, _ts(ts))

    # -- snapshots -----------------------------------------------------------------------------

    def jobs(self, now_ms: int | None = None) -> list[Job]:
        now = _now(now_ms)
        out = [self._job_snapshot(job_id, facts, now) for job_id, facts in self._jobs.items()]
        return sorted(out, key=lambda j: (_ts(j.start), _ts(j.last_update), j.job_id))

    def _job_snapshot(self, job_id: str, f: _JobFacts, now: int) -> Job:
        error: str | None = None
        written: str | None = None
        stop = f.stop.value
        if f.finished.seen:
            failed, written, text = f.finished.value
            state = "error" if failed else "done"
            error = text if failed else None
        elif f.launch.seen and f.launch.value is not None:
            state, error = "error", f.launch.value
        else:
            state = "writing" if f.launch.seen else "waiting"
            # Like file-writer-control: silence, not the stop time, decides. A writer that died
            # mid-run (with or without a stop time) stops heartbeating; a live one never goes quiet.
            if f.last_update >= 0 and now - f.last_update > self.timeouts.job_silence_ms:
                state = "timeout"
        return Job(job_id=job_id, run_name=f.run_name.value, filename=f.filename.value, file_written=written,
                   state=state, start=f.start.value, stop=stop, error=error, service_id=f.service_id.value,
                   control_topic=f.control_topic.value, last_update=_none(f.last_update))

    def workers(self, now_ms: int | None = None) -> list[Worker]:
        now = _now(now_ms)
        out = []
        for service_id, f in sorted(self._workers.items()):
            state, job_id, file, interval, host, software = (
                f.status.value if f.status.seen else ("unknown", None, None, DEFAULT_UPDATE_INTERVAL_MS, "", None))
            status_at = f.status.key[0] if f.status.key else -1
            if state == "writing" and job_id in self._jobs:
                job = self._jobs[job_id]
                # The writer goes idle after wrdn; its idle x5f2 goes to a topic we may not read.
                if job.finished.seen and job.finished_at >= status_at:
                    state, job_id, file = "idle", None, None
            if f.last_seen < 0 or now - f.last_seen > self.timeouts.worker_intervals * interval:
                state = "unknown"
            out.append(Worker(service_id=service_id, host=host, state=state, last_seen=_none(f.last_seen),
                              file_being_written=file, job_id=job_id, update_interval_ms=interval,
                              software=software))
        return out

    def commands(self, now_ms: int | None = None) -> list[Command]:
        now = _now(now_ms)
        out = []
        for (action, command_id), f in self._commands.items():
            if f.answer.seen:
                outcome, status, text, answered, answer_id = f.answer.value
                state = "failure" if outcome != "Success" or status >= 400 else "success"
                shown_id = answer_id or command_id
            else:
                outcome = status = text = answered = None
                shown_id = command_id
                state = "pending"
                if f.sent is not None and now - f.sent > self.timeouts.command_ms:
                    state = "timeout"
            out.append(Command(command_id=shown_id, job_id=f.job_id.value, action=action, outcome=outcome,
                               status_code=status, message=text, state=state, sent=f.sent, answered=answered))
        return sorted(out, key=lambda c: (_ts(c.sent if c.sent is not None else c.answered), c.action,
                                          c.command_id))

    def to_jsonable(self, now_ms: int | None = None) -> dict[str, list[dict[str, Any]]]:
        """``{"workers": [...], "jobs": [...], "commands": [...]}`` with times as ISO-8601 UTC."""
        return {name: list(items) for name, items in self._jsonable_sections(_now(now_ms))}

    def write_json(self, write: Callable[[str], object], now_ms: int | None = None) -> None:
        """``json.dumps(self.to_jsonable())``, written record by record.

        Why: on a backlog of thousands of jobs the whole document (every record as a dict, then one string
        of megabytes) was the peak of `sfi list-status --json`; written piecewise only one record's dict and
        text exist at a time, and the bytes are the same.
        """
        encode = json.JSONEncoder().encode
        write("{")
        for n, (name, items) in enumerate(self._jsonable_sections(_now(now_ms))):
            write(f'{", " if n else ""}{encode(name)}: [')
            for i, item in enumerate(items):
                write((", " if i else "") + encode(item))
            write("]")
        write("}")

    def _jsonable_sections(self, now: int) -> Iterator[tuple[str, Iterator[dict[str, Any]]]]:
        yield "workers", (_times(asdict(w), "last_seen") for w in self.workers(now))
        yield "jobs", (_times(asdict(j), "start", "stop", "last_update") for j in self.jobs(now))
        yield "commands", (_times(asdict(c), "sent", "answered") for c in self.commands(now))


def _ms(value: Any) -> int | None:
    """A stop time in ms; None for 0 (unset) and for the no-stop-time sentinel."""
    ms = round(value.timestamp() * 1000) if isinstance(value, datetime) else int(value or 0)
    return ms if 0 < ms < NO_STOP_TIME_MS else None


def _now(now_ms: int | None) -> int:
    return int(time.time() * 1000) if now_ms is None else now_ms


def _none(value: int) -> int | None:
    return None if value < 0 else value


def _times(record: dict[str, Any], *names: str) -> dict[str, Any]:
    for name in names:
        record[name] = iso_from_ms(record[name])
    return record


_HANDLERS = {
    "pl72": Tracker._on_pl72,
    "6s4t": Tracker._on_6s4t,
    "answ": Tracker._on_answ,
    "x5f2": Tracker._on_x5f2,
    "wrdn": Tracker._on_wrdn,
}
