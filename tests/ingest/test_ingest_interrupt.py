"""Ctrl-C and refused credentials in ``sfi ingest-file``: stop soon, say what was done, no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

from scicat_fw_ingest.ingest.batch import AUTH_STOP, Batch
from scicat_fw_ingest.testing.ingest_setup import DEFAULTS, cfg_for, env_for, posts
from scicat_fw_ingest.testing.nexus_files import write_ess
from scicat_fw_ingest.testing.sfi_process import sigint_as_from_a_terminal


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SFI_")}
    return subprocess.Popen([sys.executable, "-m", "scicat_fw_ingest", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**base, **env}, start_new_session=True,
                            preexec_fn=sigint_as_from_a_terminal)


@pytest.mark.slow
def test_ctrl_c_mid_batch_stops_with_a_summary_and_exit_130(scicat_server, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(40):
        write_ess(folder / f"run{i:03d}.nxs", uuid=None, title=f"run {i}", entry_identifier=str(i))
    config = tmp_path / "sfi.toml"
    config.write_text(DEFAULTS)
    scicat_server.slow(0.4)  # every request takes 0.4 s: the batch is still running when Ctrl-C comes
    proc = _start(["-c", str(config), "ingest-file", str(folder), "-j", "2", "--json"], env_for(scicat_server))
    assert proc.stdout is not None
    first = _first_line(proc.stdout)  # one file done: the workers are busy with the next ones
    assert '"status": "created"' in first
    os.killpg(proc.pid, signal.SIGINT)  # as the terminal does: to the whole process group, workers included
    try:
        rest, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("ingest-file did not stop after Ctrl-C")
    finally:
        scicat_server.slow(0)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    done = 1 + sum('"status":' in line for line in rest.splitlines())
    [summary] = [line for line in err.splitlines() if "interrupted:" in line]
    assert f"{done} file(s) done, {40 - done} not done" in summary
    assert done < 40 and len(scicat_server.datasets) <= done + 4  # at most the abandoned in-flight files
    time.sleep(0.5)
    assert not _children_of(proc.pid), "worker processes left behind"


def _first_line(stream: IO[str]) -> str:
    """One line read a byte at a time from the descriptor: ``readline`` on the text stream reads ahead, and the
    lines it buffered are lost to ``communicate()``, which reads the descriptor itself (a line went missing so
    when two results arrived together)."""
    raw = stream.buffer.raw  # type: ignore[attr-defined]
    line = bytearray()
    while not line.endswith(b"\n"):
        byte = raw.read(1)
        if not byte:
            break
        line += byte
    return line.decode()


def _children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def test_wrong_password_is_one_line_before_any_file(scicat_server, tmp_path: Path) -> None:
    path = write_ess(tmp_path / "a.nxs")
    config = tmp_path / "sfi.toml"
    config.write_text(DEFAULTS)
    env = {"SFI_SCICAT_URL": scicat_server.url, "SFI_SCICAT_USERNAME": "ingestor",
           "SFI_SCICAT_PASSWORD": "wrong-password", "SFI_SCICAT_BACKOFF": "0.01"}
    run = subprocess.run([sys.executable, "-m", "scicat_fw_ingest", "-c", str(config), "ingest-file", str(path)],
                         capture_output=True, text=True, env={**{k: v for k, v in os.environ.items()
                                                                 if not k.startswith("SFI_")}, **env}, timeout=60)
    assert run.returncode == 1
    [line] = run.stderr.strip().splitlines()
    assert "login as 'ingestor' failed" in line and "wrong-password" not in run.stderr
    assert not posts(scicat_server)[1:] and not scicat_server.datasets


def test_batch_stops_after_consecutive_401(scicat_server, tmp_path: Path) -> None:
    files = [str(write_ess(tmp_path / f"r{i}.nxs", uuid=None, entry_identifier=str(i))) for i in range(8)]
    scicat_server.fail_next(100, 401, method="POST")
    seen: list[object] = []
    outcome = Batch(cfg_for(scicat_server), processes=1, dry_run=False).run(files, seen.append)
    assert outcome.auth_error and ("401" in outcome.auth_error or "token expired or refused" in outcome.auth_error)
    assert outcome.done == AUTH_STOP == len(seen) and outcome.not_done == len(files) - AUTH_STOP
