"""``sfi decode``: any ESS flatbuffer message to readable text or JSON, from files, stdin, hex or topics.

Heavy imports (streaming_data_types via ``messages``, confluent_kafka via ``kafka``) happen inside the
command so that ``sfi --help`` stays fast.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Annotated

import typer

from ._app import app
from ._common import BrokerOpt, ConfigOpt, JsonOpt, load, stdout

_AGO = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_from_time(text: str, now_s: float | None = None) -> int:
    """ms since the epoch of ``--from-time``: ISO-8601 (no zone = UTC) or a time ago like 15m, 2h, 1d."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text.lower())
    if match:
        ago = float(match.group(1)) * _AGO[match.group(2)]
        return int(((time.time() if now_s is None else now_s) - ago) * 1000)
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"'{text}' is neither an ISO-8601 time (2026-11-21T10:00:00Z) nor a time ago "
                         "(30s, 15m, 2h, 1d)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


@app.command("decode")
def decode_command(
    inputs: Annotated[list[str] | None, typer.Argument(help="Files with one message each; '-' reads stdin.",
                                                       show_default=False)] = None,
    hex_: Annotated[list[str] | None, typer.Option("--hex", help="A message as hex (repeatable).",
                                                   show_default=False)] = None,
    broker: BrokerOpt = None,
    topic: Annotated[list[str] | None, typer.Option("--topic", "-t", help="Read this Kafka topic, or the "
                                                    "topics matching a ^regex (repeatable).",
                                                    show_default=False)] = None,
    partition: Annotated[int | None, typer.Option("--partition", "-p", help="Only this partition.",
                                                  show_default=False)] = None,
    offset: Annotated[int | None, typer.Option("--offset", help="Start at this offset.",
                                               show_default=False)] = None,
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="Start at the oldest message.")] = False,
    last: Annotated[int | None, typer.Option("--last", help="Start N messages before the end (per partition).",
                                             show_default=False)] = None,
    from_time: Annotated[str | None, typer.Option("--from-time", help="Start at this time: ISO-8601 "
                                                  "(2026-11-21T10:00:00Z) or ago (15m, 2h, 1d).",
                                                  show_default=False)] = None,
    count: Annotated[int | None, typer.Option("--count", "-n", help="Stop after N messages.",
                                              show_default=False)] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep waiting for new messages until Ctrl-C.")] = False,
    expect: Annotated[str | None, typer.Option("--expect", help="Accept only this schema id (e.g. wrdn).",
                                               show_default=False)] = None,
    as_json: JsonOpt = False,
    full: Annotated[bool, typer.Option("--full", help="Show whole arrays and nexus structures.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Decode file-writer (and any other ESS flatbuffer) messages.

    Without a position a topic is read from the beginning, or with --follow from the last 10
    messages on (like tail -f). --json is lossless (whole arrays). Exit 0 when all decoded, 1 when
    any failed, 2 for usage errors.
    """
    from .._time import iso_from_ms
    from ._decode_output import MessagePrinter

    paths, hexes, topics = inputs or [], hex_ or [], topic or []
    kinds = sum(bool(x) for x in (paths, hexes, topics))
    if kinds != 1:
        raise typer.BadParameter("give exactly one input: file paths or '-', --hex, or --topic")
    positioned = (offset is not None, from_beginning, last is not None, from_time is not None)
    if not topics and (partition is not None or follow or any(positioned)):
        raise typer.BadParameter("--partition/--offset/--from-beginning/--last/--from-time/--follow need --topic")
    if sum(positioned) > 1:
        raise typer.BadParameter("--offset, --from-beginning, --last and --from-time exclude each other")
    try:
        from_ms = parse_from_time(from_time) if from_time is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--from-time") from None
    if paths.count("-") > 1:
        raise typer.BadParameter("stdin ('-') can be read only once")

    printer = MessagePrinter(as_json=as_json, full=full, expect=expect, follow=follow, console=stdout)

    if topics:
        cfg = load(config, kafka={"bootstrap.servers": broker})
        from ..kafka import Position, read_topic  # here: decoding files needs no Kafka client

        if offset is not None:
            position = Position(offset=offset)
        elif last is not None:
            position = Position(last=last)
        elif from_ms is not None:
            position = Position(from_time_ms=from_ms)
        elif from_beginning or not follow:
            position = Position()
        else:
            position = Position(last=10)
        try:
            from ..messages import jsonable

            show = printer.show
            for rec in read_topic(cfg, topics, partition=partition, position=position, count=count, follow=follow):
                meta = {"topic": rec.topic, "partition": rec.partition, "offset": rec.offset,
                        "timestamp": iso_from_ms(rec.timestamp),
                        "key": None if rec.key is None else jsonable(rec.key),
                        "headers": [[name, jsonable(value)] for name, value in rec.headers] if rec.headers else []}
                show(f"{rec.topic}/{rec.partition}@{rec.offset}", rec.value, meta)
        except KeyboardInterrupt:
            pass
        raise typer.Exit(1 if printer.failures else 0)
    raise typer.Exit(printer.show_local(paths, hexes))
