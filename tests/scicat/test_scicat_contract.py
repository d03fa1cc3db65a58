"""ONE set of SciCat scenarios, run against the real backend (5.1.0, 4.5.0) and the test server acting as
each version, on API v3 and v4. Where the test server disagreed with the real backend it was corrected
(expired token 401/403, read rights of a non-admin account, v3-adds/v4-recomputes sizes, 5xx after store).

Every client talks through a ``FaultProxy`` (also when no fault is injected) so that requests can be
counted the same way on every target.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scicat_fw_ingest.scicat import TOKEN_REFUSED, ScicatClient, ScicatError, pid_path
from scicat_fw_ingest.testing.backend import VERSIONS
from scicat_fw_ingest.testing.fault_proxy import FaultProxy
from scicat_fw_ingest.testing.scicat_payloads import ACCOUNTS, Target, datablock, raw_dataset
from scicat_fw_ingest.testing.scicat_server import ScicatTestServer

TARGETS = [f"backend-{v}" for v in VERSIONS] + [f"testserver-{v}" for v in VERSIONS]


def _target(kind_version: str, real_scicat_factory, **settings: int) -> Iterator[Target]:
    kind, version = kind_version.split("-")
    if kind == "backend":
        backend = real_scicat_factory(version, jwt_expires_in=settings.get("jwt_expires_in"))
        yield Target("backend", backend.version, backend.base, short_lived="jwt_expires_in" in settings)
        return
    server = ScicatTestServer(dict(ACCOUNTS), admins={"admin"}, version=version,
                              token_life=settings.get("jwt_expires_in"))
    with server:
        yield Target("testserver", version, server.url.rsplit("/api/", 1)[0], server,
                     short_lived="jwt_expires_in" in settings)


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest, real_scicat_factory) -> Iterator[Target]:
    yield from _target(request.param, real_scicat_factory)


@pytest.fixture(params=["v3", "v4"])
def api(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def proxy(target: Target) -> Iterator[FaultProxy]:
    with FaultProxy(target.base) as p:
        yield p


@pytest.fixture
def make(proxy: FaultProxy, api: str, tmp_path: Path) -> Iterator[Callable[..., ScicatClient]]:
    """``make(user="admin", **client_options)``: a client through the proxy, closed at the end."""
    made: list[ScicatClient] = []

    def factory(user: str = "admin", **kw: object) -> ScicatClient:
        options: dict[str, Any] = {"timeout": 5.0, "backoff": 0.02, "grace": 0.3, "max_attempts": 4, **kw}
        if "token" not in options:
            options.update(username=user, password=options.pop("password", ACCOUNTS[user]))
        client = ScicatClient(f"{proxy.base}/api/{api}", api=api, lock_dir=tmp_path / "locks", **options)
        made.append(client)
        return client

    yield factory
    for client in made:
        client.close()


def fresh_pid() -> str:
    return f"sfi-contract/{uuid.uuid4()}"


def logins(proxy: FaultProxy) -> int:
    return sum(path.endswith("/auth/login") for _, path in proxy.forwarded)


# -- creation and idempotency ------------------------------------------------------------------------
def test_create_then_exists_one_datablock_exact_size(target: Target, make) -> None:
    pid = fresh_pid()
    client = make()
    assert client.upsert(raw_dataset(pid), datablock(300, 20)) == "created"
    assert client.upsert(raw_dataset(pid), datablock(300, 20)) == "exists"
    assert client.get_dataset(pid)["pid"] == pid
    assert len(client.get_origdatablocks(pid)) == 1
    assert target.counts(pid) == (1, 320, 2)


def test_dataset_without_datablock_is_repaired(target: Target, make) -> None:
    pid = fresh_pid()
    client = make()
    resp, _ = client.exchange("POST", client.api.create_dataset_path(), body=client.api.dataset_body(raw_dataset(pid)))
    assert resp is not None and resp.status_code == 201
    assert client.upsert(raw_dataset(pid), datablock(70)) == "repaired"
    assert target.counts(pid) == (1, 70, 1)


def test_duplicate_pid_is_409_on_both_apis(target: Target, make) -> None:
    client = make()
    body = client.api.dataset_body(raw_dataset(fresh_pid()))
    first, _ = client.exchange("POST", client.api.create_dataset_path(), body=body)
    second, _ = client.exchange("POST", client.api.create_dataset_path(), body=body)
    assert first is not None and second is not None
    assert (first.status_code, second.status_code) == (201, 409)


def test_non_admin_without_read_rights_reruns_as_exists(target: Target, make) -> None:
    """The ingestor may create for group 'ess' but not read it: POST first, 409 = exists, no duplicate."""
    pids = [fresh_pid() for _ in range(2)]
    client = make("ingestor")
    assert [client.upsert(raw_dataset(p, accessGroups=["ess"]), datablock(40)) for p in pids] == ["created"] * 2
    assert client.get_dataset(pids[0]) is None
    assert [client.upsert(raw_dataset(p, accessGroups=["ess"]), datablock(40)) for p in pids] == ["exists"] * 2
    assert [target.counts(p) for p in pids] == [(1, 40, 1)] * 2


def test_non_admin_reads_datasets_shared_with_its_group(target: Target, make) -> None:
    pid = fresh_pid()
    client = make("ingestor")
    assert client.upsert(raw_dataset(pid, accessGroups=["ess", "ingestor"]), datablock(5)) == "created"
    assert client.get_dataset(pid) is not None and len(client.get_origdatablocks(pid)) == 1
    assert client.upsert(raw_dataset(pid, accessGroups=["ess", "ingestor"]), datablock(5)) == "exists"


# -- faults: the answer lost after the server acted ---------------------------------------------------
def test_5xx_after_the_datablock_was_stored_leaves_one(target: Target, make, proxy: FaultProxy) -> None:
    pid = fresh_pid()
    proxy.replace(502, path_contains="rigdatablocks", method="POST", n=2)
    assert make().upsert(raw_dataset(pid), datablock(64)) == "created"
    assert target.counts(pid) == (1, 64, 1)


def test_5xx_after_the_dataset_was_stored_still_creates_once(target: Target, make, proxy: FaultProxy) -> None:
    pid = fresh_pid()
    proxy.replace(503, path_contains="atasets", method="POST", n=1)
    assert make().upsert(raw_dataset(pid), datablock(8)) == "created"
    assert target.counts(pid) == (1, 8, 1)


# -- what leaves is valid ------------------------------------------------------------------------------
def test_empty_metadata_key_dropped_numbers_sent_as_strings(target: Target, make) -> None:
    pid = fresh_pid()
    dataset = raw_dataset(pid, scientificMetadata={"": "x", "ok": 1, "nested": {"": 2, "a b": 3}},
                          runNumber=7, proposalId=123)
    assert make().upsert(dataset, datablock(3)) == "created"
    assert target.alive()
    status, doc = target.request("GET", f"/api/v3/Datasets/{pid_path(pid)}")
    assert status == 200
    assert doc["scientificMetadata"]["ok"] == 1 and "" not in doc["scientificMetadata"]
    assert doc["scientificMetadata"]["nested"] == {"a b": 3}
    assert doc["runNumber"] == "7"


def test_v4_dto_refuses_v3_fields_and_size_semantics(target: Target) -> None:
    """v3 adds a datablock's size to the dataset's; v4 recomputes on 4.5.0 but adds on 5.1.0. sfi creates
    datasets without sizes, so every variant reads back the file sizes."""
    body = raw_dataset(fresh_pid(), size=10, numberOfFiles=1)
    assert target.request("POST", "/api/v4/datasets", {**body, "datasetName": "x"})[0] == 400  # principalInvestigator
    assert target.request("POST", "/api/v3/Datasets", body)[0] == 201
    block = datablock(10)
    assert target.request("POST", f"/api/v3/Datasets/{pid_path(body['pid'])}/origdatablocks", block)[0] == 201
    assert target.counts(body["pid"]) == (1, 20, 2)  # v3 adds to what the dataset held
    assert target.request("POST", "/api/v4/origdatablocks", {**block, "datasetId": body["pid"]})[0] == 201
    expected = (2, 20, 2) if target.version == "4.5.0" else (2, 30, 3)
    assert target.counts(body["pid"]) == expected


# -- credentials -------------------------------------------------------------------------------------
def test_wrong_password_stops_after_a_few_logins(make, proxy: FaultProxy) -> None:
    client = make(password="not-the-password")
    errors = []
    for _ in range(8):
        with pytest.raises(ScicatError) as info:
            client.upsert(raw_dataset(fresh_pid()), datablock(1))
        errors.append(info.value)
    assert logins(proxy) == 3  # the breaker opened: the account is not hammered
    assert all(e.auth and e.retryable for e in errors)
    assert "check [scicat] username and password" in str(errors[-1])


def test_get_json_relative_to_v3_none_on_404(make) -> None:
    client = make()
    assert client.get_json(f"Proposals/none-{uuid.uuid4().hex}") is None
    assert isinstance(client.get_json("Datasets", {"filter": '{"limit": 1}'}), list)


# -- expiry (tokens living 2 s) ------------------------------------------------------------------------
@pytest.fixture(params=TARGETS)
def short_target(request: pytest.FixtureRequest, real_scicat_factory) -> Iterator[Target]:
    yield from _target(request.param, real_scicat_factory, jwt_expires_in=2)


@pytest.mark.slow
def test_expired_tokens_renewed_and_a_static_token_queues(short_target: Target, tmp_path: Path) -> None:
    """One wait past the 2 s token life, for clients of both APIs: renewed before expiry (proactive), renewed
    on the 401/403 when the expiry is unknown (reactive), a static token refused as retryable auth error."""
    static = short_target.token("admin")
    shared = ["ess", "ingestor"]
    with FaultProxy(short_target.base) as proxy:
        clients: dict[str, tuple[ScicatClient, ScicatClient, ScicatClient]] = {}
        pids: dict[str, list[str]] = {}
        for api in ("v3", "v4"):
            url = f"{proxy.base}/api/{api}"
            clients[api] = (
                ScicatClient(url, username="admin", password="adminpass", api=api, lock_dir=tmp_path, backoff=0.02),
                ScicatClient(url, username="ingestor", password="ingestorpass", api=api, lock_dir=tmp_path,
                             backoff=0.02),
                ScicatClient(url, token=static, api=api, lock_dir=tmp_path, backoff=0.02))
            pids[api] = [fresh_pid() for _ in range(4)]
        errors = []
        try:
            for api, (proactive, reactive, _) in clients.items():
                assert proactive.upsert(raw_dataset(pids[api][0]), datablock(1)) == "created"
                assert reactive.upsert(raw_dataset(pids[api][1], accessGroups=shared), datablock(1)) == "created"
                reactive._expires_at = reactive._life = None  # forget the expiry: the 401/403 must trigger a re-login
            time.sleep(2.5)
            for api, (proactive, reactive, by_token) in clients.items():
                assert proactive.upsert(raw_dataset(pids[api][2]), datablock(1)) == "created"
                assert reactive.upsert(raw_dataset(pids[api][1], accessGroups=shared), datablock(1)) == "exists"
                assert reactive.upsert(raw_dataset(pids[api][3], accessGroups=shared), datablock(1)) == "created"
                with pytest.raises(ScicatError) as info:
                    by_token.upsert(raw_dataset(fresh_pid()), datablock(1))
                errors.append(info.value)
        finally:
            for trio in clients.values():
                for c in trio:
                    c.close()
    assert all(e.auth and e.retryable and TOKEN_REFUSED in str(e) for e in errors) and len(errors) == 2
    assert [short_target.counts(p)[0] for api in pids for p in pids[api]] == [1] * 8
    assert logins(proxy) >= 8  # per API: two first logins, two re-logins


# -- the preview attachment (issue 22): one per dataset, on both APIs --------------------------------------
class _Picture:
    """A drawn preview as the client takes it (``preview.Preview``'s shape) with a real 1×1 PNG."""

    caption = "Preview (sfi): counts against time_of_flight (/raw_data_1/detector_1/counts)"
    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9a"
                           "wAAAABJRU5ErkJggg==")

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode()


