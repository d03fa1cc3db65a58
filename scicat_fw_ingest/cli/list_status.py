"""``sfi list-status``: what the file writers, their jobs and the commands sent to them are doing.

Only flags and printing live here: ``status.feed.StatusFeed`` reads the writers' command/status and
control topics (names or ``^regex`` patterns) into a ``status.Tracker``, whose snapshot is shown
here as tables, a live view or JSON.
"""

from __future__ import annotations

import sys
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
from ._render import abbreviate_id, abbreviate_path

if TYPE_CHECKING:  # the reading side (confluent_kafka, streaming_data_types) is imported when the command runs
    from ..status import Tracker
    from ..status.feed import StatusFeed

DEFAULT_SINCE = "1h"
_STATE_STYLE = {"writing": "cyan", "idle": "green", "done": "green", "success": "green", "error": "red",
                "failure": "red", "timeout": "yellow", "unknown": "yellow", "waiting": "blue", "pending": "blue"}


def _when(ms: int | None, *, date: bool = True) -> str:
    """'11-22 07:31:05' (UTC; the year is rarely news in a view of the last hours; --json has full ISO)."""
    text = iso_from_ms(ms)
    if not text:
        return ""
    return text.replace("T", " ")[5:19] if date else text[11:19]


def _state(state: str) -> Text:
    return Text(state, style=_STATE_STYLE.get(state, ""))


#: (column, min width): one line per row, ids abbreviated, long text cut with … (--json has every value whole).
#: The min widths keep what an operator scans for (state, times) whole at 80 columns.
_MIN = {"state": 7, "last seen": 9, "start": 14, "stop": 8, "action": 11, "outcome": 7, "code": 4,
        "job": 9, "command": 9}


_MAX = {"service": 30, "file": 28, "file being written": 24, "message": 18, "error": 22}


def _table(title: str, columns: tuple[str, ...], hidden: int) -> Table:
    from rich import box

    caption = f"{hidden} older not shown (--json lists all)" if hidden else None
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False, collapse_padding=True)
    for name in columns:
        table.add_column(name, no_wrap=True, overflow="ellipsis", min_width=_MIN.get(name), max_width=_MAX.get(name))
    return table


def _tables(tracker: Tracker, now_ms: int, rows: int | None = None) -> list[Table]:
    """The three tables; with ``rows`` (a live view) only the newest jobs and commands that fit."""
    workers = tracker.workers(now_ms)
    jobs, commands = tracker.jobs(now_ms), tracker.commands(now_ms)
    job_rows = cmd_rows = None
    if rows is not None:  # the newest rows stay on screen; jobs get 3/5 of what is left after the workers
        left = max(2, rows - len(workers))
        job_rows = max(1, left * 3 // 5)
        cmd_rows = max(1, left - job_rows)
    shown_jobs = jobs[-job_rows:] if job_rows is not None else jobs
    shown_cmds = commands[-cmd_rows:] if cmd_rows is not None else commands
    wt = _table("workers (times UTC)", ("service", "state", "last seen", "file being written"), 0)
    for w in workers:
        wt.add_row(escape(w.service_id), _state(w.state), _when(w.last_seen, date=False),
                   escape(abbreviate_path(w.file_being_written or "", 40)))
    with_error = any(j.error for j in shown_jobs)
    jt = _table("jobs (times UTC)", ("job", "file", "state", "start", "stop") + (("error",) if with_error else ()),
                len(jobs) - len(shown_jobs))
    for j in shown_jobs:
        cells: list[str | Text] = [
            abbreviate_id(j.job_id), escape(abbreviate_path(j.file_written or j.filename or "", 40)),
            _state(j.state), _when(j.start), _when(j.stop, date=False)]
        jt.add_row(*cells, *((escape(j.error or ""),) if with_error else ()))
    ct = _table("commands", ("command", "job", "action", "code", "message", "state"),
                len(commands) - len(shown_cmds))
    for c in shown_cmds:
        ct.add_row(abbreviate_id(c.command_id), abbreviate_id(c.job_id), c.action,
                   "" if c.status_code is None else str(c.status_code), escape(c.message or ""), _state(c.state))
    return [wt, jt, ct]


def _view(feed: StatusFeed, phase: str, *, live: bool = True) -> Group:
    """The tables and a status line; live, they fit the terminal's height (newest rows and the status line
    always visible)."""
    now_ms = int(time.time() * 1000)
    counts = feed.counts
    footer = (f"{counts.messages} messages from {feed.topic_count} topic(s), {counts.undecodable} undecodable"
              f" — {phase}")
    # 3 tables x (title + header + rule + caption + blank) + the footer
    rows = max(3, stdout.size.height - 3 * 5 - 2) if live else None
    return Group(*_tables(feed.tracker, now_ms, rows), Text(footer, style="dim"))


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
    from ..status.feed import StatusFeed, TopicSelection, parse_since

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
                tracker.write_json(sys.stdout.write)
                print(flush=True)
            else:
                stdout.print(_view(feed, "caught up", live=False))
    if feed.counts.undecodable:
        _warn(f"{feed.counts.undecodable} undecodable message(s) skipped")
