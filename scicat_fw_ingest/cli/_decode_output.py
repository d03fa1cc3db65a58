"""What ``sfi decode`` prints per message, and its local inputs (files, stdin, hex) — without typer.

Why apart from ``decode.py``: ``sfi decode FILE...`` is run over thousands of message files and in
pipelines, so its start-up counts (issue 14: within 1.2x of a bare loop over ess-streaming-data-types).
``_decode_fast`` reads the simple command lines (local inputs, --json, --full, --expect) without
importing typer, rich or the config model and calls this module; every other command line goes
through typer (``decode.py``), which calls the same ``MessagePrinter``. One printer, one output.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._warn import warn


def local_inputs(paths: list[str], hexes: list[str]) -> Iterator[tuple[str, bytes | None, str | None]]:
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


class MessagePrinter:
    """Decodes and prints messages one by one (JSON lines or readable tables) and counts the failures."""

    def __init__(self, *, as_json: bool, full: bool, expect: str | None, follow: bool = False,
                 console: Any = None) -> None:
        from ..messages import DecodeError, decode

        self._decode, self._error = decode, DecodeError
        self.as_json, self.full, self.expect, self.follow = as_json, full, expect, follow
        self._console = console
        self._write = sys.stdout.write
        # One encoder for every line; records are trees of fresh dicts and lists, so no circularity check.
        self._encode = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode
        self.failures = 0

    def show(self, label: str, data: bytes, meta: dict[str, object]) -> None:
        try:
            message = self._decode(data, expect=self.expect)
        except self._error as exc:
            self.failures += 1
            warn(f"decode: {label}: {exc}")
            return
        for name, problem in message.json_errors.items():
            self.failures += 1
            warn(f"decode: {label}: {message.schema} {name}: {problem} (kept as text)")
        if self.as_json:
            record = message.to_jsonable(full=True)
            if meta:
                record.update(meta)
            self._write(self._encode(record) + "\n")
            if self.follow:  # a live view shows each message as it comes; otherwise the buffer is written at exit
                sys.stdout.flush()
        else:
            from ._render import render_message

            render_message(self.console, message, label, meta, full=self.full)

    def fail(self, label: str, problem: str) -> None:
        self.failures += 1
        warn(f"decode: {label}: {problem}")

    @property
    def console(self) -> Any:
        if self._console is None:  # rich only for readable output
            from rich.console import Console

            self._console = Console(highlight=False, soft_wrap=True)
        return self._console

    def show_local(self, paths: list[str], hexes: list[str]) -> int:
        """Every local input; the exit code: 0 when all decoded, 1 when any failed."""
        for label, data, problem in local_inputs(paths, hexes):
            if problem or data is None:
                self.fail(label, problem or "no data")
                continue
            self.show(label, data, {})
        return 1 if self.failures else 0
