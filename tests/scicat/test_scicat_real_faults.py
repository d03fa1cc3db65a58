"""One datablock per dataset, proven on the REAL backend (both versions, API v3 and v4), for the faults
that need real time or real processes (the rest of the contract: ``test_scicat_contract.py``).

The faults sit between backend and client (``testing/fault_proxy.py``): the backend stores a datablock
POST, then the answer comes after the client's timeout, or is replaced by a 502. Plus: a process
SIGKILLed during a slow datablock POST and re-run, and 4 processes racing on one file. Each ends with
exactly one datablock and the dataset's size equal to the file's (read back as admin).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from scicat_fw_ingest.scicat import ScicatClient
from scicat_fw_ingest.testing.backend import RealBackend
from scicat_fw_ingest.testing.checkout import REPO_ROOT as ROOT
from scicat_fw_ingest.testing.failover import blocks_and_size
from scicat_fw_ingest.testing.fault_proxy import FaultProxy
from scicat_fw_ingest.testing.scicat_payloads import datablock, raw_dataset

API = ["v3", "v4"]


def fresh_pid() -> str:
    return f"sfi-test/{uuid.uuid4()}"


def client(url: str, api: str, tmp_path: Path, user: str = "admin", **kw: Any) -> ScicatClient:
    password = {"admin": "adminpass", "ingestor": "ingestorpass"}[user]
    options: dict[str, Any] = {"timeout": 5.0, "backoff": 0.05, "grace": 0.5, **kw}
    return ScicatClient(url, username=user, password=password, api=api, lock_dir=tmp_path / "locks", **options)


@pytest.mark.slow
@pytest.mark.parametrize("api", API)
def test_datablock_answered_after_the_client_timeout_is_not_sent_twice(real_scicat: RealBackend, api: str,
                                                                        tmp_path: Path) -> None:
    pid = fresh_pid()
    with FaultProxy(real_scicat.base) as proxy:
        proxy.delay(2.5, path_contains="rigdatablocks", method="POST")
        c = client(proxy.url, api, tmp_path, timeout=1.0)
        try:
            assert c.upsert(raw_dataset(pid), datablock(1234)) == "created"
            assert c.upsert(raw_dataset(pid), datablock(1234)) == "exists"
        finally:
            c.close()
        posts = [p for m, p in proxy.forwarded if m == "POST" and "rigdatablocks" in p]
    assert len(posts) == 1  # the timed-out POST was looked for, found, and never re-sent
    assert blocks_and_size(real_scicat, pid) == (1, 1234, 1)


def _upsert_script(url: str, api: str, lock_dir: Path, pid: str, size: int, grace: float) -> list[str]:
    code = (
        "import json,sys\n"
        "from scicat_fw_ingest.scicat import ScicatClient\n"
        "from scicat_fw_ingest.testing.scicat_payloads import raw_dataset, datablock\n"
        f"c = ScicatClient({url!r}, username='admin', password='adminpass', api={api!r}, "
        f"lock_dir={str(lock_dir)!r}, grace={grace}, timeout=30, backoff=0.05)\n"
        f"print(c.upsert(raw_dataset({pid!r}), datablock({size})), flush=True)\n"
    )
    return [sys.executable, "-c", code]


@pytest.mark.slow
@pytest.mark.parametrize("api", API)
def test_sigkill_during_a_slow_datablock_post_then_rerun(real_scicat: RealBackend, api: str, tmp_path: Path) -> None:
    pid = fresh_pid()
    with FaultProxy(real_scicat.base) as proxy:
        proxy.delay(2.5, path_contains="rigdatablocks", method="POST")
        proc = subprocess.Popen(_upsert_script(proxy.url, api, tmp_path / "locks", pid, 4321, 1.0), cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and proxy.rules[0].remaining:
                time.sleep(0.05)
            time.sleep(0.3)  # the backend has stored it; the answer is held back by the proxy
            assert proxy.rules[0].remaining == 0, "the datablock POST never reached the proxy"
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
        rerun = subprocess.run(_upsert_script(proxy.url, api, tmp_path / "locks", pid, 4321, 1.0), cwd=ROOT,
                               capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.strip() == "exists"
    assert blocks_and_size(real_scicat, pid) == (1, 4321, 1)


@pytest.mark.slow
@pytest.mark.parametrize("api", API)
def test_four_processes_racing_on_one_file(real_scicat: RealBackend, api: str, tmp_path: Path) -> None:
    pid = fresh_pid()
    procs = [subprocess.Popen(_upsert_script(real_scicat.base + f"/api/{api}", api, tmp_path / "locks", pid, 999,
                                             0.5), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    statuses = sorted(o[0].strip() for o in outs)
    assert statuses == ["created", "exists", "exists", "exists"]
    assert blocks_and_size(real_scicat, pid) == (1, 999, 1)


def test_lock_files_do_not_pile_up(real_scicat: RealBackend, tmp_path: Path) -> None:
    c = client(real_scicat.url, "v3", tmp_path)
    try:
        for _ in range(3):
            c.upsert(raw_dataset(fresh_pid()), datablock(5))
    finally:
        c.close()
    assert os.listdir(tmp_path / "locks") == []
