"""``sfi listen``, ``sfi failures`` and ``sfi retry``: the ingestion daemon and its failure queue."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..daemon.state import FAILED, QUEUED, REJECTED
from ._app import app
from ._common import (
    BrokerOpt,
    CatalogueDirOpt,
    ChecksumOpt,
    ConfigOpt,
    HttpHostOpt,
    HttpPortOpt,
    JsonOpt,
    LogFormatOpt,
    LogLevelOpt,
    NoPreviewOpt,
    ProcessesOpt,
    QuietOpt,
    ScicatUrlOpt,
    StateDirOpt,
    VerboseOpt,
    WorkersOpt,
    load,
    start_logging,
    stdout,
)


@app.command("listen")
def listen_command(
    topic: Annotated[list[str] | None, typer.Option("--topic", "-t", help="Topic to consume (repeatable); "
                                                    "'^regex' subscribes to a pattern.", show_default=False)] = None,
    group: Annotated[str | None, typer.Option("--group", "-g", help="Consumer group (default sfi-listen).",
                                              show_default=False)] = None,
    broker: BrokerOpt = None,
    state_dir: StateDirOpt = None,
    workers: WorkersOpt = None,
    processes: ProcessesOpt = None,
    scicat_url: ScicatUrlOpt = None,
    catalogue_dir: CatalogueDirOpt = None,
    checksum: ChecksumOpt = None,
    no_preview: NoPreviewOpt = False,
    on_writer_error: Annotated[str | None, typer.Option("--on-writer-error", help="skip|ingest a file whose "
                                                        "wrdn reports an error.", show_default=False)] = None,
    auto_offset_reset: Annotated[str | None, typer.Option("--auto-offset-reset", help="earliest|latest for a "
                                                          "group without offsets.", show_default=False)] = None,
    http_port: HttpPortOpt = None,
    http_host: HttpHostOpt = None,
    log_format: LogFormatOpt = None,
    exit_when_idle: Annotated[float | None, typer.Option("--exit-when-idle", help="Stop after S seconds without "
                                                         "messages and nothing pending.", show_default=False)] = None,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = 0,
    log_level: LogLevelOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Consume file-writer channels and ingest every finished file into SciCat, exactly once."""
    cfg = load(config, kafka={"bootstrap.servers": broker}, scicat={"url": scicat_url},
               ingest={"checksum": checksum, "preview": False if no_preview else None},
               listen={"state_dir": state_dir, "group": group, "topics": topic or None, "workers": workers,
                       "processes": processes, "catalogue_dir": catalogue_dir, "on_writer_error": on_writer_error,
                       "auto_offset_reset": auto_offset_reset, "http_port": http_port, "http_host": http_host,
                       "log_format": log_format})
    lc = cfg.listen
    if not lc.topics:
        raise typer.BadParameter("give at least one --topic (or [listen] topics)")
    from ..config import mask_url_credentials
    from ..errors import ConfigError

    start_logging(cfg, lc.log_format, verbose, quiet, log_level)
    from ..daemon._supervise import is_child, supervise

    if lc.supervise and not is_child():  # the parent imports nothing heavy: h5py, librdkafka are the child's
        raise typer.Exit(supervise())  # the listener runs in a child, restarted if it crashes
    from ..daemon.listen import ListenOptions, Listener
    from ..daemon.runtime import build_runtime
    from ..ingest import Ingestor
    roots = Ingestor.configured_roots(cfg, None)
    if not roots:
        raise ConfigError("sfi listen: no data root: set [ingest] data_roots (folders the writer's files may be "
                          "in) or [ingest] path_map; files outside them are rejected, never read")
    options = ListenOptions(topics=lc.topics, group=lc.group, auto_offset_reset=lc.auto_offset_reset,
                            on_writer_error=lc.on_writer_error, workers=lc.workers, wait_missing=cfg.ingest.file_wait,
                            retry_base=lc.retry_base, retry_max=lc.retry_max, exit_when_idle=exit_when_idle,
                            run_start_max_age=lc.run_start_days * 86400,
                            missing_deadline=cfg.ingest.missing_hours * 3600, health_interval=lc.health_interval,
                            held_max=lc.held_max, inflight_max=lc.inflight_max, verify_after=lc.verify_after,
                            takeover_wait=(lc.takeover_wait if lc.takeover_wait is not None
                                           else cfg.scicat.timeout + cfg.scicat.grace))
    runtime = build_runtime(cfg, "listen")
    try:
        listener = Listener(cfg, options, ingestor=runtime.ingestor, state=runtime.state)
        from ..completion.settle import request_stop

        def stop() -> None:
            request_stop()  # files still settling in this process stop waiting (queued, retried at the next start)
            listener.stop()

        runtime.serve(stop=stop, health=listener.health, metrics=listener.metrics.render)
        import logging

        logging.getLogger("sfi.listen").info("datasets go to %s; state in %s; data roots %s",
                                             mask_url_credentials(runtime.where), runtime.state.path,
                                             ", ".join(roots))
        listener.run()
    finally:
        runtime.close()
    if listener.unrecorded_at_stop:
        raise typer.Exit(1)


