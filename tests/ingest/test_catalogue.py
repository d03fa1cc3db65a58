"""The local catalogue sink and ``sfi push-catalogue``: real files, real threads, the SciCat test server over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from scicat_fw_ingest.catalogue import (
    DATABLOCK_FILE,
    DATASET_FILE,
    CatalogueDir,
    CatalogueError,
    dataset_dirname,
    push_catalogue,
)
from scicat_fw_ingest.scicat import ScicatClient
from scicat_fw_ingest.testing.scicat_server import ScicatTestServer
from scicat_fw_ingest.testing.sfi_process import sigint_as_from_a_terminal


def make_docs(pid: str, *, size: int = 1234) -> tuple[dict, dict]:
    """A dataset and datablock body in the shape the ingest core sends (valid for the v3 rules)."""
    name = pid.rsplit("/", 1)[-1]
    dataset = {
        "pid": pid, "type": "raw", "owner": "ess", "ownerGroup": "ess", "accessGroups": ["loki"],
        "contactEmail": "pi@example.org", "principalInvestigator": "A. Scientist",
        "sourceFolder": f"/data/loki/2026/{name}", "creationLocation": "ESS:LOKI",
        "creationTime": "2026-11-21T10:00:00Z", "datasetName": f"run {name}",
        "scientificMetadata": {"run_number": {"value": 42, "unit": ""}, "note": "ünïcode \"quoted\""},
    }
    datablock = {
        "size": size, "chkAlg": "sha256",
        "dataFileList": [{"path": f"{name}.nxs", "size": size, "time": "2026-11-21T10:05:00Z",
                          "chk": "ab" * 32}],
    }
    return dataset, datablock


@pytest.fixture
def catalogue(tmp_path: Path) -> CatalogueDir:
    return CatalogueDir(tmp_path / "catalogue")


@pytest.fixture
def scicat() -> Iterator[ScicatTestServer]:
    with ScicatTestServer() as server:
        yield server


def fill(catalogue: CatalogueDir, n: int) -> list[str]:
    pids = [f"20.500.12269/run-{i:04d}" for i in range(n)]
    for pid in pids:
        assert catalogue.upsert(*make_docs(pid)) == "created"
    return pids


def client_for(server: ScicatTestServer) -> ScicatClient:
    return ScicatClient(server.url, token=server.token, timeout=5, max_attempts=2, backoff=0.01)


# -- upsert semantics ---------------------------------------------------------------------------------

def test_upsert_created_then_exists_and_documents_are_exact(catalogue: CatalogueDir) -> None:
    dataset, datablock = make_docs("20.500.12269/abc-1")
    assert catalogue.upsert(dataset, datablock) == "created"
    assert catalogue.get_dataset("20.500.12269/abc-1") == dataset
    assert catalogue.get_origdatablocks("20.500.12269/abc-1") == [datablock]
    directory = catalogue.path / dataset_dirname("20.500.12269/abc-1")
    assert json.loads((directory / DATASET_FILE).read_text("utf-8")) == dataset
    assert json.loads((directory / DATABLOCK_FILE).read_text("utf-8")) == datablock
    # a second upsert, even with another body, keeps the first (as SciCat answers 409)
    other, other_block = make_docs("20.500.12269/abc-1", size=1)
    assert catalogue.upsert(other, other_block) == "exists"
    assert catalogue.get_origdatablocks("20.500.12269/abc-1") == [datablock]


def test_unknown_pid_reads_as_absent(catalogue: CatalogueDir) -> None:
    assert catalogue.get_dataset("nope/1") is None
    assert catalogue.get_origdatablocks("nope/1") == []


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_missing_or_broken_datablock_is_repaired(catalogue: CatalogueDir, damage: str) -> None:
    dataset, datablock = make_docs("p/1")
    catalogue.upsert(dataset, datablock)
    path = catalogue.path / dataset_dirname("p/1") / DATABLOCK_FILE
    if damage == "delete":
        path.unlink()
        assert catalogue.get_origdatablocks("p/1") == []
    else:
        path.write_text(path.read_text()[:20])
        with pytest.raises(CatalogueError, match="not valid JSON"):
            catalogue.get_origdatablocks("p/1")
    assert catalogue.upsert(dataset, datablock) == "repaired"
    assert catalogue.get_origdatablocks("p/1") == [datablock]
    assert catalogue.upsert(dataset, datablock) == "exists"


def test_missing_dataset_document_is_repaired(catalogue: CatalogueDir) -> None:
    dataset, datablock = make_docs("p/2")
    catalogue.upsert(dataset, datablock)
    (catalogue.path / dataset_dirname("p/2") / DATASET_FILE).unlink()
    assert catalogue.get_dataset("p/2") is None
    assert catalogue.upsert(dataset, datablock) == "repaired"
    assert catalogue.get_dataset("p/2") == dataset


def test_upsert_without_pid_or_with_unstorable_values_is_refused(catalogue: CatalogueDir) -> None:
    dataset, datablock = make_docs("p/3")
    del dataset["pid"]
    with pytest.raises(ValueError, match="pid"):
        catalogue.upsert(dataset, datablock)
    dataset, datablock = make_docs("p/3")
    dataset["scientificMetadata"]["bad"] = float("nan")
    with pytest.raises(CatalogueError, match="dataset p/3: cannot be stored as JSON"):
        catalogue.upsert(dataset, datablock)
    assert catalogue.get_dataset("p/3") is None


def test_directory_names_are_safe_and_distinct() -> None:
    pids = ["10.1/ABC", "10.1/abc", "10.1_abc", "10.1/abc/", "../../etc/passwd", "", ".", "x" * 400,
            "x" * 400 + "y", "pid with spaces/and/slashes", "ünï/cødé"]
    names = [dataset_dirname(p) for p in pids]
    assert len(set(names)) == len(pids)
    assert len({n.lower() for n in names}) == len(pids)  # case-insensitive file systems too
    for name in names:
        assert "/" not in name and not name.startswith(".") and len(name.encode()) < 120
    assert dataset_dirname("20.500.12269/abc").startswith("20.500.12269_abc--")


def test_catalogue_path_that_is_a_file_or_missing_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(CatalogueError, match="is not a directory"):
        CatalogueDir(tmp_path / "file")
    with pytest.raises(CatalogueError, match="not found"):
        CatalogueDir(tmp_path / "absent", create=False)
    catalogue = CatalogueDir(tmp_path / "cat")
    catalogue.ping()
    catalogue.path.rmdir()
    with pytest.raises(CatalogueError, match="not found"):
        catalogue.ping()


# -- atomicity and concurrency ------------------------------------------------------------------------

def test_writes_leave_no_temporary_files(catalogue: CatalogueDir) -> None:
    fill(catalogue, 5)
    leftovers = [p for p in catalogue.path.rglob("*") if p.is_file() and p.name not in (DATASET_FILE, DATABLOCK_FILE)]
    assert leftovers == []
    assert len(list(catalogue.path.iterdir())) == 5


def test_concurrent_upserts_create_each_dataset_once(catalogue: CatalogueDir) -> None:
    pids = [f"c/{i}" for i in range(25)]
    outcomes: Counter[tuple[str, str]] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            barrier.wait()
            for pid in pids[seed % 5:] + pids[:seed % 5]:
                outcome = catalogue.upsert(*make_docs(pid))
                with lock:
                    outcomes[(pid, outcome)] += 1
        except BaseException as exc:  # surfaced below: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for pid in pids:
        assert outcomes[(pid, "created")] == 1
        assert outcomes[(pid, "exists")] == 7
    assert [pid for pid, _, _ in catalogue.iter_documents()] == sorted(pids, key=dataset_dirname)


_KILL_WRITER = textwrap.dedent("""
    import sys
    from scicat_fw_ingest.catalogue import CatalogueDir
    catalogue = CatalogueDir(sys.argv[1])
    print("ready", flush=True)
    i = 0
    while True:
        entry = {"path": f"{i}.nxs", "size": i, "time": "2026-11-21T10:05:00Z", "chk": "ab" * 32}
        # ~40 kB documents, so that a kill often lands in the middle of a write
        catalogue.upsert({"pid": f"k/{i}", "type": "raw", "blob": "x" * 40000}, {"size": i, "dataFileList": [entry]})
        i += 1