def _attachments(target: Target, pid: str) -> list[dict]:
    status, items = target.request("GET", f"/api/v3/Datasets/{pid_path(pid)}/attachments")
    assert status == 200, items
    return list(items)


def _drawn(calls: list[int]) -> Callable[[], _Picture]:
    def make() -> _Picture:
        calls.append(1)
        return _Picture()
    return make


def test_preview_attached_once_and_a_rerun_draws_nothing(target: Target, make) -> None:
    pid = fresh_pid()
    dataset = raw_dataset(pid, accessGroups=["ess", "scientists"])
    first, second = make(), make()
    assert first.upsert(dataset, datablock(5)) == "created"
    calls: list[int] = []
    assert first.attach_preview(dataset, _drawn(calls)) == "created"
    assert second.attach_preview(dataset, _drawn(calls)) == "exists"  # another process, the same answer
    assert calls == [1]  # the re-run looked first and drew nothing
    [item] = _attachments(target, pid)
    assert item["caption"] == _Picture.caption and item["thumbnail"] == _Picture().data_uri
    assert base64.b64decode(item["thumbnail"].split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert item["ownerGroup"] == "ess" and item["accessGroups"] == ["ess", "scientists"]


def test_preview_v4_duplicate_aid_is_refused_with_500(target: Target) -> None:
    """Why sfi's v4 attachment is idempotent: the client-chosen aid is the id; a second POST is a 500."""
    from scicat_fw_ingest.scicat._attachments import preview_aid

    pid = fresh_pid()
    assert target.request("POST", "/api/v3/Datasets", raw_dataset(pid))[0] == 201
    body = {"aid": preview_aid(pid), "thumbnail": _Picture().data_uri, "caption": "x", "ownerGroup": "ess",
            "isPublished": False, "relationships": [{"targetId": pid, "targetType": "dataset"}]}
    assert [target.request("POST", "/api/v4/attachments", body)[0] for _ in range(2)] == [201, 500]
    assert target.request("GET", f"/api/v4/attachments/{preview_aid(pid)}")[0] == 200
    assert [a["id"] for a in _attachments(target, pid)] == [preview_aid(pid)]
    v3 = {"id": "mine", "thumbnail": _Picture().data_uri, "caption": "x", "ownerGroup": "ess"}
    status, doc = target.request("POST", f"/api/v3/Datasets/{pid_path(pid)}/attachments", v3)
    assert status == 201 and doc["id"] != "mine"  # v3 ignores a client id: only a look prevents a second one


def test_preview_5xx_after_it_was_stored_leaves_one(target: Target, make, proxy: FaultProxy) -> None:
    pid = fresh_pid()
    client = make()
    assert client.upsert(raw_dataset(pid), datablock(3)) == "created"
    proxy.replace(502, path_contains="ttachments", method="POST", n=2)
    assert client.attach_preview(raw_dataset(pid), lambda: _Picture()) == "created"
    assert len(_attachments(target, pid)) == 1


def test_preview_answer_lost_to_a_timeout_is_found_not_resent(target: Target, make, proxy: FaultProxy) -> None:
    pid = fresh_pid()
    client = make(timeout=0.5)
    assert client.upsert(raw_dataset(pid), datablock(3)) == "created"
    proxy.delay(0.8, path_contains="ttachments", method="POST", n=1)  # stored, the answer held past the timeout
    assert client.attach_preview(raw_dataset(pid), lambda: _Picture()) == "created"
    assert len(_attachments(target, pid)) == 1
    assert sum(m == "POST" and "ttachments" in p for m, p in proxy.forwarded) == 1


def test_preview_by_a_non_admin_account(target: Target, make) -> None:
    """v4 refuses a non-admin (403): the v3 route attaches it; a dataset it may not read gets none (no look)."""
    readable, hidden = fresh_pid(), fresh_pid()
    client = make("ingestor")
    assert client.upsert(raw_dataset(readable, accessGroups=["ingestor"]), datablock(1)) == "created"
    assert client.upsert(raw_dataset(hidden, accessGroups=["ess"]), datablock(1)) == "created"
    assert client.attach_preview(raw_dataset(readable, accessGroups=["ingestor"]), lambda: _Picture()) == "created"
    assert client.attach_preview(raw_dataset(readable, accessGroups=["ingestor"]), lambda: _Picture()) == "exists"
    assert client.attach_preview(raw_dataset(hidden, accessGroups=["ess"]), lambda: _Picture()) == "hidden"
    assert [len(_attachments(target, p)) for p in (readable, hidden)] == [1, 0]


def test_preview_v4_refusal_is_remembered_per_client(target: Target, make, proxy: FaultProxy, api: str) -> None:
    pids = [fresh_pid() for _ in range(3)]
    client = make("ingestor")
    for pid in pids:
        assert client.upsert(raw_dataset(pid, accessGroups=["ingestor"]), datablock(1)) == "created"
        assert client.attach_preview(raw_dataset(pid, accessGroups=["ingestor"]), lambda: _Picture()) == "created"
    posts = [p.startswith("/api/v4/") for m, p in proxy.forwarded if m == "POST" and p.endswith("ttachments")]
    first_v3 = posts.index(False)
    assert posts.count(False) == 3 and (first_v3 == 0 if api == "v3" else True not in posts[first_v3:])
    assert (True in posts) == (api == "v4")  # v4 asked (and refused) once, for the first dataset only
    assert [len(_attachments(target, p)) for p in pids] == [1, 1, 1]