@app.command("failures")
def failures_command(state_dir: StateDirOpt = None, as_json: JsonOpt = False,
                     config: ConfigOpt = None) -> None:
    """List what the listener could not process: failed, rejected and queued files, and bad messages."""
    cfg = load(config, listen={"state_dir": state_dir})
    _require_state(cfg.listen.state_dir)
    from ..daemon.runtime import open_state

    state = open_state(cfg)
    files = state.files((FAILED, REJECTED, QUEUED))
    bad = state.bad_messages()
    if as_json:
        for r in files:
            print(json.dumps({"kind": "file", "file": r.writer_path, "status": r.status, "job_id": r.job_id,
                              "pid": r.pid, "attempts": r.attempts, "error": r.error, "source": r.source,
                              "next_attempt": r.next_attempt}))
        for b in bad:
            print(json.dumps({"kind": "message", "source": b.source, "error": b.reason, "length": b.payload_length,
                              "sha256": b.payload_sha256}))
        return
    # One cause for many files (SciCat refusing the token) is said once above the table, not in every row.
    refused = [r for r in files if r.status == QUEUED and AUTH_MARK in (r.error or "")]
    if refused:
        stdout.print(f"[bold red]{refused[-1].error}[/]: {len(refused)} file(s) queued until SciCat accepts the "
                     "credentials", markup=True, highlight=False)
    table = Table(title=f"files not ingested ({len(files)})", title_justify="left")
    for col in ("file", "status", "attempts", "next try", "error"):
        table.add_column(col, overflow="fold")
    for r in files:
        nxt = time.strftime("%H:%M:%S", time.localtime(r.next_attempt)) if r.status == QUEUED and r.next_attempt else ""
        error = "(SciCat credentials refused: see above)" if r in refused else r.error or ""
        table.add_row(r.writer_path, r.status, str(r.attempts), nxt, error)
    stdout.print(table)
    msgs = Table(title=f"messages not processed ({len(bad)})", title_justify="left")
    msgs.add_column("topic/partition@offset")
    msgs.add_column("reason", overflow="fold")
    for b in bad:
        msgs.add_row(b.source, b.reason)
    stdout.print(msgs)


#: What ``ScicatAuthError`` says (scicat/_transport.py TOKEN_REFUSED), matched without importing the client.
AUTH_MARK = "SciCat token expired or refused"


@app.command("retry")
def retry_command(
    files: Annotated[list[str] | None, typer.Argument(help="Files (as the writer named them); default all failed.",
                                                      show_default=False)] = None,
    now: Annotated[bool, typer.Option("--now", help="Ingest them here and now instead of leaving them to the "
                                      "running listener.")] = False,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Re-drive failed files: back into the retry queue (the listener takes them), or ingest them now."""
    cfg = load(config, listen={"state_dir": state_dir})
    _require_state(cfg.listen.state_dir)
    from ..daemon.runtime import open_state

    state = open_state(cfg)
    unknown = [f for f in files or [] if not state.files_at(f)]  # by path (what sfi failures shows) or state key
    if unknown:
        from ..errors import SfiError

        raise SfiError("\n".join(f"retry: {f}: not in the listener's state (see sfi failures)" for f in unknown))
    n = state.requeue(files or None)
    if not now:
        print(json.dumps({"requeued": n}) if as_json else f"{n} file(s) queued for the listener")
        return
    from ..daemon.listen import retry_now

    results = retry_now(cfg, state)
    failed = 0
    for r in results:
        failed += r.status == "failed"
        print(json.dumps({"file": r.file, "pid": r.pid, "status": r.status, "error": r.error}) if as_json
              else f"{r.status:8} {r.file} {r.pid or ''} {r.error or ''}".rstrip())
    raise typer.Exit(1 if failed else 0)


def _require_state(state_dir: str) -> None:
    if not (Path(state_dir) / "sfi-state.sqlite3").exists():
        raise typer.BadParameter(f"no listener state in {state_dir} (use --state-dir or $SFI_STATE_DIR)")
