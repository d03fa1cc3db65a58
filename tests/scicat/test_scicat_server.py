"""The SciCat test server enforces the backend's v3 rules (scicat-api.md) over real HTTP, and injects faults."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from typing import Any
from urllib.parse import quote

import pytest
import requests

from scicat_fw_ingest.testing.broker import free_port
from scicat_fw_ingest.testing.scicat_payloads import PASSWORD, USER, datablock, raw_dataset
from scicat_fw_ingest.testing.scicat_server import ScicatTestServer

Server = ScicatTestServer


def call(server: Server, method: str, path: str, body: Any = None, *, token: str | None = "valid",
         params: dict[str, str] | None = None) -> requests.Response:
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {server.token if token == 'valid' else token}"
    return requests.request(method, f"{server.url}/{path}", json=body, headers=headers, params=params, timeout=5)


def q(pid: str) -> str:
    return quote(pid, safe="")


# -- auth ----------------------------------------------------------------------------------------

def test_login_issues_a_token_that_authorises_writes(scicat_server: Server) -> None:
    resp = call(scicat_server, "POST", "auth/login", {"username": USER, "password": PASSWORD}, token=None)
    assert resp.status_code == 201
    token = resp.json()["access_token"]
    assert resp.json()["id"] == token
    created = call(scicat_server, "POST", "Datasets", raw_dataset(), token=token)
    assert created.status_code == 201, created.text
    assert scicat_server.requests[-1].user == USER


@pytest.mark.parametrize("body", [{"username": USER, "password": "wrong"}, {"username": "nobody", "password": PASSWORD},
                                  {"username": USER}, None])
def test_bad_login_is_401(scicat_server: Server, body: Any) -> None:
    resp = call(scicat_server, "POST", "auth/login", body, token=None)
    assert resp.status_code == 401
    assert resp.json()["message"] == "Unauthorized"


@pytest.mark.parametrize("path, body", [("Datasets", raw_dataset()),
                                        ("Datasets/x/origdatablocks", datablock()),
                                        ("OrigDatablocks", {**datablock(), "datasetId": "x"})])
def test_writes_without_a_token_are_403(scicat_server: Server, path: str, body: dict) -> None:
    resp = call(scicat_server, "POST", path, body, token=None)
    assert resp.status_code == 403
    assert resp.json()["error"] == "Forbidden"
    assert not scicat_server.datasets


def test_an_unknown_or_expired_token_is_401(scicat_server: Server) -> None:
    assert call(scicat_server, "POST", "Datasets", raw_dataset(), token="made-up").status_code == 401
    old = scicat_server.token
    scicat_server.expire_tokens()
    assert scicat_server.token != old
    assert call(scicat_server, "GET", "Datasets", token=old).status_code == 401


def test_unprivileged_users_may_not_choose_a_pid() -> None:
    with Server({"alice": "pw"}, unprivileged={"alice"}) as server:
        token = call(server, "POST", "auth/login", {"username": "alice", "password": "pw"}, token=None).json()["id"]
        assert call(server, "POST", "Datasets", raw_dataset("mine/1"), token=token).status_code == 403
        made = call(server, "POST", "Datasets", raw_dataset(None), token=token)
        assert made.status_code == 201


def test_a_token_in_the_query_is_accepted_but_recorded(scicat_server: Server) -> None:
    resp = requests.post(f"{scicat_server.url}/Datasets", json=raw_dataset(),
                         params={"access_token": scicat_server.token}, timeout=5)
    assert resp.status_code == 201
    assert scicat_server.requests[-1].query["access_token"] == [scicat_server.token]


# -- POST /Datasets rules ------------------------------------------------------------------------

REQUIRED = ["ownerGroup", "owner", "contactEmail", "sourceFolder", "creationTime", "principalInvestigator",
            "creationLocation", "type"]


@pytest.mark.parametrize("missing", REQUIRED)
def test_each_required_dataset_field_is_enforced(scicat_server: Server, missing: str) -> None:
    body = raw_dataset()
    del body[missing]
    resp = call(scicat_server, "POST", "Datasets", body)
    assert resp.status_code == 400
    assert f"{missing} should not be empty" in resp.json()["message"]


@pytest.mark.parametrize("change, message", [
    ({"foo": 1}, "property foo should not exist"),
    ({"validationStatus": "ok"}, "property validationStatus should not exist"),
    ({"size": "12"}, "size must be an integer number"),
    ({"numberOfFiles": 1.5}, "numberOfFiles must be an integer number"),
    ({"packedSize": True}, "packedSize must be an integer number"),
    ({"creationTime": "yesterday"}, "creationTime must be a valid ISO 8601 date string"),
    ({"creationTime": "2024-13-45T00:00:00Z"}, "creationTime must be a valid ISO 8601 date string"),
    ({"startTime": 1714557600}, "startTime must be a valid ISO 8601 date string"),
    ({"contactEmail": "nobody"}, "contactEmail must be an email"),
    ({"contactEmail": "a@b.org;nobody"}, "contactEmail must be an email"),
    ({"type": "derived"}, "type must be one of the following values: raw"),
    ({"sourceFolder": ""}, "sourceFolder should not be empty"),
    ({"keywords": "coda"}, "keywords must be an array of strings"),
    ({"scientificMetadata": [1]}, "scientificMetadata must be an object"),
    ({"runNumber": 42}, "runNumber must be a string"),
    ({"owner": 7}, "owner must be a string"),
])
def test_invalid_dataset_fields_are_400(scicat_server: Server, change: dict, message: str) -> None:
    resp = call(scicat_server, "POST", "Datasets", raw_dataset(**change))
    assert resp.status_code == 400
    assert resp.json()["error"] == "Bad Request"
    assert message in resp.json()["message"]
    assert not scicat_server.datasets


def test_a_full_valid_dataset_is_stored_as_sent(scicat_server: Server) -> None:
    body = raw_dataset(contactEmail="a@b.org; c@d.org", size=12, numberOfFiles=1, keywords=["coda"],
                       scientificMetadata={"temp": {"value": 4.2, "unit": "K"}}, startTime="2024-05-01T10:00:00+02:00",
                       endTime="2024-05-01T11:00:00.123Z", runNumber="42", proposalId="ABC123",
                       accessGroups=["ess"], sourceFolderHost="ess-fs", description="d", instrumentId="coda",
                       datasetName="run 42", isPublished=False, ownerEmail="ada@example.org")
    resp = call(scicat_server, "POST", "Datasets", body)
    assert resp.status_code == 201, resp.text
    stored = scicat_server.datasets[body["pid"]]
    assert {k: stored[k] for k in body} == body
    assert resp.json()["pid"] == body["pid"]


def test_missing_dataset_name_comes_from_the_source_folder(scicat_server: Server) -> None:
    call(scicat_server, "POST", "Datasets", raw_dataset(sourceFolder="/data/ess/2024/coda/"))
    assert scicat_server.datasets["20.500.12269/test-0001"]["datasetName"] == "2024/coda"


def test_a_duplicate_pid_is_409_with_the_real_message(scicat_server: Server) -> None:
    assert call(scicat_server, "POST", "Datasets", raw_dataset("a/b")).status_code == 201
    resp = call(scicat_server, "POST", "Datasets", raw_dataset("a/b", owner="someone else"))
    assert resp.status_code == 409
    assert resp.json()["message"] == "A dataset with pid a/b already exists!"
    assert resp.json()["error"] == "Conflict"
    assert scicat_server.datasets["a/b"]["owner"] == "Ada Lovelace"


def test_the_server_makes_a_pid_when_none_is_given() -> None:
    with Server(pid_prefix="10.999") as server:
        resp = call(server, "POST", "Datasets", raw_dataset(None))
        assert resp.status_code == 201
        assert re.fullmatch(r"10\.999/[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                            resp.json()["pid"])


def test_get_by_encoded_pid_and_by_filter(scicat_server: Server) -> None:
    pid = "20.500.12269/with slash+plus"
    call(scicat_server, "POST", "Datasets", raw_dataset(pid))
    call(scicat_server, "POST", "Datasets", raw_dataset("other", proposalId="P2"))
    assert call(scicat_server, "GET", f"Datasets/{q(pid)}").json()["pid"] == pid
    assert call(scicat_server, "GET", f"Datasets/{q('absent/pid')}").status_code == 404
    found = call(scicat_server, "GET", "Datasets", params={"filter": '{"where": {"proposalId": "P2"}}'})
    assert [d["pid"] for d in found.json()] == ["other"]
    none = call(scicat_server, "GET", "Datasets", params={"filter": '{"where": {"pid": "absent"}}'})
    assert none.status_code == 200 and none.json() == []
    assert call(scicat_server, "GET", "Datasets", params={"filter": "not json"}).status_code == 400


# -- origdatablocks ------------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    ({"dataFileList": []}, "dataFileList should not be empty"),
    ({"chkAlg": 1}, "chkAlg must be a string"),
    ({"chkAlg": ""}, "chkAlg should not be empty"),
    ({"size": "10"}, "size must be an integer number"),
    ({"checksumAlgorithm": "sha256"}, "property checksumAlgorithm should not exist"),
    ({"datasetId": "x"}, "property datasetId should not exist"),
])
def test_invalid_datablocks_are_400(scicat_server: Server, change: dict, message: str) -> None:
    call(scicat_server, "POST", "Datasets", raw_dataset("p/1"))
    resp = call(scicat_server, "POST", f"Datasets/{q('p/1')}/origdatablocks", {**datablock(), **change})
    assert resp.status_code == 400
    assert message in resp.json()["message"]
    assert "p/1" not in scicat_server.origdatablocks


@pytest.mark.parametrize("entry_change, message", [
    ({"time": None}, "dataFileList.0.time should not be empty"),
    ({"path": None}, "dataFileList.0.path should not be empty"),
    ({"size": "10"}, "dataFileList.0.size must be a number"),
    ({"time": "soon"}, "dataFileList.0.time must be a valid ISO 8601 date string"),
    ({"uid": 1000}, "dataFileList.0.uid must be a string"),
    ({"mtime": 1}, "property dataFileList.0.mtime should not exist"),
])
def test_invalid_datafile_entries_are_400(scicat_server: Server, entry_change: dict, message: str) -> None:
    call(scicat_server, "POST", "Datasets", raw_dataset("p/1"))
    body = datablock()
    entry = {k: v for k, v in {**body["dataFileList"][0], **entry_change}.items() if v is not None}
    resp = call(scicat_server, "POST", f"Datasets/{q('p/1')}/origdatablocks", {**body, "dataFileList": [entry]})
    assert resp.status_code == 400
    assert message in resp.json()["message"]


def test_a_datablock_for_an_unknown_dataset_is_404(scicat_server: Server) -> None:
    assert call(scicat_server, "POST", f"Datasets/{q('no/such')}/origdatablocks", datablock()).status_code == 404
    resp = call(scicat_server, "POST", "OrigDatablocks", {**datablock(), "datasetId": "no/such"})
    assert resp.status_code == 404
    assert call(scicat_server, "GET", f"Datasets/{q('no/such')}/origdatablocks").status_code == 404


def test_the_flat_route_needs_a_dataset_id(scicat_server: Server) -> None:
    call(scicat_server, "POST", "Datasets", raw_dataset("p/1"))
    resp = call(scicat_server, "POST", "OrigDatablocks", datablock())
    assert resp.status_code == 400
    assert "datasetId should not be empty" in resp.json()["message"]
    ok = call(scicat_server, "POST", "OrigDatablocks", {**datablock(), "datasetId": "p/1"})
    assert ok.status_code == 201
    assert ok.json()["datasetId"] == "p/1"


@pytest.mark.parametrize("created_with, expected", [({"size": 10, "numberOfFiles": 1}, (20, 2)),
                                                   ({}, (10, 1)), ({"size": 0, "numberOfFiles": 0}, (10, 1))])
def test_datablocks_add_their_size_and_file_count(scicat_server: Server, created_with: dict,
                                                  expected: tuple[int, int]) -> None:
    call(scicat_server, "POST", "Datasets", raw_dataset("p/1", **created_with))
    resp = call(scicat_server, "POST", f"Datasets/{q('p/1')}/origdatablocks", datablock(10))
    assert resp.status_code == 201
    doc = call(scicat_server, "GET", f"Datasets/{q('p/1')}").json()
    assert (doc["size"], doc["numberOfFiles"]) == expected
    call(scicat_server, "POST", f"Datasets/{q('p/1')}/origdatablocks", datablock(5, 7))
    doc = call(scicat_server, "GET", f"Datasets/{q('p/1')}").json()
    assert (doc["size"], doc["numberOfFiles"]) == (expected[0] + 12, expected[1] + 2)
    blocks = call(scicat_server, "GET", f"Datasets/{q('p/1')}/origdatablocks").json()
    assert [b["size"] for b in blocks] == [10, 12]
    assert all(b["chkAlg"] == "sha256" and b["ownerGroup"] == "ess" for b in blocks)


# -- faults --------------------------------------------------------------------------------------

def test_fail_next_answers_matching_requests_then_stops(scicat_server: Server) -> None:
    scicat_server.fail_next(2, 503, path_contains="origdatablocks", method="POST")
    assert call(scicat_server, "POST", "Datasets", raw_dataset("p/1")).status_code == 201
    path = f"Datasets/{q('p/1')}/origdatablocks"
    assert [call(scicat_server, "POST", path, datablock()).status_code for _ in range(3)] == [503, 503, 201]
    scicat_server.fail_next(1, 429, retry_after=2)
    resp = call(scicat_server, "GET", "Datasets")
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "2"


def test_slow_and_drop(scicat_server: Server) -> None:
    scicat_server.slow(0.3)
    started = time.perf_counter()
    call(scicat_server, "GET", "Datasets")
    assert time.perf_counter() - started >= 0.3
    scicat_server.slow(0)
    scicat_server.drop_next(1)
    with pytest.raises(requests.ConnectionError):
        call(scicat_server, "POST", "Datasets", raw_dataset("p/1"))
    assert not scicat_server.datasets
    scicat_server.drop_next(1, after=True)
    with pytest.raises(requests.ConnectionError):
        call(scicat_server, "POST", "Datasets", raw_dataset("p/1"))
    assert "p/1" in scicat_server.datasets


def test_refuse_and_resume_on_the_same_port(scicat_server: Server) -> None:
    call(scicat_server, "POST", "Datasets", raw_dataset("p/1"))
    url = scicat_server.url
    scicat_server.refuse()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/Datasets", timeout=2)
    scicat_server.resume()
    assert scicat_server.url == url
    assert call(scicat_server, "GET", f"Datasets/{q('p/1')}").status_code == 200


def test_unknown_routes_are_404(scicat_server: Server) -> None:
    assert call(scicat_server, "GET", "Nothing").status_code == 404
    assert requests.get(scicat_server.url.replace("/api/v3", "/api/v9/Datasets"), timeout=5).status_code == 404


def test_runs_in_the_foreground_from_the_command_line() -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "scicat_fw_ingest.testing.scicat_server", "--port", str(port),
                             "--user", "op:secret", "--token", "tok-123"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url_line, token_line = proc.stdout.readline(), proc.stdout.readline()
        assert url_line.strip() == f"url: http://127.0.0.1:{port}/api/v3"
        assert token_line.strip() == "token: tok-123"
        url = f"http://127.0.0.1:{port}/api/v3"
        login = requests.post(f"{url}/auth/login", json={"username": "op", "password": "secret"}, timeout=5)
        assert login.status_code == 201
        resp = requests.post(f"{url}/Datasets", json=raw_dataset(), headers={"Authorization": "Bearer tok-123"},
                             timeout=5)
        assert resp.status_code == 201
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- acting as a backend version, read rights, v4 (as observed on the real backends) ----------------------
@pytest.mark.parametrize("version", ["5.1.0", "4.5.0"])
def test_an_expired_token_as_each_backend_version(version: str) -> None:
    with Server({"admin": "a", USER: PASSWORD}, version=version, admins={"admin"}) as server:
        token = server.token
        assert call(server, "POST", "Datasets", raw_dataset("v/1"), token=token).status_code == 201
        server.expire_tokens()
        write = call(server, "POST", "Datasets", raw_dataset("v/2"), token=token)
        read = call(server, "GET", f"Datasets/{q('v/1')}", token=token)
        listed = call(server, "GET", "Datasets", token=token)
    if version == "5.1.0":
        assert (write.status_code, read.status_code) == (401, 401) and write.json()["message"] == "SESSION_EXPIRED"
    else:  # 4.5.0: a write is 403, a read is answered as for an anonymous caller
        assert (write.status_code, read.status_code, listed.status_code) == (403, 403, 200)
        assert listed.json() == []


def test_a_non_admin_reads_only_its_groups_datasets() -> None:
    with Server({"admin": "a", USER: PASSWORD}, admins={"admin"}) as server:
        token = call(server, "POST", "auth/login", {"username": USER, "password": PASSWORD}, token=None).json()["id"]
        assert call(server, "POST", "Datasets", raw_dataset("r/1"), token=token).status_code == 201
        assert call(server, "POST", "Datasets", raw_dataset("r/2", accessGroups=[USER]), token=token).status_code == 201
        assert call(server, "GET", f"Datasets/{q('r/1')}", token=token).status_code == 403
        assert call(server, "GET", f"Datasets/{q('r/1')}/origdatablocks", token=token).status_code == 403
        assert call(server, "GET", f"Datasets/{q('r/2')}", token=token).status_code == 200
        assert [d["pid"] for d in call(server, "GET", "Datasets", token=token).json()] == ["r/2"]
        # the v3 nested route accepts its datablock; v4's route refuses a dataset outside its groups
        assert call(server, "POST", f"Datasets/{q('r/1')}/origdatablocks", datablock(), token=token).status_code == 201
        v4 = requests.post(server.url.replace("/api/v3", "/api/v4") + "/origdatablocks",
                           json={**datablock(), "datasetId": "r/1"}, headers={"Authorization": f"Bearer {token}"},
                           timeout=5)
        assert v4.status_code == 403


def test_v4_dataset_dto_rules(scicat_server: Server) -> None:
    v4 = scicat_server.url.replace("/api/v3", "/api/v4")
    headers = {"Authorization": f"Bearer {scicat_server.token}"}
    body = raw_dataset("v4/x")
    assert requests.post(f"{v4}/datasets", json=body, headers=headers, timeout=5).status_code == 400
    plural = {**{k: v for k, v in body.items() if k != "principalInvestigator"},
              "principalInvestigators": ["A"], "datasetName": "x"}
    no_owner = {k: v for k, v in plural.items() if k != "owner"}
    assert requests.post(f"{v4}/datasets", json=no_owner, headers=headers, timeout=5).status_code == 500
    assert requests.post(f"{v4}/datasets", json=plural, headers=headers, timeout=5).status_code == 201
    assert requests.post(f"{v4}/datasets", json=plural, headers=headers, timeout=5).status_code == 409


def test_a_5xx_after_the_request_took_effect(scicat_server: Server) -> None:
    assert call(scicat_server, "POST", "Datasets", raw_dataset("f/1")).status_code == 201
    scicat_server.fail_next(1, 502, path_contains="origdatablocks", after=True)
    assert call(scicat_server, "POST", f"Datasets/{q('f/1')}/origdatablocks", datablock()).status_code == 502
    assert len(scicat_server.origdatablocks["f/1"]) == 1


def test_deleting_a_datablock_is_for_admins_and_takes_its_size_off_the_dataset(tmp_path) -> None:
    """As both real backends: DELETE OrigDatablocks/{id} (or the nested route) — 403 for the non-admin, and the
    client's repair of duplicate identical datablocks works against the test server too."""
    from scicat_fw_ingest.scicat import ScicatClient

    with Server({"admin": "a", USER: PASSWORD}, admins={"admin"}, token_life=3600) as server:  # a token per login
        admin = call(server, "POST", "auth/login", {"username": "admin", "password": "a"}, token=None).json()["id"]
        user = call(server, "POST", "auth/login", {"username": USER, "password": PASSWORD}, token=None).json()["id"]
        assert call(server, "POST", "Datasets", raw_dataset("d/1"), token=admin).status_code == 201
        ids = [call(server, "POST", f"Datasets/{q('d/1')}/origdatablocks", datablock(10), token=admin).json()["_id"]
               for _ in range(3)]
        assert call(server, "DELETE", f"OrigDatablocks/{ids[0]}", token=user).status_code == 403
        assert call(server, "DELETE", f"OrigDatablocks/{ids[0]}", token=admin).status_code == 200
        assert call(server, "GET", f"Datasets/{q('d/1')}", token=admin).json()["size"] == 20
        client = ScicatClient(server.url, username="admin", password="a", lock_dir=tmp_path / "locks", backoff=0.01)
        try:
            assert client.upsert(raw_dataset("d/1"), datablock(10)) == "repaired"
        finally:
            client.close()
        assert len(server.origdatablocks["d/1"]) == 1
        doc = server.datasets["d/1"]
        assert (doc["size"], doc["numberOfFiles"]) == (10, 1)
