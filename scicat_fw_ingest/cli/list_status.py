"""``sfi list-status``: what the file writers, their jobs and the commands sent to them are doing.

Only flags and printing live here: ``status_feed.StatusFeed`` reads the writers' command/status and
control topics (names or ``^regex`` patterns) into a ``status.Tracker``, whose snapshot is shown
here as tables, a live view or JSON.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .._time import iso_from_ms
from ._app import app
from ._common import BrokerOpt, ConfigOpt, JsonOpt, load, stdout, warn

if TYPE_CHECKING:  # the reading side (confluent_kafka, streaming_data_types) is imported when the command runs
    from ..status import Tracker
    from ..status_feed import StatusFeed

DEFAULT_SINCE = "1h"
_STATE_STYLE = {"writing": "cyan", "idle": "green", "done": "green", "success": "green", "error": "red",
                "failure": "red", "timeout": "yellow", "unknown": "yellow", "waiting": "blue", "pending": "blue"}


def _when(ms: int | None) -> str:
    text = iso_from_ms(ms)
    return text.replace("T", " ")[:19] if text else ""


def _state(state: str) -> Text:
    return Text(state, style=_STATE_STYLE.get(state, ""))


def _tables(tracker: Tracker, now_ms: int) -> list[Table]:
    workers = Table(title="workers", title_justify="left", expand=False)
    for name in ("service_id", "host", "state", "last seen (UTC)", "file being written"):
        workers.add_column(name, overflow="fold")
    for w in tracker.workers(now_ms):
        workers.add_row(escape(w.service_id), escape(w.host), _state(w.state), _when(w.last_seen),
                        escape(w.file_being_written or ""))
    jobs = Table(title="jobs", title_justify="left")
    for name in ("job_id", "run name", "file", "state", "start (UTC)", "stop (UTC)", "error"):
        jobs.add_column(name, overflow="fold")
    for j in tracker.jobs(now_ms):
        jobs.add_row(escape(j.job_id), escape(j.run_name or ""), escape(j.file_written or j.filename or ""),
                     _state(j.state), _when(j.start), _when(j.stop), escape(j.error or ""))
    commands = Table(title="commands", title_justify="left")
    for name in ("command_id", "job_id", "action", "outcome", "status", "message", "state"):
        commands.add_column(name, overflow="fold")
    for c in tracker.commands(now_ms):
        commands.add_row(escape(c.command_id), escape(c.job_id or ""), c.action, c.outcome or "",
                         "" if c.status_code is None else str(c.status_code), escape(c.message or ""),
                         _state(c.state))
    return [workers, jobs, commands]


def _view(feed: StatusFeed, phase: str) -> Group:
    now_ms = int(time.time() * 1000)
    counts = feed.counts
    footer = (f"{counts.messages} messages from {feed.topic_count} topic(s), {counts.undecodable} undecodable"
              f" — {phase}")
    return Group(*_tables(feed.tracker, now_ms), Text(footer, style="dim"))


def _warn(text: str) -> None:
    warn(f"list-status: {text}")


@app.command("list-status")
def list_status(
    topic: Annotated[list[str], typer.Option("--topic", "-t", help="A topic to read, or a ^regex of topics "
                                             "(repeatable), e.g. the status topic and '^.*_control$'.",
                                             show_default=False)],
    broker: BrokerOpt = None,
    since: Annotated[str | None, typer.Option("--since", help="Start this long ago: 30s, 15m, 2h, 1d "
                                              f"(default {DEFAULT_SINCE}).", show_default=False)] = None,
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="Start at the oldest messages.")] = False,
    duration: Annotated[float | None, typer.Option("--duration", help="After catching up, listen this many "
                                                   "seconds more (default: stop when caught up).", min=0,
                                                   show_default=False)] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Live view, refreshed every second, "
                                         "until Ctrl-C (or --duration).")] = False,
    as_json: JsonOpt = False,
    job_timeout: Annotated[float, typer.Option("--job-timeout", help="Seconds without news of a waiting or "
                                               "writing job (heartbeat, answer) before it counts as timed "
                                               "out.", min=0)] = 15.0,
    command_timeout: Annotated[float, typer.Option("--command-timeout", help="Seconds without a response "
                                                   "before a command counts as timed out.", min=0)] = 30.0,
    worker_intervals: Annotated[float, typer.Option("--worker-intervals", help="A worker unseen for this many "
                                                    "of its status intervals counts as unknown.", min=0)] = 5.0,
    config: ConfigOpt = None,
) -> None:
    """Show the file writers (workers), their jobs and the commands sent to them.

    Reads the given topics from --since (default 1h ago) or --from-beginning up to their end, then
    prints tables, or with --json one object {"workers": [...], "jobs": [...], "commands": [...]}.
    Undecodable messages are reported on stderr, one line each, and skipped.
    """
    from ..status import Timeouts, Tracker
    from ..status_feed import StatusFeed, TopicSelection, parse_since

    if since is not None and from_beginning:
        raise typer.BadParameter("--since and --from-beginning exclude each other")
    if follow and as_json:
        raise typer.BadParameter("--follow is a live view for people; for scripts use --json with --duration")
    try:
        since_s = None if from_beginning else parse_since(since or DEFAULT_SINCE)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    selection = TopicSelection.parse(topic)
    cfg = load(config, kafka={"bootstrap.servers": broker})
    tracker = Tracker(Timeouts(worker_intervals=worker_intervals, job_silence_ms=int(job_timeout * 1000),
                               command_ms=int(command_timeout * 1000)))
    with StatusFeed(cfg, selection, tracker, since_s=since_s, on_warning=_warn) as feed:
        feed.start(wait_for_topics=follow or duration is not None)
        if follow:
            with Live(_view(feed, "catching up"), console=stdout, auto_refresh=False) as live:
                def redraw(caught_up: bool) -> None:
                    live.update(_view(feed, "listening (Ctrl-C stops)" if caught_up else "catching up"),
                                refresh=True)
                try:
                    feed.read(duration=duration, follow=True, on_progress=redraw)
                except KeyboardInterrupt:
                    pass
                live.update(_view(feed, "stopped"), refresh=True)
        else:
            try:
                feed.read(duration=duration, follow=False)
            except KeyboardInterrupt:
                pass
            if as_json:
                print(json.dumps(tracker.to_jsonable()), flush=True)
            else:
                stdout.print(_view(feed, "caught up"))
    if feed.counts.undecodable:
        _warn(f"{feed.counts.undecodable} undecodable message(s) skipped")
