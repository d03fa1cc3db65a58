"""The shipped examples stay valid: the sample config loads and the sample profile maps a real file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from scicat_fw_ingest.config import load_config
from scicat_fw_ingest.testing.checkout import REPO_ROOT as ROOT
from scicat_fw_ingest.testing.listener import make_jobs

EXAMPLES = ROOT / "examples"


def test_sample_config_loads_with_every_table() -> None:
    cfg = load_config(EXAMPLES / "sfi.toml", env={})
    assert cfg.bootstrap and cfg.scicat.url and cfg.defaults
    assert cfg.listen.processes >= 0 and cfg.isis.output_topic == "ALL_runInfo"


def test_sample_config_works_as_given(sfi, tmp_path: Path) -> None:
    check = sfi("--config", str(EXAMPLES / "sfi.toml"), "config", "--check")
    assert check.returncode == 0 and "configuration OK" in check.stdout, check.stderr
    (job,) = make_jobs(tmp_path, 1, topic="unused")
    run = sfi("-c", str(EXAMPLES / "sfi.toml"), "ingest-file", "--dry-run", "--json", str(tmp_path / job.filename))
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["dataset"]["pid"].startswith("20.500.12269")


def test_sample_producer_runs_embedded() -> None:
    run = subprocess.run([sys.executable, str(EXAMPLES / "producer"), "--embedded", "--timeout", "30"],
                         capture_output=True, text=True, timeout=90)
    assert run.returncode == 0, run.stderr[-500:]
    assert "wrdn: file example.nxs, error False" in run.stdout


def test_sample_profile_is_selected_and_maps_a_dream_file(tmp_path: Path, sfi) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    shutil.copy(EXAMPLES / "profile-dream.toml", profiles / "dream.toml")
    data = tmp_path / "data"
    (job,) = make_jobs(data, 1, topic="unused")
    run = sfi("ingest-file", "--dry-run", "--json", str(data / job.filename),
              env={"SFI_INGEST_PROFILE_DIRS": str(profiles)})
    assert run.returncode == 0, run.stderr
    dataset = json.loads(run.stdout)["dataset"]
    assert dataset["creationLocation"] == "ESS:DREAM" and dataset["accessGroups"] == ["dream"]
    assert dataset["proposalId"] == "p2026001"
