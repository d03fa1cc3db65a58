"""``sfi decode``: any ESS flatbuffer message to readable text or JSON, from files, stdin, hex or a topic."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from ..messages import DecodeError, decode, iso_from_ns
from ._app import app
from ._common import BrokerOpt, ConfigOpt, JsonOpt, load, stdout, warn
from ._render import render_message


def _inputs(paths: list[str], hexes: list[str]) -> Iterator[tuple[str, bytes | None, str | None]]:
    """(label, bytes or None, error) per local input, in the order given."""
    for path in paths:
        if path == "-":
            yield "stdin", sys.stdin.buffer.read(), None
            continue
        try:
            yield path, Path(path).read_bytes(), None
        except OSError as exc:
            yield path, None, f"cannot read: {exc.strerror or exc}"
    for i, text in enumerate(hexes, 1):
        label = f"--hex #{i}" if len(hexes) > 1 else "--hex"
        try:
            yield label, bytes.fromhex("".join(text.split()).removeprefix("0x")), None
        except ValueError as exc:
            yield label, None, f"not hexadecimal: {exc}"


@app.command("decode")
def decode_command(
    inputs: Annotated[list[str] | None, typer.Argument(help="Files with one message each; '-' reads stdin.",
                                                       show_default=False)] = None,
    hex_: Annotated[list[str] | None, typer.Option("--hex", help="A message as hex (repeatable).",
                                                   show_default=False)] = None,
    broker: BrokerOpt = None,
    topic: Annotated[str | None, typer.Option("--topic", "-t", help="Read this Kafka topic.",
                                              show_default=False)] = None,
    partition: Annotated[int | None, typer.Option("--partition", "-p", help="Only this partition.",
                                                  show_default=False)] = None,
    offset: Annotated[int | None, typer.Option("--offset", help="Start at this offset.",
                                               show_default=False)] = None,
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="Start at the oldest message.")] = False,
    last: Annotated[int | None, typer.Option("--last", help="Start N messages before the end (per partition).",
                                             show_default=False)] = None,
    count: Annotated[int | None, typer.Option("--count", "-n", help="Stop after N messages.", show_default=False)] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep waiting for new messages until Ctrl-C.")] = False,
    expect: Annotated[str | None, typer.Option("--expect", help="Accept only this schema id (e.g. wrdn).",
                                               show_default=False)] = None,
    as_json: JsonOpt = False,
    full: Annotated[bool, typer.Option("--full", help="Show whole arrays and nexus structures.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Decode file-writer (and any other ESS flatbuffer) messages.

    Without a position a topic is read from the beginning, or with --follow from the last 10
    messages on (like tail -f). Exit 0 when all decoded, 1 when any failed, 2 for usage errors.
    """
    paths, hexes = inputs or [], hex_ or []
    kinds = sum(bool(x) for x in (paths, hexes, topic))
    if kinds != 1:
        raise typer.BadParameter("give exactly one input: file paths or '-', --hex, or --topic")
    if not topic and (partition is not None or offset is not None or from_beginning or last is not None or follow):
        raise typer.BadParameter("--partition/--offset/--from-beginning/--last/--follow need --topic")
    if sum(x for x in (offset is not None, from_beginning, last is not None)) > 1:
        raise typer.BadParameter("--offset, --from-beginning and --last exclude each other")
    if paths.count("-") > 1:
        raise typer.BadParameter("stdin ('-') can be read only once")

    failures = 0

    def show(label: str, data: bytes, meta: dict[str, object]) -> None:
        nonlocal failures
        try:
            message = decode(data, expect=expect)
        except DecodeError as exc:
            failures += 1
            warn(f"decode: {label}: {exc}")
            return
        for name, problem in message.json_errors.items():
            failures += 1
            warn(f"decode: {label}: {message.schema} {name}: {problem} (kept as text)")
        if as_json:
            record = {**message.to_jsonable(full=full), **meta}
            stdout.file.write(json.dumps(record, ensure_ascii=False) + "\n")
            if follow:  # a live view shows each message as it comes; otherwise the buffer is written at exit
                stdout.file.flush()
        else:
            render_message(stdout, message, label, meta, full=full)

    if topic:
        cfg = load(config, kafka={"bootstrap.servers": broker})
        from ..kafka import Position, read_topic  # here: decoding files needs no Kafka client

        if offset is not None:
            position = Position(offset=offset)
        elif last is not None:
            position = Position(last=last)
        elif from_beginning or not follow:
            position = Position()
        else:
            position = Position(last=10)
        try:
            for rec in read_topic(cfg, topic, partition=partition, position=position, count=count, follow=follow):
                meta = {"topic": rec.topic, "partition": rec.partition, "offset": rec.offset,
                        "timestamp": iso_from_ns(rec.timestamp * 1_000_000) if rec.timestamp is not None else None}
                show(f"{rec.topic}/{rec.partition}@{rec.offset}", rec.value, meta)
        except KeyboardInterrupt:
            pass
    else:
        for label, data, problem in _inputs(paths, hexes):
            if problem or data is None:
                failures += 1
                warn(f"decode: {label}: {problem}")
                continue
            show(label, data, {})
    raise typer.Exit(1 if failures else 0)
