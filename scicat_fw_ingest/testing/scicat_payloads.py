"""SciCat payloads to start from (a raw dataset, a datablock), the test accounts, and the contract suite's targets.

Why in the package: the client, contract and fault tests and a facility checking its own SciCat all need bodies
the real backend accepts and one way to read back what it stored. The SciCat test server as a pytest fixture
(``scicat_server``, one account ``USER``/``PASSWORD``) is in the plugin ``scicat_fw_ingest.testing.fixtures``.
"""

from __future__ import annotations

from typing import Any

from scicat_fw_ingest.testing.scicat_server import ScicatTestServer

USER = "ingestor"
PASSWORD = "pw-for-tests-1b7c"


def raw_dataset(pid: str | None = "20.500.12269/test-0001", **fields: Any) -> dict[str, Any]:
    """A POST /Datasets body the real backend accepts (without size/numberOfFiles: the datablock carries them)."""
    body: dict[str, Any] = {
        "type": "raw", "ownerGroup": "ess", "owner": "Ada Lovelace", "contactEmail": "ada@example.org",
        "sourceFolder": "/data/ess/2024/coda", "creationTime": "2024-05-01T10:00:00Z",
        "principalInvestigator": "Ada Lovelace", "creationLocation": "ESS:CODA",
    }
    if pid is not None:
        body["pid"] = pid
    body.update(fields)
    return body


def datablock(*sizes: int, chk_alg: str = "sha256") -> dict[str, Any]:
    """A POST /Datasets/{pid}/origdatablocks body with one file per size (default: one 10-byte file)."""
    sizes = sizes or (10,)
    files = [{"path": f"file_{i}.nxs", "size": size, "time": "2024-05-01T10:05:00Z", "chk": f"{i:064x}",
              "uid": "1000", "gid": "1000", "perm": "-rw-r--r--"} for i, size in enumerate(sizes)]
    return {"size": sum(sizes), "chkAlg": chk_alg, "dataFileList": files}


# -- the contract suite's targets: the real backend (both versions) and the test server acting as each ------
ACCOUNTS = {"admin": "adminpass", "ingestor": "ingestorpass"}


class Target:
    """One SciCat server the contract scenarios run against, with admin-eyed reads for the assertions."""

    def __init__(self, kind: str, version: str, base: str, server: ScicatTestServer | None = None,
                 short_lived: bool = False) -> None:
        self.kind, self.version, self.base, self.server = kind, version, base, server
        self.short_lived = short_lived  # tokens live seconds: never reuse one
        self._tokens: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Target({self.kind}-{self.version})"

    def url(self, api: str) -> str:
        return f"{self.base}/api/{api}"

    def token(self, user: str = "ingestor") -> str:
        """A fresh token for one of ``ACCOUNTS`` (a static token, as an operator would paste it)."""
        import json
        import urllib.request

        login = urllib.request.Request(f"{self.base}/api/v3/auth/login", method="POST",
                                       data=json.dumps({"username": user, "password": ACCOUNTS[user]}).encode(),
                                       headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(login, timeout=10) as resp:
            return str(json.loads(resp.read())["access_token"])

    def request(self, method: str, path: str, body: object = None, *, user: str = "admin",
                token: str | None = None) -> tuple[int, Any]:
        """One raw call below the server root as ``user`` (admin reads everything)."""
        import json
        import urllib.error
        import urllib.request

        if token is None and not self.short_lived:  # one login per account: the assertions read a lot
            token = self._tokens.get(user) or self._tokens.setdefault(user, self.token(user))
        token = token or self.token(user)
        req = urllib.request.Request(f"{self.base}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        return status, json.loads(raw) if raw else None

    def counts(self, pid: str) -> tuple[int, int, int]:
        """(datablocks, dataset size, dataset numberOfFiles) as the admin reads them."""
        from scicat_fw_ingest.scicat import pid_path

        status, blocks = self.request("GET", f"/api/v3/Datasets/{pid_path(pid)}/origdatablocks")
        assert status == 200, blocks
        status, doc = self.request("GET", f"/api/v3/Datasets/{pid_path(pid)}")
        assert status == 200, doc
        return len(blocks), int(doc.get("size") or 0), int(doc.get("numberOfFiles") or 0)

    def alive(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.base}/api/v3/health", timeout=3) as resp:
                return bool(resp.status == 200)
        except OSError:
            return self.server is not None  # the test server has no health route; it cannot crash
