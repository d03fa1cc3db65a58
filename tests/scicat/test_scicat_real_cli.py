"""``sfi`` against the REAL backend: ``scicat check`` for admin, ingestor and a bad password; a
non-admin ingestor re-running ``ingest-file`` on files it ingested (no read rights on their group)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from scicat_fw_ingest.scicat import pid_path
from scicat_fw_ingest.testing.backend import RealBackend
from scicat_fw_ingest.testing.nexus_files import write_ess
from scicat_fw_ingest.testing.real_backend_env import CONFIG, env


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "sfi.toml"
    path.write_text(CONFIG)
    return path


@pytest.mark.parametrize("user,password", [("admin", "adminpass"), ("ingestor", "ingestorpass")])
def test_scicat_check_reports_each_line(sfi, real_scicat: RealBackend, config_file: Path, user: str,
                                        password: str) -> None:
    run = sfi("scicat", "check", "-c", str(config_file), env=env(real_scicat, user, password))
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    names = [line.split()[1] for line in lines]
    assert names[:3] == ["server", "login", "token"] and {"read", "validate", "create", "account"} <= set(names)
    assert f"logged in as '{user}'" in run.stdout and "expires in" in run.stdout
    if user == "ingestor":  # not in group 'ess': says what that means for sfi
        assert "readable only if the account is an admin" in run.stdout
    assert "ingestorpass" not in run.stdout + run.stderr and "adminpass" not in run.stdout + run.stderr


@pytest.mark.parametrize("group,code", [("ingestor", 0), ("not-mine", 1)])
def test_scicat_check_says_whether_access_group_lets_the_account_read_back(sfi, real_scicat: RealBackend,
                                                                          config_file: Path, group: str,
                                                                          code: int) -> None:
    run = sfi("scicat", "check", "-c", str(config_file),
              env={**env(real_scicat, "ingestor", "ingestorpass"), "SFI_SCICAT_ACCESS_GROUP": group})
    assert run.returncode == code, run.stdout + run.stderr
    if code == 0:
        assert "reads back every dataset it creates through [scicat] access_group 'ingestor'" in run.stdout
        assert "may not delete a duplicate datablock" in run.stdout
    else:
        assert "access_group 'not-mine' is not one of the account's groups" in run.stdout


def test_scicat_check_with_a_bad_password_exits_1(sfi, real_scicat: RealBackend, config_file: Path) -> None:
    run = sfi("scicat", "check", "-c", str(config_file), env=env(real_scicat, "ingestor", "wrong-password"))
    assert run.returncode == 1
    assert "PROBLEM login" in run.stdout and "check [scicat] username and password" in run.stdout
    assert "Traceback" not in run.stderr


@pytest.mark.slow
@pytest.mark.parametrize("api", ["v3"])  # v4 without read rights: tests/scicat/test_scicat_contract.py
def test_non_admin_rerun_of_ingest_file_reports_exists(sfi, real_scicat: RealBackend, config_file: Path,
                                                       tmp_path: Path, api: str) -> None:
    files = [write_ess(tmp_path / f"run{i}.nxs", uuid=str(uuid.uuid4()))
             for i in range(10)]
    e = env(real_scicat, "ingestor", "ingestorpass", api)
    first = sfi("ingest-file", *map(str, files), "--json", "-c", str(config_file), env=e, timeout=120)
    assert first.returncode == 0, first.stderr
    records = [json.loads(line) for line in first.stdout.splitlines() if line.strip()]
    assert [r["status"] for r in records] == ["created"] * 10
    again = sfi("ingest-file", *map(str, files), "--json", "-c", str(config_file), env=e, timeout=120)
    assert again.returncode == 0, again.stderr
    assert [json.loads(line)["status"] for line in again.stdout.splitlines() if line.strip()] == ["exists"] * 10
    for record, path in zip(records, files, strict=True):
        status, blocks = real_scicat.request("GET", f"/api/v3/Datasets/{pid_path(record['pid'])}/origdatablocks")
        assert status == 200 and len(blocks) == 1
        status, doc = real_scicat.request("GET", f"/api/v3/Datasets/{pid_path(record['pid'])}")
        assert doc["size"] == path.stat().st_size and doc["numberOfFiles"] == 1
