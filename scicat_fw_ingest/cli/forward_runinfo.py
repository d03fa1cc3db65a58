"""``sfi forward-runinfo``: flags -> config -> ``forward.run_forwarder``; dry-run records printed as JSON.

The forwarding itself (at-least-once semantics, logging, signals) is in ``scicat_fw_ingest.isis.forward``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ._app import app
from ._common import BrokerOpt, ConfigOpt, LogLevelOpt, QuietOpt, VerboseOpt, load, start_logging


def _print_record(record: dict[str, Any]) -> None:
    """One enriched run start of a dry run on stdout, flushed at once: an operator watches it live."""
    sys.stdout.write(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


@app.command("forward-runinfo")
def forward_runinfo_command(
    broker: BrokerOpt = None,
    instruments: Annotated[str | None, typer.Option(
        "--instruments", "-i", help="Comma-separated instruments; reads <INST>_runInfo.", show_default=False)] = None,
    topic_pattern: Annotated[str | None, typer.Option(
        "--topic-pattern", help="Subscribe by regular expression, e.g. '^.*_runInfo$'.", show_default=False)] = None,
    output_topic: Annotated[str | None, typer.Option(
        "--output-topic", help="Where enriched run starts go (default ALL_runInfo).", show_default=False)] = None,
    group: Annotated[str | None, typer.Option(
        "--group", "-g", help="Consumer group (default sfi-forward-runinfo).", show_default=False)] = None,
    from_beginning: Annotated[bool, typer.Option(
        "--from-beginning", help="A group without committed offsets starts at the oldest message.")] = False,
    auto_offset_reset: Annotated[str | None, typer.Option(
        "--auto-offset-reset", help="earliest or latest for a group without committed offsets (default latest).",
        show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the enriched run starts as JSON; produce and commit nothing.")] = False,
    count: Annotated[int | None, typer.Option(
        "--count", "-n", min=1, help="Stop after N run starts forwarded.", show_default=False)] = None,
    once: Annotated[bool, typer.Option("--once", help="Stop after one run start forwarded (--count 1).")] = False,
    template_dir: Annotated[Path | None, typer.Option(
        "--template-dir", help="Folder with <INSTRUMENT>.json / default.json templates.", show_default=False)] = None,
    forwarder_config_topic: Annotated[str | None, typer.Option(
        "--forwarder-config-topic", help="The forwarder's fc00 config topic: its <INST>_sampleEnv PVs become "
        "selog blocks.", show_default=False)] = None,
    log_format: Annotated[str | None, typer.Option("--log-format", help="text|json (else \\[listen] log_format).",
                                                   show_default=False)] = None,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = 0,
    log_level: LogLevelOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Enrich ISIS run starts with the static ISIS NeXus structure and forward them to the file writer.

    Runs until SIGTERM/SIGINT (or --count/--once). Exit 0 when stopped, 1 on a Kafka failure,
    2 for a bad configuration.
    """
    from ..isis.forward import run_forwarder

    if from_beginning and auto_offset_reset not in (None, "earliest"):
        raise typer.BadParameter("--from-beginning and --auto-offset-reset latest exclude each other")
    if once and count not in (None, 1):
        raise typer.BadParameter("--once and --count exclude each other")
    reset = "earliest" if from_beginning else auto_offset_reset
    instrument_list = None if instruments is None else [i.strip() for i in instruments.split(",") if i.strip()]
    cfg = load(config, kafka={"bootstrap.servers": broker}, isis={
        "instruments": instrument_list, "topic_pattern": topic_pattern, "output_topic": output_topic,
        "group": group, "auto_offset_reset": reset,
        "template_dir": str(template_dir) if template_dir is not None else None,
        "forwarder_config_topic": forwarder_config_topic,
    }, listen={"log_format": log_format})
    if instrument_list is not None and topic_pattern is None:
        cfg.isis.topic_pattern = None  # a flag chooses the subscription over the file's other kind
    elif topic_pattern is not None and instrument_list is None:
        cfg.isis.instruments = []
    start_logging(cfg, cfg.listen.log_format, verbose, quiet, log_level)
    run_forwarder(cfg, dry_run=dry_run, count=1 if once else count, on_dry_run=_print_record)
