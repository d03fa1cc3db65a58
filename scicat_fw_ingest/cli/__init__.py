"""The ``sfi`` command line: one short module per command, nothing but parsing and printing.

Commands register themselves on ``app`` in their module; ``main`` turns expected failures
(``SfiError``) into one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import os
import sys

from ..errors import SfiError
from ._app import app

# Each import registers its command(s) on ``app``.
from . import config as _config  # noqa: E402,F401
from . import decode as _decode  # noqa: E402,F401
from . import forward_runinfo as _forward_runinfo  # noqa: E402,F401
from . import ingest_file as _ingest_file  # noqa: E402,F401
from . import list_status as _list_status  # noqa: E402,F401
from . import listen as _listen  # noqa: E402,F401
from . import produce_test as _produce_test  # noqa: E402,F401
from . import push_catalogue as _push_catalogue  # noqa: E402,F401
from . import scicat as _scicat  # noqa: E402,F401

__all__ = ["app", "main"]

EXIT_INTERNAL = 70


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, prog_name="sfi")
    except SfiError as exc:
        sys.stderr.write(f"sfi: error: {exc}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # The reader went away (e.g. `sfi decode ... | head`): not an error of ours.
        sys.stderr.close()
        sys.exit(0)
    except Exception as exc:  # a bug in sfi: say so in one line; SFI_DEBUG=1 shows the traceback
        if os.environ.get("SFI_DEBUG"):
            raise
        sys.stderr.write(f"sfi: internal error: {type(exc).__name__}: {exc} (set SFI_DEBUG=1 for a traceback)\n")
        sys.exit(EXIT_INTERNAL)
