"""``sfi ingest-file`` and the ingest core against the SciCat test server (real HTTP, real rules)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from scicat_fw_ingest.ingest import Ingestor, RunInfo
from scicat_fw_ingest.scicat import ScicatClient
from scicat_fw_ingest.testing.ingest_setup import DEFAULTS, cfg_for, env_for, posts
from scicat_fw_ingest.testing.nexus_files import (
    FileLock,
    finished,
    ten_million_event_file,
    write_ess,
    write_isis,
    write_other,
)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "sfi.toml"
    path.write_text(DEFAULTS)
    return path


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- acceptance -----------------------------------------------------------------------------------
def test_creates_one_dataset_and_datablock_then_reports_exists(sfi, scicat_server, config_file, tmp_path) -> None:
    path = write_ess(tmp_path / "run.nxs")
    run = sfi("ingest-file", str(path), "--json", "-c", str(config_file), env=env_for(scicat_server))
    assert run.returncode == 0, run.stderr
    [record] = lines(run.stdout)
    assert record["status"] == "created" and record["error"] is None
    pid = record["pid"]
    assert list(scicat_server.datasets) == [pid] and len(scicat_server.origdatablocks[pid]) == 1
    [entry] = scicat_server.origdatablocks[pid][0]["dataFileList"]
    assert entry["chk"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert scicat_server.datasets[pid]["numberOfFiles"] == 1
    assert scicat_server.datasets[pid]["size"] == path.stat().st_size
    assert record["dataset"]["pid"] == pid and record["origdatablock"]["chkAlg"] == "sha256"

    before = len(posts(scicat_server))
    again = sfi("ingest-file", str(path), "--json", "-c", str(config_file), env=env_for(scicat_server))
    assert again.returncode == 0, again.stderr
    assert lines(again.stdout)[0]["status"] == "exists"
    # The re-run posts the dataset (409: it exists) and adds no datablock.
    assert posts(scicat_server)[before:] == ["/api/v3/Datasets"] and len(scicat_server.datasets) == 1
    assert len(scicat_server.origdatablocks[pid]) == 1
    assert scicat_server.token not in run.stdout + run.stderr + again.stdout + again.stderr


def test_real_reference_files_ingest(sfi, scicat_server, config_file, shared_data) -> None:
    run = sfi("ingest-file", str(shared_data / "ess_coda_small.hdf"),
              str(shared_data / "isis_loq_minimal_histogram.nxs"), "--json", "-c", str(config_file),
              env=env_for(scicat_server))
    assert run.returncode == 0, run.stderr
    by_name = {Path(r["file"]).name: r for r in lines(run.stdout)}
    assert {r["status"] for r in by_name.values()} == {"created"}
    ess = scicat_server.datasets[by_name["ess_coda_small.hdf"]["pid"]]
    assert ess["proposalId"] == "443503" and ess["datasetName"] == "odin" and ess["creationLocation"] == "ESS:ODIN"
    isis = scicat_server.datasets[by_name["isis_loq_minimal_histogram.nxs"]["pid"]]
    assert isis["datasetName"] == "LOQ49886" and isis["creationTime"].startswith("2009-04-28T10:47:44")


def test_directory_backfill_in_parallel_with_summary(sfi, scicat_server, config_file, tmp_path) -> None:
    data = tmp_path / "data"
    (data / "2024" / "05").mkdir(parents=True)
    for i in range(6):
        write_ess(data / "2024" / "05" / f"run{i}.nxs", uuid=None, title=f"run {i}")
    for i in range(3):
        write_isis(data / "2024" / f"LOQ{i}.nxs", run_number=i)
    (data / "notes.txt").write_text("not matched by the pattern")
    write_ess(data / "skip.hdf5", uuid=None)
    run = sfi("ingest-file", str(data), "-j", "3", "--pattern", "*.nxs", "-c", str(config_file),
              env=env_for(scicat_server))
    assert run.returncode == 0, run.stderr
    assert len(scicat_server.datasets) == 9 and "created" in run.stdout and "summary" in run.stdout
    assert all(len(blocks) == 1 for blocks in scicat_server.origdatablocks.values())
    again = sfi("ingest-file", str(data / "2024" / "*.nxs"), str(data / "2024" / "05"), "--json",
                "-c", str(config_file), env=env_for(scicat_server))
    assert sorted(r["status"] for r in lines(again.stdout)) == ["exists"] * 9
    assert len(scicat_server.datasets) == 9


def test_one_bad_file_does_not_stop_the_batch(sfi, scicat_server, config_file, tmp_path) -> None:
    good = write_ess(tmp_path / "good.nxs")
    (tmp_path / "text.nxs").write_text("hello")
    plain = write_other(tmp_path / "plain.h5")
    run = sfi("ingest-file", str(tmp_path / "text.nxs"), str(good), str(plain), str(tmp_path / "missing.nxs"),
              "--json", "-c", str(config_file), env=env_for(scicat_server))
    assert run.returncode == 1
    records = {Path(r["file"]).name: r for r in lines(run.stdout)}
    assert records["good.nxs"]["status"] == "created"
    assert "not an HDF5" in records["text.nxs"]["error"]
    assert "no mapping profile fits" in records["plain.h5"]["error"]
    assert "file not found" in records["missing.nxs"]["error"]
    assert "Traceback" not in run.stderr and len(scicat_server.datasets) == 1


def test_text_mode_reports_failures_on_stderr_and_table(sfi, scicat_server, config_file, tmp_path) -> None:
    (tmp_path / "bad.nxs").write_text("x")
    run = sfi("ingest-file", str(tmp_path / "bad.nxs"), "-c", str(config_file), env=env_for(scicat_server))
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and "bad.nxs: not an HDF5" in run.stderr
    assert "failed files" in run.stdout


# -- faults -----------------------------------------------------------------------------------------
def test_retries_then_success(scicat_server, tmp_path) -> None:
    path = write_ess(tmp_path / "a.nxs")
    scicat_server.fail_next(2, 503)
    client = ScicatClient.from_config(cfg_for(scicat_server).scicat)
    try:
        result = Ingestor(cfg_for(scicat_server), client).ingest(str(path))
    finally:
        client.close()
    assert result.status == "created", result.error
    assert len(scicat_server.datasets) == 1


def test_dataset_without_datablock_is_repaired(scicat_server, tmp_path) -> None:
    path = write_ess(tmp_path / "a.nxs")
    cfg = cfg_for(scicat_server)
    cfg.scicat.max_attempts = 1
    client = ScicatClient.from_config(cfg.scicat)
    try:
        scicat_server.fail_next(1, 500, path_contains="origdatablocks")
        first = Ingestor(cfg, client).ingest(str(path))
        assert first.status == "failed" and first.retryable and "500" in (first.error or "")
        pid = first.pid
        assert pid in scicat_server.datasets and not scicat_server.origdatablocks.get(pid)
        second = Ingestor(cfg, client).ingest(str(path))
    finally:
        client.close()
    assert second.status == "repaired", second.error
    assert len(scicat_server.origdatablocks[pid]) == 1 and len(scicat_server.datasets) == 1


def test_unreachable_scicat_is_retryable(sfi, scicat_server, config_file, tmp_path) -> None:
    path = write_ess(tmp_path / "a.nxs")
    scicat_server.refuse()
    run = sfi("ingest-file", str(path), "--json", "-c", str(config_file),
              env=env_for(scicat_server, SFI_SCICAT_MAX_ATTEMPTS="2"))
    scicat_server.resume()
    assert run.returncode == 1  # checked once before the batch: one line, no file attempted
    assert lines(run.stdout) == [] and "Traceback" not in run.stderr
    [line] = run.stderr.strip().splitlines()
    assert line.startswith("sfi: error: SciCat GET") and "Datasets" in line
    client = ScicatClient.from_config(cfg_for(scicat_server).scicat)
    scicat_server.refuse()
    try:
        result = Ingestor(cfg_for(scicat_server), client).ingest(str(path))
    finally:
        client.close()
        scicat_server.resume()
    assert result.status == "failed" and result.retryable


def test_locked_file_waits_then_ingests_or_fails_retryable(scicat_server, tmp_path) -> None:
    path = write_ess(tmp_path / "a.nxs")
    with FileLock(path, 1.0):
        quick = Ingestor(cfg_for(scicat_server, file_wait=0.2), None).ingest(str(path))
        assert quick.status == "failed" and quick.retryable and "lock" in (quick.error or "")
        patient = Ingestor(cfg_for(scicat_server, file_wait=20.0), None).ingest(str(path))
    assert patient.status == "dry-run"


def test_truncated_file_fails_at_once_not_as_locked(tmp_path, sfi) -> None:
    whole = write_ess(tmp_path / "whole.nxs").read_bytes()
    truncated = tmp_path / "cut.nxs"
    truncated.write_bytes(whole[: len(whole) // 3])
    finished(truncated)  # a damaged file its writer is done with (a writable one would first have to settle)
    started = time.monotonic()
    run = sfi("ingest-file", "--dry-run", "--json", str(truncated), env={"SFI_INGEST_FILE_WAIT": "30"})
    assert time.monotonic() - started < 10  # 30 s if it were waited for like a lock
    assert run.returncode == 1
    record = json.loads(run.stdout.splitlines()[0])
    assert record["status"] == "failed" and "truncated file: eof =" in record["error"], run
    assert "locked" not in record["error"] and "cannot open it yet" not in record["error"]


def test_missing_file_waits_when_asked(tmp_path, scicat_server) -> None:
    ingestor = Ingestor(cfg_for(scicat_server), None)
    missing = ingestor.ingest(str(tmp_path / "later.nxs"))
    assert missing.status == "failed" and missing.retryable and "file not found" in (missing.error or "")
    started = time.monotonic()
    late = ingestor.ingest(str(tmp_path / "later2.nxs"), wait_missing=0.3)
    assert late.status == "failed" and time.monotonic() - started >= 0.3 and "after waiting" in (late.error or "")


def test_ten_million_event_file_ingests(scicat_server, tmp_path_factory) -> None:
    path = ten_million_event_file(tmp_path_factory.getbasetemp())
    client = ScicatClient.from_config(cfg_for(scicat_server).scicat)
    try:
        result = Ingestor(cfg_for(scicat_server), client, checksum="blake2b").ingest(str(path),
                                                                                        RunInfo(job_id="j1"))
    finally:
        client.close()
    assert result.status == "created", result.error
    block = scicat_server.origdatablocks[result.pid][0]
    assert block["chkAlg"] == "blake2b" and block["size"] == path.stat().st_size > 80_000_000


# -- other modes ------------------------------------------------------------------------------------
def test_dry_run_contacts_nobody_and_prints_payloads(sfi, config_file, tmp_path) -> None:
    path = write_isis(tmp_path / "LOQ7.nxs", run_number=7)
    run = sfi("ingest-file", str(path), "--dry-run", "--checksum", "md5", "-c", str(config_file),
              env={"SFI_SCICAT_URL": "http://127.0.0.1:9/api/v3"})
    assert run.returncode == 0, run.stderr
    assert '"runNumber": "7"' in run.stdout and '"chkAlg": "md5"' in run.stdout
    as_json = sfi("ingest-file", str(path), "--dry-run", "--json", "-c", str(config_file))
    [record] = lines(as_json.stdout)
    assert record["status"] == "dry-run" and record["origdatablock"]["dataFileList"][0]["path"] == "LOQ7.nxs"


def test_explain_shows_sources(sfi, tmp_path) -> None:
    path = write_ess(tmp_path / "a.nxs", users=[])
    run = sfi("ingest-file", str(path), "--explain", "--json")
    assert run.returncode == 1  # contactEmail etc. have no source without [defaults]
    [record] = lines(run.stdout)
    fields = {f["field"]: f for f in record["fields"]}
    assert fields["datasetName"]["source"] == "nexus:/entry/title"
    assert "contactEmail" in record["missing"] and "[defaults]" in run.stderr
    table = sfi("ingest-file", str(path), "--explain", "--profile", "ess")
    assert "nexus:/entry/title" in table.stdout and "[defaults]" in table.stdout


def test_usage_and_config_errors_are_one_line(sfi, tmp_path) -> None:
    path = write_ess(tmp_path / "a.nxs")
    bad = sfi("ingest-file", str(path), "--checksum", "crc32")
    assert bad.returncode == 2 and "crc32" in bad.stderr and "Traceback" not in bad.stderr
    no_url = sfi("ingest-file", str(path))
    assert no_url.returncode == 2 and "SciCat url is not set" in no_url.stderr
    unknown = sfi("ingest-file", str(path), "--profile", "nosuch", "--dry-run")
    assert unknown.returncode == 2 and "profile 'nosuch': unknown" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
