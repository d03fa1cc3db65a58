"""The ``sfi`` command line: one short module per command, nothing but parsing and printing.

Commands register themselves on ``app`` in their module, which ``_app.LazyGroup`` imports only
when that command is used (start-up time is a feature); ``sfi decode`` on local inputs does not even
import typer (``_decode_fast``). ``main`` turns expected failures (``SfiError``) into one line per
problem on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ..errors import SfiError
from ._warn import warn as warn  # re-exported: `from scicat_fw_ingest.cli import warn` keeps working

__all__ = ["app", "main"]

EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


def __getattr__(name: str) -> Any:
    """``cli.app``: the typer application, imported on first use (not for ``sfi decode FILE``)."""
    if name == "app":
        return _typer_app()
    raise AttributeError(name)


def _typer_app() -> Any:
    from . import _common as _common  # registers the global options: -c, --version
    from ._app import app

    return app


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] == ["decode"]:
            from ._decode_fast import run

            code = run(args[1:])
            if code is not None:
                sys.stdout.flush()  # inside the try: a closed pipe is handled below
                sys.exit(code)
        _typer_app()(args=argv, prog_name="sfi")
    except SfiError as exc:
        from ..config import mask_url_credentials  # a URL with user:password@ must not reach the terminal

        for line in mask_url_credentials(str(exc)).splitlines() or [type(exc).__name__]:
            sys.stderr.write(f"sfi: error: {line}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (e.g. `sfi decode ... | head`): not an error of ours.
        silence_stdout()
        sys.exit(0)
    except Exception as exc:  # a bug in sfi: say so in one line; SFI_DEBUG=1 shows the traceback
        if os.environ.get("SFI_DEBUG"):
            raise
        sys.stderr.write(f"sfi: internal error: {type(exc).__name__}: {exc} (set SFI_DEBUG=1 for a traceback)\n")
        sys.exit(EXIT_INTERNAL)


def silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush does not fail on a closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
