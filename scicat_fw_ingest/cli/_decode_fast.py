"""``sfi decode`` on local inputs without typer: the command lines that need no parser's help.

Why: typer, rich and the config model cost ~90 ms of imports, a third of the whole run of
``sfi decode msg.bin`` and the difference between 1.4x and 1.2x a bare ess-streaming-data-types
loop over 10,000 files (``make bench``). Only these forms are taken here:

    sfi decode [--json] [--full] [--expect ID] PATH... | - | --hex HEX...

Anything else (a topic, a config, --help, an unknown or misplaced option, no input, both kinds of
input) returns ``None`` and goes to typer unchanged, so usage errors and help read the same as in
every other command. tests/messages/test_decode_cli.py runs the same command lines both ways and compares.
"""

from __future__ import annotations

import os

#: Set to any value to send every decode command line through typer (tests compare the two).
NO_FAST_PATH = "SFI_DECODE_NO_FAST_PATH"

_FLAGS = {"--json", "--full"}
_VALUED = {"--expect", "--hex"}


def parse(args: list[str]) -> dict[str, object] | None:
    """The options of a simple local decode, or None when typer must read this command line."""
    opts: dict[str, object] = {"--json": False, "--full": False, "--expect": None}
    paths: list[str] = []
    hexes: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if arg in _FLAGS:
            opts[arg] = True
        elif name in _VALUED:
            if not eq:
                if i + 1 >= len(args) or (args[i + 1].startswith("-") and args[i + 1] != "-"):
                    return None
                i += 1
                value = args[i]
            if name == "--hex":
                hexes.append(value)
            elif opts["--expect"] is None:
                opts["--expect"] = value
            else:
                return None  # repeated: typer's rule (the last wins) applies there
        elif arg == "-" or not arg.startswith("-"):
            paths.append(arg)
        else:
            return None
        i += 1
    if bool(paths) == bool(hexes) or paths.count("-") > 1:
        return None  # no input, both kinds, or stdin twice: typer says why
    return {"paths": paths, "hexes": hexes, "as_json": opts["--json"], "full": opts["--full"],
            "expect": opts["--expect"]}


def run(args: list[str]) -> int | None:
    """The exit code of ``sfi decode ARGS`` when decoded here, else None (typer's turn)."""
    if os.environ.get(NO_FAST_PATH):
        return None
    parsed = parse(args)
    if parsed is None:
        return None
    from ._decode_output import MessagePrinter

    printer = MessagePrinter(as_json=bool(parsed["as_json"]), full=bool(parsed["full"]),
                             expect=parsed["expect"])  # type: ignore[arg-type]
    return printer.show_local(parsed["paths"], parsed["hexes"])  # type: ignore[arg-type]