""")


def test_kill_9_never_leaves_a_half_written_document(catalogue: CatalogueDir) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _KILL_WRITER, str(catalogue.path)], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    time.sleep(0.4)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    entries = list(catalogue.entries())
    assert len(entries) > 3
    for entry in entries:  # whole documents only; at most the datablock of the last one is missing
        assert entry.error is None or entry.error.endswith("(the dataset was stored but its datablock not)"), \
            entry.error
    incomplete = [e for e in entries if e.error]
    assert len(incomplete) <= 1
    # the listener's re-delivery repairs the last one and sweeps the temp files of the killed writer
    outcomes = Counter(catalogue.upsert({"pid": f"k/{i}", "type": "raw", "blob": "x" * 40000},
                                        {"size": i, "dataFileList": []})
                       for i in range(len(list(catalogue.path.iterdir()))))
    assert outcomes["repaired"] == len(incomplete) and outcomes["exists"] == len(entries) - len(incomplete)
    assert all(e.error is None for e in catalogue.entries())
    assert [p for p in catalogue.path.rglob(".*") if p.is_file()] == []


# -- push into SciCat -----------------------------------------------------------------------------------

def test_push_creates_all_then_reports_exists(catalogue: CatalogueDir, scicat: ScicatTestServer) -> None:
    pids = fill(catalogue, 6)
    client = client_for(scicat)
    try:
        first = push_catalogue(catalogue.path, client)
        assert [(r.pid, r.status, r.error) for r in first] == [(p, "created", None) for p in pids]
        for pid in pids:
            dataset, datablock = make_docs(pid)
            stored = scicat.datasets[pid]
            assert {k: stored[k] for k in dataset if k not in ("size", "numberOfFiles")} == dataset
            blocks = scicat.origdatablocks[pid]
            assert len(blocks) == 1 and blocks[0]["dataFileList"] == datablock["dataFileList"]
        second = push_catalogue(catalogue, client)
        assert [r.status for r in second] == ["exists"] * 6
        assert all(len(scicat.origdatablocks[p]) == 1 for p in pids)
    finally:
        client.close()
    assert scicat.requests
    for request in scicat.requests:  # the token travels in the Authorization header only
        assert scicat.token not in request.path and scicat.token not in json.dumps(request.query)
        assert request.headers.get("Authorization") == f"Bearer {scicat.token}"


def test_push_repairs_a_dataset_without_datablock_in_scicat(catalogue: CatalogueDir,
                                                            scicat: ScicatTestServer) -> None:
    (pid,) = fill(catalogue, 1)
    client = client_for(scicat)
    try:
        dataset, _ = make_docs(pid)
        # an earlier push died between the dataset and its datablock
        request = urllib.request.Request(f"{scicat.url}/Datasets", data=json.dumps(dataset).encode(), method="POST",
                                         headers={"Authorization": f"Bearer {scicat.token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 201
        assert [r.status for r in push_catalogue(catalogue, client)] == ["repaired"]
    finally:
        client.close()
    assert len(scicat.origdatablocks[pid]) == 1


def test_push_reports_a_corrupt_document_and_goes_on(catalogue: CatalogueDir, scicat: ScicatTestServer) -> None:
    pids = fill(catalogue, 3)
    broken = catalogue.path / dataset_dirname(pids[1]) / DATASET_FILE
    broken.write_text(broken.read_text()[:40])
    no_block = catalogue.path / dataset_dirname(pids[2]) / DATABLOCK_FILE
    no_block.unlink()
    client = client_for(scicat)
    try:
        results = {r.path: r for r in push_catalogue(catalogue, client)}
    finally:
        client.close()
    assert results[str(broken.parent)].status == "failed"
    broken_error, no_block_error = results[str(broken.parent)].error or "", results[str(no_block.parent)].error or ""
    assert str(broken) in broken_error and "not valid JSON" in broken_error
    assert results[str(no_block.parent)].status == "failed" and str(no_block) in no_block_error
    assert results[str(no_block.parent)].pid == pids[2]
    assert results[str(catalogue.path / dataset_dirname(pids[0]))].status == "created"
    assert list(scicat.datasets) == [pids[0]]
    with pytest.raises(CatalogueError, match="not valid JSON"):
        list(catalogue.iter_documents())


def test_push_rejected_by_scicat_is_failed_with_the_reason(catalogue: CatalogueDir, scicat: ScicatTestServer) -> None:
    dataset, datablock = make_docs("bad/1")
    dataset["numberOfFiles"] = "12"  # the server wants an integer: 400
    catalogue.upsert(dataset, datablock)
    fill(catalogue, 1)
    client = client_for(scicat)
    try:
        results = {r.pid: r for r in push_catalogue(catalogue, client)}
    finally:
        client.close()
    bad_error = results["bad/1"].error or ""
    assert results["bad/1"].status == "failed" and "400" in bad_error
    assert "numberOfFiles must be an integer" in bad_error
    assert results["20.500.12269/run-0000"].status == "created"


# -- the command ----------------------------------------------------------------------------------------

def scicat_env(server: ScicatTestServer) -> dict[str, str]:
    return {"SFI_SCICAT_URL": server.url, "SFI_SCICAT_TOKEN": server.token, "SFI_SCICAT_BACKOFF": "0.01",
            "SFI_SCICAT_MAX_ATTEMPTS": "2", "SFI_SCICAT_TIMEOUT": "5"}


def test_cli_push_summary_then_json_exists(sfi, catalogue: CatalogueDir, scicat: ScicatTestServer) -> None:
    pids = fill(catalogue, 4)
    first = sfi("push-catalogue", str(catalogue.path), env=scicat_env(scicat))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"4 dataset(s) pushed from {catalogue.path}: 4 created"
    assert sorted(scicat.datasets) == pids
    second = sfi("push-catalogue", str(catalogue.path), "--json", env=scicat_env(scicat))
    assert second.returncode == 0, second.stderr
    rows = [json.loads(line) for line in second.stdout.splitlines()]
    assert [(r["pid"], r["status"], r["error"]) for r in rows] == [(p, "exists", None) for p in pids]
    assert scicat.token not in first.stdout + first.stderr + second.stdout + second.stderr


def test_cli_scicat_url_flag_and_failures_exit_1(sfi, catalogue: CatalogueDir, scicat: ScicatTestServer) -> None:
    pids = fill(catalogue, 2)
    broken = catalogue.path / dataset_dirname(pids[0]) / DATABLOCK_FILE
    broken.write_text("{")
    env = {"SFI_SCICAT_URL": "http://127.0.0.1:9/api/v3", "SFI_SCICAT_TOKEN": scicat.token}
    run = sfi("push-catalogue", str(catalogue.path), "--scicat-url", scicat.url, "--json", env=env)
    assert run.returncode == 1
    rows = {r["pid"]: r for r in map(json.loads, run.stdout.splitlines())}
    assert rows[pids[0]]["status"] == "failed" and str(broken) in rows[pids[0]]["error"]
    assert rows[pids[1]]["status"] == "created"
    plain = sfi("push-catalogue", str(catalogue.path), "--scicat-url", scicat.url, env=env)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert f"push-catalogue: {pids[0]}: {broken}: not valid JSON" in plain.stderr
    assert plain.stdout.strip().endswith("1 exists, 1 failed")


def test_cli_unreachable_scicat_fails_fast_for_the_rest(sfi, catalogue: CatalogueDir,
                                                        scicat: ScicatTestServer) -> None:
    fill(catalogue, 3)
    scicat.refuse()
    run = sfi("push-catalogue", str(catalogue.path), "--json", env=scicat_env(scicat))
    assert run.returncode == 1
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["status"] for r in rows] == ["failed"] * 3
    assert "Connection refused" in rows[0]["error"]
    assert all(r["error"].startswith("not tried: ") for r in rows[1:])


def test_cli_dry_run_contacts_nobody(sfi, catalogue: CatalogueDir, scicat: ScicatTestServer) -> None:
    fill(catalogue, 2)
    run = sfi("push-catalogue", str(catalogue.path), "--dry-run", "--json")  # no SciCat configured at all
    assert run.returncode == 0, run.stderr
    assert [json.loads(line)["status"] for line in run.stdout.splitlines()] == ["ready", "ready"]
    assert scicat.requests == [] and scicat.datasets == {}


def test_cli_bad_input_is_one_line(sfi, tmp_path: Path, catalogue: CatalogueDir) -> None:
    fill(catalogue, 1)
    no_url = sfi("push-catalogue", str(catalogue.path))
    assert no_url.returncode == 2
    assert no_url.stderr.strip().splitlines() == [
        "sfi: error: SciCat url is not set: [scicat] url in the config file, or SFI_SCICAT_URL"]
    no_token = sfi("push-catalogue", str(catalogue.path), "--scicat-url", "http://127.0.0.1:9/api/v3")
    assert no_token.returncode == 2 and "credentials are not set" in no_token.stderr
    assert len(no_token.stderr.strip().splitlines()) == 1
    missing = sfi("push-catalogue", str(tmp_path / "absent"))
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [f"sfi: error: push-catalogue: {tmp_path / 'absent'}: not found"]
    empty = tmp_path / "empty"
    empty.mkdir()
    run = sfi("push-catalogue", str(empty), "--dry-run")
    assert run.returncode == 0 and "nothing to push" in run.stdout


def test_push_catalogue_ctrl_c_says_what_was_done_and_exits_130(catalogue: CatalogueDir, scicat) -> None:
    fill(catalogue, 30)
    scicat.slow(0.2)
    base = {k: v for k, v in os.environ.items() if not k.startswith("SFI_")}
    proc = subprocess.Popen([sys.executable, "-m", "scicat_fw_ingest", "push-catalogue", str(catalogue.path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**base, **scicat_env(scicat)}, start_new_session=True,
                            preexec_fn=sigint_as_from_a_terminal)
    deadline = time.monotonic() + 30
    while len(scicat.origdatablocks) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # two datasets complete: at least one result is counted, the push is under way
    os.killpg(proc.pid, signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=15)
    finally:
        scicat.slow(0)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err
    [line] = [x for x in err.splitlines() if "interrupted:" in x]
    done = int(line.split("interrupted: ")[1].split()[0])
    assert 0 < done < 30 and f"{done} dataset(s) pushed" in out
