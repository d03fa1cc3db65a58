"""Issue 22's acceptance on the REAL backend (5.1.0 and 4.5.0): ``sfi ingest-file`` of an ISIS file and ESS
files attaches exactly one preview per dataset that has something to show (a valid PNG data URI), none to a
file without data (``--explain`` says why), and a re-run adds none."""

from __future__ import annotations

import base64
import json
import shutil
import struct
import uuid
from pathlib import Path

import pytest

from scicat_fw_ingest.scicat import pid_path
from scicat_fw_ingest.testing.backend import RealBackend
from scicat_fw_ingest.testing.nexus_files import write_ess
from scicat_fw_ingest.testing.real_backend_env import CONFIG, env


@pytest.mark.parametrize("api", ["v3", "v4"])
def test_ingest_file_attaches_one_preview_and_a_rerun_none(sfi, real_scicat: RealBackend, tmp_path: Path,
                                                           shared_data: Path, api: str) -> None:
    config = tmp_path / "sfi.toml"
    config.write_text(CONFIG)
    isis = tmp_path / "LOQ49886.nxs"  # a copy: its pid comes from the path, unique to this test
    shutil.copyfile(shared_data / "isis_loq_minimal_histogram.nxs", isis)
    events = write_ess(tmp_path / "dream.nxs", events=20_000, uuid=str(uuid.uuid4()))
    empty = shared_data / "ess_coda_small.hdf"  # metadata only: no picture applies
    e = env(real_scicat, "admin", "adminpass", api)
    runs = []
    for _ in range(2):
        run = sfi("ingest-file", str(isis), str(events), str(empty), "--json", "-c", str(config), env=e, timeout=120)
        assert run.returncode == 0, run.stderr
        runs.append({Path(r["file"]).name: r for r in map(json.loads, run.stdout.splitlines())})
    first, again = runs
    assert first[isis.name]["preview"] == "created" and first[events.name]["preview"] == "created"
    assert {r["preview"] for r in again.values()} <= {"exists", "none"} and again[empty.name]["preview"] == "none"
    for name in (isis.name, events.name):
        status, items = real_scicat.request("GET", f"/api/v3/Datasets/{pid_path(first[name]['pid'])}/attachments")
        assert status == 200 and len(items) == 1, items
        head, _, data = items[0]["thumbnail"].partition(",")
        png = base64.b64decode(data)
        assert head == "data:image/png;base64" and png[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", png[16:24]) == (400, 300) and len(png) < 100_000
        assert items[0]["caption"].startswith("Preview (sfi): ")
    assert "against time_of_flight" in real_scicat.request(
        "GET", f"/api/v3/Datasets/{pid_path(first[isis.name]['pid'])}/attachments")[1][0]["caption"]
    status, items = real_scicat.request("GET", f"/api/v3/Datasets/{pid_path(first[empty.name]['pid'])}/attachments")
    assert status == 200 and items == []
    explain = sfi("ingest-file", str(empty), "--explain", "-c", str(config))
    assert "(preview)" in explain.stdout and "no NXevent_data group" in explain.stdout
