"""The SciCat client against the real-HTTP test server: token hygiene, retries, idempotent upsert, threads."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from scicat_fw_ingest.config import load_config
from scicat_fw_ingest.errors import ConfigError
from scicat_fw_ingest.scicat import ScicatClient, ScicatError, pid_path, sanitize_dataset, split_url
from scicat_fw_ingest.scicat._journal import PidJournal
from scicat_fw_ingest.scicat.v4 import V4
from scicat_fw_ingest.testing.scicat_payloads import PASSWORD, USER, datablock, raw_dataset
from scicat_fw_ingest.testing.scicat_server import ScicatTestServer

Server = ScicatTestServer
PID = "20.500.12269/run 42/a+b"


def by_password(server: Server, **kw: Any) -> ScicatClient:
    options: dict[str, Any] = {"backoff": 0.01, "timeout": 2, "grace": 0.2, **kw}
    return ScicatClient(server.url, username=USER, password=PASSWORD, **options)


def by_token(server: Server, **kw: Any) -> ScicatClient:
    options: dict[str, Any] = {"backoff": 0.01, "timeout": 2, "grace": 0.2, **kw}
    return ScicatClient(server.url, token=server.token, **options)


def logins(server: Server) -> int:
    return sum(r.path.endswith("/auth/login") for r in server.requests)


def posts(server: Server, fragment: str) -> list[int]:
    return [r.status for r in server.requests if r.method == "POST" and r.path.endswith(fragment)]


# -- token hygiene -------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [by_password, by_token])
def test_the_token_travels_only_in_the_authorization_header(scicat_server: Server, make) -> None:
    client = make(scicat_server)
    assert client.upsert(raw_dataset(PID), datablock()) == "created"
    client.ping()
    client.datasets_get_many({"pid": PID})  # an inherited pyscicat method goes through the same transport
    api = [r for r in scicat_server.requests if not r.path.endswith("/auth/login")]
    assert len(api) >= 4
    for req in scicat_server.requests:
        assert "access_token" not in req.query
        assert scicat_server.token not in req.path
    assert all(r.headers.get("Authorization") == f"Bearer {scicat_server.token}" for r in api)
    assert all(r.status in (200, 201, 404) for r in api)


def test_pids_are_percent_encoded_as_one_path_segment(scicat_server: Server) -> None:
    by_token(scicat_server).upsert(raw_dataset(PID), datablock())
    assert f"/api/v3/Datasets/{pid_path(PID)}/origdatablocks" in [r.path for r in scicat_server.requests]
    assert pid_path(PID) == "20.500.12269%2Frun%2042%2Fa%2Bb"
    assert scicat_server.datasets[PID]["numberOfFiles"] == 1


def test_secrets_stay_out_of_errors_reprs_and_logs(scicat_server: Server, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    token = scicat_server.token
    client = by_token(scicat_server)
    for text in (repr(client), str(vars(client))):
        assert token not in text
    scicat_server.fail_next(2, 503)
    assert client.get_dataset("x") is None  # retried with warnings in the log
    scicat_server.expire_tokens()
    with pytest.raises(ScicatError) as info:
        client.upsert(raw_dataset(), datablock())
    # a refused static token queues files (retryable), flagged as an auth problem, with one clear message
    assert info.value.status == 401 and info.value.retryable and info.value.auth
    assert "SciCat token expired or refused: set a new one" in str(info.value)
    bad = ScicatClient(scicat_server.url, username=USER, password="not-the-password-xyz", backoff=0.01)
    with pytest.raises(ScicatError) as login_info:
        bad.ping()
    assert f"login as '{USER}' failed: 401" in str(login_info.value)
    for text in (str(info.value), repr(info.value), str(login_info.value), repr(bad), str(vars(bad)), caplog.text):
        assert token not in text
        assert "not-the-password-xyz" not in text
        assert PASSWORD not in text
    assert "retrying" in caplog.text


# -- retries -------------------------------------------------------------------------------------

def test_a_burst_of_503_is_retried_then_succeeds(scicat_server: Server) -> None:
    scicat_server.fail_next(3, 503, path_contains="Datasets", method="POST")
    assert by_token(scicat_server).upsert(raw_dataset(), datablock()) == "created"
    assert posts(scicat_server, "/Datasets") == [503, 503, 503, 201]
    assert len(scicat_server.origdatablocks["20.500.12269/test-0001"]) == 1


def test_dropped_connections_are_retried(scicat_server: Server) -> None:
    scicat_server.drop_next(2)
    scicat_server.drop_next(1, path_contains="origdatablocks", method="POST")
    assert by_token(scicat_server).upsert(raw_dataset(), datablock()) == "created"
    assert list(scicat_server.datasets) == ["20.500.12269/test-0001"]
    assert len(scicat_server.origdatablocks["20.500.12269/test-0001"]) == 1


def test_a_lost_answer_to_a_stored_datablock_does_not_post_it_twice(scicat_server: Server) -> None:
    scicat_server.drop_next(1, path_contains="origdatablocks", method="POST", after=True)
    assert by_token(scicat_server).upsert(raw_dataset(), datablock(10)) == "created"
    assert len(scicat_server.origdatablocks["20.500.12269/test-0001"]) == 1
    assert scicat_server.datasets["20.500.12269/test-0001"]["size"] == 10


def test_a_lost_answer_to_our_own_create_still_reports_created(scicat_server: Server) -> None:
    scicat_server.drop_next(1, path_contains="/Datasets", method="POST", after=True)
    assert by_token(scicat_server).upsert(raw_dataset(), datablock()) == "created"
    assert posts(scicat_server, "/Datasets") == [201, 409]
    assert len(scicat_server.origdatablocks["20.500.12269/test-0001"]) == 1


def test_429_honours_retry_after(scicat_server: Server) -> None:
    scicat_server.fail_next(1, 429, method="GET", retry_after=0.4)
    started = time.perf_counter()
    assert by_token(scicat_server, backoff=0.001).get_dataset("x") is None
    assert time.perf_counter() - started >= 0.4
    assert [r.status for r in scicat_server.requests] == [429, 404]


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422])
def test_other_client_errors_are_not_retried(scicat_server: Server, status: int) -> None:
    scicat_server.fail_next(5, status, path_contains="origdatablocks", method="POST")
    with pytest.raises(ScicatError) as info:
        by_token(scicat_server).upsert(raw_dataset(), datablock())
    assert info.value.status == status and not info.value.retryable
    assert posts(scicat_server, "/origdatablocks") == [status]
    assert f"POST /api/v3/Datasets/{pid_path('20.500.12269/test-0001')}/origdatablocks: {status}" in str(info.value)


def test_retries_give_up_with_a_retryable_error(scicat_server: Server) -> None:
    scicat_server.fail_next(10, 502)
    with pytest.raises(ScicatError) as info:
        by_token(scicat_server, max_attempts=3).get_dataset("x")
    assert info.value.retryable and info.value.status == 502
    assert "gave up after 3 attempts" in str(info.value)
    assert len(scicat_server.requests) == 3


def test_a_slow_server_times_out_and_is_retried(scicat_server: Server) -> None:
    scicat_server.slow(0.5)
    with pytest.raises(ScicatError) as info:
        by_token(scicat_server, timeout=0.2, max_attempts=2).get_dataset("x")
    assert "no answer from 127.0.0.1" in str(info.value) and "within 0.2 s" in str(info.value)
    assert info.value.retryable and info.value.status is None
    scicat_server.slow(0)


def test_one_relogin_on_401(scicat_server: Server) -> None:
    client = by_password(scicat_server)
    assert client.upsert(raw_dataset("p/1"), datablock()) == "created"
    scicat_server.expire_tokens()
    assert client.upsert(raw_dataset("p/2"), datablock()) == "created"
    assert logins(scicat_server) == 2
    scicat_server.fail_next(5, 401)
    with pytest.raises(ScicatError) as info:
        client.get_dataset("p/1")
    # the re-login was refused too: an auth problem, retryable (files queue), naming the account
    assert info.value.status == 401 and info.value.retryable and info.value.auth
    assert f"login as '{USER}' failed: 401" in str(info.value)
    assert logins(scicat_server) == 3
    assert len(scicat_server.requests) - scicat_server.requests.index(scicat_server.requests[-3]) == 3


def test_a_token_only_client_does_not_try_to_log_in(scicat_server: Server) -> None:
    client = by_token(scicat_server)
    scicat_server.expire_tokens()
    with pytest.raises(ScicatError) as info:
        client.get_dataset("p/1")
    assert info.value.status == 401
    assert logins(scicat_server) == 0 and len(scicat_server.requests) == 1


def test_refuse_then_resume_while_the_client_retries(scicat_server: Server) -> None:
    client = by_password(scicat_server, backoff=0.1, max_attempts=8)
    client.ping()
    scicat_server.refuse()
    timer = threading.Timer(0.6, scicat_server.resume)
    timer.start()
    try:
        assert client.upsert(raw_dataset(), datablock()) == "created"
    finally:
        timer.join()
    assert len(scicat_server.origdatablocks["20.500.12269/test-0001"]) == 1


def test_an_unreachable_server_is_one_clear_retryable_error() -> None:
    with Server() as server:
        url = server.url
    client = ScicatClient(url, token="t", backoff=0.001, max_attempts=2)
    with pytest.raises(ScicatError) as info:
        client.ping()
    assert str(info.value).startswith(f"SciCat GET /api/v3/Datasets: cannot connect to {url.split('/')[2]}")
    assert "\n" not in str(info.value) and info.value.retryable


# -- upsert --------------------------------------------------------------------------------------

def test_upsert_created_then_exists(scicat_server: Server) -> None:
    client = by_token(scicat_server)
    assert client.upsert(raw_dataset(PID), datablock(10, 20)) == "created"
    assert [r.method for r in scicat_server.requests] == ["POST", "POST"]  # a new dataset: no look of its own
    before = len(scicat_server.requests)
    assert client.upsert(raw_dataset(PID), datablock(10, 20)) == "exists"
    assert next((r.method, r.status) for r in scicat_server.requests[before:]) == ("POST", 409)
    before = len(scicat_server.requests)  # having met an existing dataset, the client looks first
    assert client.upsert(raw_dataset(PID), datablock(10, 20)) == "exists"
    assert [r.method for r in scicat_server.requests[before:]] == ["GET", "GET"]
    doc = client.get_dataset(PID)
    assert doc is not None and (doc["size"], doc["numberOfFiles"]) == (30, 2)
    blocks = client.get_origdatablocks(PID)
    assert len(blocks) == 1 and blocks[0]["chkAlg"] == "sha256"
    assert blocks[0]["dataFileList"][0]["time"] == "2024-05-01T10:05:00Z"
    assert client.get_dataset("absent") is None and client.get_origdatablocks("absent") == []


def test_upsert_repairs_a_dataset_without_its_datablock(scicat_server: Server) -> None:
    client = by_token(scicat_server)
    requests.post(f"{scicat_server.url}/Datasets", json=raw_dataset(PID),
                  headers={"Authorization": f"Bearer {scicat_server.token}"}, timeout=5).raise_for_status()
    assert client.upsert(raw_dataset(PID), datablock(10)) == "repaired"
    assert posts(scicat_server, "/Datasets") == [201, 409]
    assert (scicat_server.datasets[PID]["size"], scicat_server.datasets[PID]["numberOfFiles"]) == (10, 1)
    assert client.upsert(raw_dataset(PID), datablock(10)) == "exists"


@pytest.mark.parametrize("looks_first", [False, True], ids=["posts-first", "looks-first"])
@pytest.mark.parametrize("other_had_datablock, expected", [(True, "exists"), (False, "repaired")])
def test_a_409_race_takes_the_exists_path(scicat_server: Server, other_had_datablock: bool, expected: str,
                                          looks_first: bool) -> None:
    ours = by_token(scicat_server)
    if looks_first:  # a client that met an existing dataset looks before it posts
        ours.upsert(raw_dataset("earlier"), datablock(1))
        assert ours.upsert(raw_dataset("earlier"), datablock(1)) == "exists"
    other = by_token(scicat_server)
    if other_had_datablock:
        other.upsert(raw_dataset(PID, owner="the other writer"), datablock(10))
    else:
        other.exchange("POST", "/api/v3/Datasets", body=raw_dataset(PID, owner="the other writer"))
    if looks_first:  # our lookup happened before the other one's create: the dataset looked absent
        scicat_server.fail_next(1, 404, method="GET", path_contains=pid_path(PID))
    assert ours.upsert(raw_dataset(PID), datablock(10)) == expected
    assert posts(scicat_server, "/Datasets")[-1] == 409
    assert len(scicat_server.origdatablocks[PID]) == 1
    assert scicat_server.datasets[PID]["size"] == 10


def test_upsert_needs_a_pid(scicat_server: Server) -> None:
    with pytest.raises(ValueError, match="pid"):
        by_token(scicat_server).upsert(raw_dataset(None), datablock())


def test_a_rejected_dataset_names_the_fields(scicat_server: Server) -> None:
    with pytest.raises(ScicatError) as info:
        by_token(scicat_server).upsert(raw_dataset(size="12", foo=1), datablock())
    text = str(info.value)
    assert text.startswith("SciCat POST /api/v3/Datasets: 400 Bad Request: ")
    assert "property foo should not exist" in text and "size must be an integer number" in text


def test_concurrent_upserts_from_eight_threads(scicat_server: Server) -> None:
    client = by_password(scicat_server)
    pids = [f"20.500.12269/t{i}" for i in range(40)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda p: client.upsert(raw_dataset(p), datablock(3)), pids))
        same = list(pool.map(lambda _: client.upsert(raw_dataset("one/pid"), datablock(3)), range(8)))
    assert results == ["created"] * 40
    assert Counter(same) == {"created": 1, "exists": 7}
    assert all(len(scicat_server.origdatablocks[p]) == 1 for p in [*pids, "one/pid"])
    assert all(scicat_server.datasets[p]["size"] == 3 for p in pids)
    assert logins(scicat_server) == 1
    client.close()


def test_concurrent_401s_cause_one_relogin(scicat_server: Server) -> None:
    client = by_password(scicat_server)
    client.ping()
    scicat_server.expire_tokens()
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda i: client.get_dataset(f"x{i}"), range(16))) == [None] * 16
    assert logins(scicat_server) == 2


# -- configuration -------------------------------------------------------------------------------

def test_from_config(scicat_server: Server) -> None:
    cfg = load_config(None, env={"SFI_SCICAT_URL": scicat_server.url, "SFI_SCICAT_TOKEN": scicat_server.token,
                                 "SFI_SCICAT_BACKOFF": "0.01", "SFI_SCICAT_TIMEOUT": "3"})
    client = ScicatClient.from_config(cfg.scicat)
    assert (client.timeout, client.backoff) == (3.0, 0.01)
    client.ping()
    assert scicat_server.token not in repr(client)


@pytest.mark.parametrize("env, key", [
    ({}, "[scicat] url"),
    ({"SFI_SCICAT_URL": "http://127.0.0.1:1/api/v3"}, "[scicat] token"),
    ({"SFI_SCICAT_URL": "http://127.0.0.1:1/api/v3", "SFI_SCICAT_USERNAME": "u"}, "[scicat] password"),
])
def test_from_config_names_the_missing_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        ScicatClient.from_config(load_config(None, env=env).scicat)


def test_a_bad_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="expected http"):
        ScicatClient("localhost:3000/api/v3", token="t")


# -- the package: config checks, payload sanitising, v4 shapes, the per-pid journal ----------------------
@pytest.mark.parametrize("url,ok", [
    ("https://scicat.example.org/api/v3", True), ("https://scicat.example.org/api/v4/", True),
    ("https://scicat.example.org/scicat/api/v3", True), ("https://scicat.example.org", False),
    ("https://scicat.example.org/api/v2", False), ("scicat.example.org/api/v3", False),
])
def test_url_shape_checked_before_any_work(url: str, ok: bool) -> None:
    from scicat_fw_ingest.config_check import validate

    if ok:
        assert validate(load_config(None, env={"SFI_SCICAT_URL": url})).scicat.url == url
    else:
        with pytest.raises(ConfigError, match=r"\[scicat\] url .*(must end in /api/v3 or /api/v4|expected http)"):
            validate(load_config(None, env={"SFI_SCICAT_URL": url}))


def test_url_credentials_never_in_the_url_error() -> None:
    from scicat_fw_ingest.config_check import validate

    with pytest.raises(ConfigError) as info:
        validate(load_config(None, env={"SFI_SCICAT_URL": "https://user:s3cret@scicat.example.org/"}))
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize("toml,message", [
    ('[defaults]\ncontactEmail = "not-an-email"\n', "[defaults] contactEmail = 'not-an-email': not an email"),
    ('[defaults]\nownerEmail = "a@b.org;nope"\n', "[defaults] ownerEmail"),
    ('[defaults]\nrunNumber = 42\n', "[defaults] runNumber = 42: must be a string"),
    ('[defaults]\nproposalId = 123\n', "[defaults] proposalId = 123: must be a string"),
    ('[scicat]\napi = "v5"\n', "[scicat] api: must be one of auto, v3, v4"),
])
def test_values_scicat_rejects_are_caught_before_any_work(tmp_path, toml: str, message: str) -> None:
    from scicat_fw_ingest.config_check import validate

    path = tmp_path / "sfi.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        validate(load_config(path, env={}))
    assert message in str(info.value) and str(path) in str(info.value)


def test_several_default_emails_joined_by_semicolon_are_fine(tmp_path) -> None:
    path = tmp_path / "sfi.toml"
    path.write_text('[defaults]\ncontactEmail = "a@example.org; b@example.org"\n')
    assert load_config(path, env={}).defaults["contactEmail"]


def test_sanitize_drops_empty_keys_at_any_depth_and_stringifies_ids() -> None:
    original: dict[str, Any] = {"pid": "p", "runNumber": 7, "proposalId": 12.0, "sampleId": "s",
                "scientificMetadata": {"": 1, "a.b c$": 2, "n": {"": 3, "k": {"": 4, "v": 5}}}}
    clean, warnings = sanitize_dataset(original)
    assert clean["scientificMetadata"] == {"a.b c$": 2, "n": {"k": {"v": 5}}}
    assert (clean["runNumber"], clean["proposalId"], clean["sampleId"]) == ("7", "12", "s")
    assert len(warnings) == 3 and all("dataset p" in w for w in warnings)
    assert original["scientificMetadata"][""] == 1  # the caller's dict is left alone


def test_v4_body_from_the_v3_shape() -> None:
    body = V4().dataset_body(raw_dataset("p/1", proposalId="P1", instrumentId="ymir", sampleId=""))
    assert body["principalInvestigators"] == ["Ada Lovelace"] and body["proposalIds"] == ["P1"]
    assert body["instrumentIds"] == ["ymir"] and "sampleIds" not in body
    assert not {"principalInvestigator", "proposalId", "instrumentId", "sampleId"} & set(body)
    assert body["datasetName"] == "2024/coda" and body["owner"] == "Ada Lovelace"


def test_api_chosen_from_the_url_or_the_option() -> None:
    assert split_url("http://h:3000/api/v4") == ("http://h:3000", "v4")
    assert split_url("http://h:3000/api/v3/", "auto") == ("http://h:3000", "v3")
    assert split_url("http://h:3000/api/v3", "v4") == ("http://h:3000", "v4")


def test_journal_note_survives_a_dead_holder_and_is_removed_when_settled(tmp_path) -> None:
    with PidJournal(tmp_path, "http://h", "p/1") as journal:
        assert journal.pending_since is None
        journal.mark_sending()  # ... and the process "dies" here: the note stays
    with PidJournal(tmp_path, "http://h", "p/1") as journal:
        assert journal.pending_since is not None
        journal.settled()
    assert list(tmp_path.iterdir()) == []


def test_a_server_acting_as_4_5_0_answers_an_expired_token_with_403(tmp_path) -> None:
    with ScicatTestServer({USER: PASSWORD}, version="4.5.0", admins=set()) as server:
        client = by_password(server)
        assert client.upsert(raw_dataset("p/45", accessGroups=[USER]), datablock()) == "created"
        server.expire_tokens()
        client._expires_at = client._life = None  # unknown expiry: only the 403 can tell
        assert client.upsert(raw_dataset("p/46", accessGroups=[USER]), datablock()) == "created"
        assert server.logins == 2
        assert [r.status for r in server.requests if r.method == "POST"].count(403) == 1


def test_push_catalogue_works_to_v4(tmp_path) -> None:
    from scicat_fw_ingest.catalogue import CatalogueDir, push_catalogue

    catalogue = CatalogueDir(tmp_path / "catalogue")
    catalogue.upsert(raw_dataset("v4/1", proposalId="P1"), datablock(10))
    catalogue.upsert(raw_dataset("v4/2"), datablock(20, 5))
    with ScicatTestServer({USER: PASSWORD}, admins={USER}) as server:
        client = ScicatClient(server.url.replace("/api/v3", "/api/v4"), username=USER, password=PASSWORD,
                              lock_dir=tmp_path / "locks", backoff=0.01)
        try:
            assert sorted(r.status for r in push_catalogue(catalogue, client)) == ["created", "created"]
            assert sorted(r.status for r in push_catalogue(catalogue, client)) == ["exists", "exists"]
        finally:
            client.close()
        first = server.datasets["v4/1"]
        assert first["version"] == "v4" and first["proposalIds"] == ["P1"] and "proposalId" not in first
        assert (server.datasets["v4/2"]["size"], server.datasets["v4/2"]["numberOfFiles"]) == (25, 2)
        assert {r.path for r in server.requests if r.method == "POST"} >= {"/api/v4/datasets", "/api/v4/origdatablocks"}


def test_a_refused_static_token_stops_being_sent_after_three_refusals(scicat_server: Server) -> None:
    client = by_token(scicat_server)
    scicat_server.expire_tokens()
    for _ in range(6):
        with pytest.raises(ScicatError) as info:
            client.upsert(raw_dataset(), datablock())
        assert info.value.auth and info.value.retryable
    assert len(scicat_server.requests) == 3
    assert "not trying again" in str(info.value) and "set a new one" in str(info.value)


def test_an_empty_metadata_key_is_dropped_with_a_warning_naming_the_file(scicat_server: Server, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="sfi.scicat")
    block = datablock(10)
    block["dataFileList"][0]["path"] = "/data/run_0042.nxs"
    dataset = raw_dataset("p/meta", scientificMetadata={"": "x", "ok": 1})
    assert by_token(scicat_server).upsert(dataset, block) == "created"
    assert scicat_server.datasets["p/meta"]["scientificMetadata"] == {"ok": 1}
    [record] = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert "run_0042.nxs" in record.getMessage() and "p/meta" in record.getMessage()


def test_a_refused_dataset_leaves_no_lock_file(scicat_server: Server, tmp_path) -> None:
    client = ScicatClient(scicat_server.url, token=scicat_server.token, lock_dir=tmp_path, backoff=0.01)
    with pytest.raises(ScicatError):
        client.upsert(raw_dataset("p/bad", foo=1), datablock())
    assert list(tmp_path.iterdir()) == []


def test_an_upsert_that_fails_before_sending_leaves_no_lock_file(scicat_server: Server, tmp_path) -> None:
    client = ScicatClient(scicat_server.url, token=scicat_server.token, lock_dir=tmp_path, backoff=0.01)
    scicat_server.expire_tokens()
    with pytest.raises(ScicatError):
        client.upsert(raw_dataset("p/x"), datablock())
    assert list(tmp_path.iterdir()) == []
