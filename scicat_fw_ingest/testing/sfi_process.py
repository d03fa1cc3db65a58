"""Running the real ``sfi`` entry point in a child process, exactly as an operator would from a shell.

Why in the package: the CLI tests, the Ctrl-C tests and a facility's own acceptance checks want the command's
exit code and output as a user sees them (no in-process runner hiding start-up, signals or the environment).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Run:
    """What one ``sfi`` run left: exit code and both output streams, decoded."""

    returncode: int
    stdout: str
    stderr: str


def sigint_as_from_a_terminal() -> None:
    """``preexec_fn`` for a child that a test Ctrl-Cs: SIGINT at its default, as under a terminal.

    A suite started in the background by a non-interactive shell (``cmd &``) inherits SIGINT *ignored*,
    and Python then installs no KeyboardInterrupt handler: the Ctrl-C tests would test the launcher."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_sfi(*args: str, input: bytes | None = None, env: dict[str, str] | None = None,
            timeout: float = 60, cwd: Path | None = None) -> Run:
    """Run the real ``sfi`` entry point in a subprocess, exactly as an operator would.

    The caller's ``SFI_*`` variables are dropped so that only ``env`` configures the run."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SFI_")}
    proc = subprocess.run(
        [sys.executable, "-m", "scicat_fw_ingest", *args],
        input=input, capture_output=True, timeout=timeout, env={**base, **(env or {})}, cwd=cwd,
    )
    return Run(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))
