"""``sfi watch DIR...``: ingest the files a writer without wrdn leaves in folders, once each has settled."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated

import typer

from ._app import app
from ._common import (
    BrokerOpt,
    CatalogueDirOpt,
    ChecksumOpt,
    ConfigOpt,
    HttpHostOpt,
    HttpPortOpt,
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
)

if TYPE_CHECKING:
    from ..config import Config


@app.command("watch")
def watch_command(
    directories: Annotated[list[str], typer.Argument(help="Directories to watch (not recursive).",
                                                     show_default=False)],
    topic: Annotated[list[str] | None, typer.Option("--topic", "-t", help="Topic with the writer's run starts "
                                                    "(pl72) and stops (6s4t), for metadata and pid (repeatable).",
                                                    show_default=False)] = None,
    quiet: Annotated[float, typer.Option("--settle", help="Seconds a file's size and mtime must stay unchanged "
                                         "before it counts as settled.")] = 5.0,
    poll_interval: Annotated[float, typer.Option("--poll-interval", help="Seconds between checks of new files "
                                                 "(and between directory scans when polling).")] = 1.0,
    rescan: Annotated[float, typer.Option("--rescan", help="Deep scan this often (seconds): files already "
                                          "handled are stat'ed, so a replaced file is noticed when polling or "
                                          "on network file systems.")] = 300.0,
    poll: Annotated[bool, typer.Option("--poll", help="Scan the directories instead of using inotify (e.g. NFS "
                                       "written by other hosts).")] = False,
    pattern: Annotated[str | None, typer.Option("--pattern", help="Comma-separated file name globs (default "
                                                "\\[ingest] pattern).", show_default=False)] = None,
    since_days: Annotated[float | None, typer.Option("--since-days", help="Read run messages this many days back "
                                                     "at start (default \\[listen] run_start_days).",
                                                     show_default=False)] = None,
    broker: BrokerOpt = None,
    state_dir: StateDirOpt = None,
    workers: WorkersOpt = None,
    processes: ProcessesOpt = None,
    scicat_url: ScicatUrlOpt = None,
    catalogue_dir: CatalogueDirOpt = None,
    checksum: ChecksumOpt = None,
    no_preview: NoPreviewOpt = False,
    http_port: HttpPortOpt = None,
    http_host: HttpHostOpt = None,
    log_format: LogFormatOpt = None,
    verbose: VerboseOpt = 0,
    quiet_log: QuietOpt = 0,
    log_level: LogLevelOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Watch folders and ingest each settled NeXus file into SciCat exactly once (writers without wrdn).

    Settled: size and mtime unchanged for --settle seconds and HDF5 opens it. With --topic, the
    writer's run start (matched by file name) fills the dataset and a file waits for its run's stop.
    """
    if quiet < 0 or poll_interval <= 0 or rescan <= 0:
        raise typer.BadParameter("--settle must be >= 0, --poll-interval and --rescan > 0")
    cfg = load(config, kafka={"bootstrap.servers": broker}, scicat={"url": scicat_url},
               ingest={"checksum": checksum, "pattern": pattern, "preview": False if no_preview else None},
               listen={"state_dir": state_dir, "workers": workers, "processes": processes,
                       "catalogue_dir": catalogue_dir, "log_format": log_format, "http_port": http_port,
                       "http_host": http_host})
    if topic and not cfg.bootstrap:
        raise typer.BadParameter("--topic needs a broker (--broker, $SFI_KAFKA_BOOTSTRAP or \\[kafka])")
    from ..config import mask_url_credentials
    from ..daemon.runtime import build_runtime
    from ..daemon.watch import WatchOptions, Watcher

    lc = cfg.listen
    start_logging(cfg, lc.log_format, verbose, quiet_log, log_level)
    _data_roots_for(cfg, directories)
    options = WatchOptions(directories=directories, patterns=cfg.ingest.patterns(),
                           quiet_period=quiet, poll_interval=poll_interval, rescan_interval=rescan,
                           use_inotify=not poll, topics=topic or [],
                           runs_since_days=lc.run_start_days if since_days is None else since_days,
                           workers=lc.workers, retry_base=lc.retry_base, retry_max=lc.retry_max)
    cfg.ingest.complete_when = "at-once"  # the folder's quiet period + HDF5 open is watch's completeness rule
    runtime = build_runtime(cfg, "watch")
    try:
        watcher = Watcher(cfg, options, ingestor=runtime.ingestor, state=runtime.state)
        runtime.serve(stop=watcher.stop, health=watcher.health, metrics=watcher.metrics.render)
        logging.getLogger("sfi.watch").info("datasets go to %s; state in %s", mask_url_credentials(runtime.where),
                                            runtime.state.path)
        watcher.run()
    finally:
        runtime.close()


def _data_roots_for(cfg: Config, directories: list[str]) -> None:
    """The watched folders are the data roots unless ``[ingest] data_roots`` says otherwise; then each
    watched folder must lie inside one (else every file in it would be rejected: say so now)."""
    import os

    from ..errors import ConfigError

    folders = [os.path.realpath(d) for d in directories]
    if not cfg.ingest.data_roots:
        cfg.ingest.data_roots = [*(local for _writer, local in cfg.ingest.path_map), *folders]
        return
    roots = [os.path.realpath(r) for r in cfg.ingest.data_roots]
    for folder in folders:
        if not any(folder == r or folder.startswith(r.rstrip("/") + "/") for r in roots):
            raise ConfigError(f"watched folder {folder} is outside [ingest] data_roots ({', '.join(roots)})")
