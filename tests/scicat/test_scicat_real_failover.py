"""Convergence on the REAL backend (both versions, API v3 and v4): a dataset that got duplicate identical
datablocks — a POST the server stored later than every wait, posted again by another host — is repaired by
the next look: extras deleted, the dataset's size and file count exact. And the non-admin account: with
``[scicat] access_group`` it can read back what it created (the look that prevents duplicates across hosts),
but it may not delete, so a duplicate it finds is a clear permanent failure, never "exists".

Facts these rest on (seen on 4.5.0 and 5.1.0): DELETE of an origdatablock (v3 nested, v3 flat, v4) takes its
size and file count off the dataset; only DELETE_GROUPS (admin) may delete or PATCH; the ingestor account reads
a dataset whose accessGroups hold one of its groups ("ingestor"), v4 datablock POSTs stay 403 for it.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from scicat_fw_ingest.scicat import ScicatClient, ScicatError, pid_path
from scicat_fw_ingest.testing.backend import RealBackend
from scicat_fw_ingest.testing.failover import blocks_and_size
from scicat_fw_ingest.testing.fault_proxy import FaultProxy
from scicat_fw_ingest.testing.scicat_payloads import datablock, raw_dataset

API = ["v3", "v4"]


def fresh_pid() -> str:
    return f"sfi-failover/{uuid.uuid4()}"


def client(url: str, api: str, locks: Path, user: str = "admin", **kw: object) -> ScicatClient:
    password = {"admin": "adminpass", "ingestor": "ingestorpass"}[user]
    options: dict = {"timeout": 5.0, "backoff": 0.05, "grace": 0.5, **kw}
    return ScicatClient(url, username=user, password=password, api=api, lock_dir=locks, **options)


@pytest.mark.parametrize("api", API)
def test_duplicate_identical_datablocks_are_repaired(real_scicat: RealBackend, api: str, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    pid = fresh_pid()
    assert real_scicat.request("POST", "/api/v3/Datasets", raw_dataset(pid))[0] == 201
    for _ in range(3):  # what two or three hosts' POSTs stored late leave behind
        assert real_scicat.request("POST", f"/api/v3/Datasets/{pid_path(pid)}/origdatablocks", datablock(777))[0] == 201
    assert blocks_and_size(real_scicat, pid) == (3, 3 * 777, 3)
    c = client(real_scicat.base + f"/api/{api}", api, tmp_path / "locks")
    try:
        with caplog.at_level(logging.WARNING, logger="sfi.scicat"):
            assert c.upsert(raw_dataset(pid), datablock(777)) == "repaired"
        assert c.upsert(raw_dataset(pid), datablock(777)) == "exists"
    finally:
        c.close()
    assert blocks_and_size(real_scicat, pid) == (1, 777, 1)
    lines = [r.getMessage() for r in caplog.records if "identical datablocks" in r.getMessage()]
    assert len(lines) == 1 and "deleted 2 duplicate(s)" in lines[0] and "2331 -> 777" in lines[0], lines


def test_different_datablocks_are_left_alone(real_scicat: RealBackend, tmp_path: Path) -> None:
    pid = fresh_pid()
    assert real_scicat.request("POST", "/api/v3/Datasets", raw_dataset(pid))[0] == 201
    for size in (100, 200):  # not duplicates: an operator decides
        route = f"/api/v3/Datasets/{pid_path(pid)}/origdatablocks"
        assert real_scicat.request("POST", route, datablock(size))[0] == 201
    c = client(real_scicat.url, "v3", tmp_path / "locks")
    try:
        assert c.upsert(raw_dataset(pid), datablock(100)) == "exists"
    finally:
        c.close()
    assert blocks_and_size(real_scicat, pid) == (2, 300, 2)


@pytest.mark.parametrize("api", API)
def test_a_post_stored_later_than_every_wait_is_flagged_then_repaired(real_scicat: RealBackend, api: str,
                                                                      tmp_path: Path) -> None:
    """The server stores the first datablock POST 4 s late (client timeout 1 s, grace 0.5 s): the client looks,
    finds nothing and posts again — the late one lands too. ``upsert_uncertain`` says so; the next look (the
    listener's verification, here from another host's lock directory) repairs it."""
    pid = fresh_pid()
    with FaultProxy(real_scicat.base) as proxy:
        proxy.hold(4.0, path_contains="rigdatablocks", method="POST")
        c = client(proxy.url.replace("/api/v3", f"/api/{api}"), api, tmp_path / "host-a", timeout=1.0)
        try:
            assert c.upsert(raw_dataset(pid), datablock(4321)) in ("created", "repaired")
            assert c.upsert_uncertain()
        finally:
            c.close()
        import time

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and blocks_and_size(real_scicat, pid)[0] < 2:
            time.sleep(0.2)
        assert blocks_and_size(real_scicat, pid)[0] == 2  # the late one landed: a duplicate
        other = client(proxy.url.replace("/api/v3", f"/api/{api}"), api, tmp_path / "host-b")
        try:
            assert other.upsert(raw_dataset(pid), datablock(4321)) == "repaired"
            assert not other.upsert_uncertain()
        finally:
            other.close()
    assert blocks_and_size(real_scicat, pid) == (1, 4321, 1)


@pytest.mark.parametrize("api", API)
def test_the_ingestor_account_reads_back_with_its_access_group(real_scicat: RealBackend, api: str,
                                                               tmp_path: Path) -> None:
    pid = fresh_pid()
    url = real_scicat.base + f"/api/{api}"
    host_a = client(url, api, tmp_path / "host-a", user="ingestor", access_group="ingestor")
    host_b = client(url, api, tmp_path / "host-b", user="ingestor", access_group="ingestor")
    try:
        assert host_a.upsert(raw_dataset(pid, accessGroups=["dream"]), datablock(55)) == "created"
        assert host_b.get_dataset(pid) is not None  # it can look: a takeover finds the datablock
        assert len(host_b.get_origdatablocks(pid)) == 1
        assert host_b.upsert(raw_dataset(pid, accessGroups=["dream"]), datablock(55)) == "exists"
    finally:
        host_a.close()
        host_b.close()
    status, doc = real_scicat.request("GET", f"/api/v3/Datasets/{pid_path(pid)}")
    assert status == 200 and isinstance(doc, dict) and doc["accessGroups"] == ["dream", "ingestor"]
    assert blocks_and_size(real_scicat, pid) == (1, 55, 1)


def test_the_ingestor_account_cannot_delete_a_duplicate_and_says_so(real_scicat: RealBackend, tmp_path: Path) -> None:
    pid = fresh_pid()
    assert real_scicat.request("POST", "/api/v3/Datasets", raw_dataset(pid, accessGroups=["ingestor"]))[0] == 201
    for _ in range(2):
        assert real_scicat.request("POST", f"/api/v3/Datasets/{pid_path(pid)}/origdatablocks", datablock(9))[0] == 201
    c = client(real_scicat.url, "v3", tmp_path / "locks", user="ingestor", access_group="ingestor")
    try:
        with pytest.raises(ScicatError) as err:
            c.upsert(raw_dataset(pid), datablock(9))
    finally:
        c.close()
    assert "2 identical datablocks" in str(err.value) and "DELETE_GROUPS" in str(err.value)
    assert not err.value.retryable
    assert blocks_and_size(real_scicat, pid) == (2, 18, 2)


@pytest.mark.parametrize("api", API)
def test_converge_looks_without_a_datablock_and_repairs(real_scicat: RealBackend, api: str, tmp_path: Path) -> None:
    """The listener's verification: one look (no file read) — "exists", "repaired", "missing" or "hidden"."""
    pid = fresh_pid()
    url = real_scicat.base + f"/api/{api}"
    c = client(url, api, tmp_path / "locks")
    ingestor = client(url, api, tmp_path / "locks-i", user="ingestor")
    try:
        assert c.converge(pid) == "missing"
        assert real_scicat.request("POST", "/api/v3/Datasets", raw_dataset(pid))[0] == 201
        assert c.converge(pid) == "missing"  # a dataset without its datablock: the full upsert adds it
        for _ in range(2):
            route = f"/api/v3/Datasets/{pid_path(pid)}/origdatablocks"
            assert real_scicat.request("POST", route, datablock(31))[0] == 201
        assert ingestor.converge(pid) == "hidden"  # not in the dataset's groups
        assert c.converge(pid) == "repaired"
        assert c.converge(pid) == "exists"
    finally:
        c.close()
        ingestor.close()
    assert blocks_and_size(real_scicat, pid) == (1, 31, 1)
