"""A SciCat test server: real HTTP on 127.0.0.1 enforcing the v3 rules observed on the live backend.

Why not a mock: the ingest path must be proven against the same validation the real backend applies
(whitelisted fields, integer types, 409 on a duplicate pid, 404 for a datablock of an unknown
dataset, 403 without a token), over real sockets so that timeouts, dropped connections and a
server that goes away exercise the real client code. Every rule here is one of
``shared/docs/scicat-api.md``; faults (status bursts, slow answers, dropped connections, a refused
port) are injected on demand. Documents live in memory and no request sleeps unless told to, so
benchmarks can push ~1,000 datasets/s through it.

``python -m scicat_fw_ingest.testing.scicat_server --port P [--user name:password] [--token T]``
runs it in the foreground for the demo and benchmarks.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import socket
import threading
import time
import uuid
from types import TracebackType
from typing import Any
from urllib.parse import unquote

from .._http import ThreadedHttp
from ._scicat_http import API, _Handler, _bad, _matches, _not_found, _now
from ._scicat_rules import validate_datablock, validate_dataset
from ._scicat_state import FORBIDDEN, UNAUTHORIZED_READ, Fault, RecordedRequest, can_read, groups_of

#: backend versions the server can act as (they differ on an expired token: see ``expire_tokens``)
VERSIONS = ("5.1.0", "4.5.0")


class ScicatTestServer:
    """A thread-safe in-memory SciCat v3 subset; a context manager that starts and stops it."""

    def __init__(self, users: dict[str, str] | None = None, *, token: str | None = None, port: int = 0,
                 pid_prefix: str = "20.500.12269", unprivileged: set[str] | frozenset[str] = frozenset(),
                 record: bool = True, version: str = "5.1.0", admins: set[str] | None = None,
                 token_life: float | None = None) -> None:
        """``version``: act as backend 5.1.0 or 4.5.0 (expired token: 401, or 403 on writes and anonymous
        reads); ``admins``: accounts that read every dataset (None: every account, the old behaviour; the
        real default backend is ``{"admin"}``); ``token_life``: seconds a login's token lives (``expires_in``)."""
        if version not in VERSIONS:
            raise ValueError(f"version {version!r}: one of {', '.join(VERSIONS)}")
        self.version = version
        self.admins = admins
        self.token_life = token_life
        self.users = dict(users if users is not None else {"ingestor": "ingestor-password"})
        #: users who may not supply their own pid (not in CREATE_DATASET_WITH_PID): 403 when they do.
        self.unprivileged = set(unprivileged)
        self.pid_prefix = pid_prefix
        self.port = port
        self.token = token or secrets.token_urlsafe(24)
        #: token -> (user, monotonic expiry)
        self._tokens: dict[str, tuple[str, float]] = {
            self.token: ("ingestor" if "ingestor" in self.users else "functional", float("inf"))}
        #: logins answered (tests count them: a client must never hammer the login)
        self.logins = 0
        self.datasets: dict[str, dict[str, Any]] = {}
        self.origdatablocks: dict[str, list[dict[str, Any]]] = {}
        #: attachment id -> document (v3 nested and v4 routes: ``_scicat_attachments``)
        self.attachments: dict[str, dict[str, Any]] = {}
        self.requests: list[RecordedRequest] = []
        #: False for long runs (demo, benchmarks): ``requests`` then stays empty instead of growing.
        self.record = record
        self.lock = threading.RLock()
        self._faults: list[Fault] = []
        self._delay = 0.0
        self._http: ThreadedHttp | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API}"

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> ScicatTestServer:
        self._http, self._thread = ThreadedHttp.serve(("127.0.0.1", self.port), _Handler, self, "scicat-test")
        self.port = self._http.server_address[1]
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        with self.lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def refuse(self) -> None:
        """Stop listening and cut open connections: clients see 'connection refused' until resume()."""
        self.stop()

    def resume(self) -> None:
        """Listen again on the same port; the stored documents are kept."""
        if self._http is None:
            self.start()

    def __enter__(self) -> ScicatTestServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- faults --------------------------------------------------------------------------------
    def fail_next(self, n: int, status: int = 503, *, path_contains: str | None = None,
                  method: str | None = None, retry_after: float | None = None, after: bool = False) -> None:
        """Answer the next ``n`` matching requests with ``status`` (and ``Retry-After`` when given).

        ``path_contains`` is matched against the raw (percent-encoded) path, e.g. "origdatablocks".
        ``after=True``: the request takes effect first (a 5xx from a gateway after the backend stored it).
        """
        with self.lock:
            self._faults.append(Fault(n, status, path_contains, method and method.upper(), retry_after,
                                       after=after))

    def slow(self, seconds: float) -> None:
        self._delay = max(0.0, seconds)

    def drop_next(self, n: int, *, path_contains: str | None = None, method: str | None = None,
                  after: bool = False) -> None:
        """Close the connection on the next ``n`` matching requests without an answer.

        By default nothing is stored; ``after=True`` lets the request take effect first (a lost answer).
        """
        with self.lock:
            self._faults.append(Fault(n, 0, path_contains, method and method.upper(), after=after))

    def expire_tokens(self) -> None:
        """Expire every issued token; ``token`` becomes a new valid one (what an operator would set).

        As 5.1.0: 401 ``SESSION_EXPIRED``. As 4.5.0: a write is 403, a read is answered as anonymous
        (403 for a dataset that is not public, lists filtered to public datasets)."""
        with self.lock:
            user = "ingestor" if "ingestor" in self.users else "functional"
            self._tokens = {t: (u, 0.0) for t, (u, _) in self._tokens.items()}
            self.token = secrets.token_urlsafe(24)
            self._tokens[self.token] = (user, float("inf"))  # the new one an operator would set

    def is_admin(self, user: str) -> bool:
        return self.admins is None or user in self.admins

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    return fault
            self._faults = [f for f in self._faults if f.remaining > 0]
            return None

    # -- the API -------------------------------------------------------------------------------
    def handle(self, method: str, route: str, query: dict[str, list[str]], body: Any,
               user: str | None) -> tuple[int, Any]:
        """Route one authenticated-or-anonymous request; ``route`` is the raw path below /api/v3."""
        parts = [unquote(p) for p in route.strip("/").split("/")] if route.strip("/") else []
        lower = [p.lower() for p in parts]
        if method == "POST" and lower == ["auth", "login"]:
            return self._login(body)
        if method == "GET" and lower == ["auth", "whoami"] and user is not None:
            return 200, {"username": user, "currentGroups": sorted(groups_of(user))}
        if method == "POST" and user is None:
            return FORBIDDEN
        if lower == ["datasets", "isvalid"] and method == "POST":
            return 200, {"valid": not validate_dataset(body)}
        if lower == ["datasets"] and method == "POST":
            return self._create_dataset(body, user)
        if lower == ["datasets"] and method == "GET":
            return self._find(query, user)
        if len(parts) == 2 and lower[0] == "datasets" and method == "GET":
            with self.lock:
                doc = dict(self.datasets[parts[1]]) if parts[1] in self.datasets else None
            if doc is None:
                return _not_found(f"Dataset {parts[1]} not found")
            return (200, doc) if can_read(self, user, doc) else UNAUTHORIZED_READ
        if len(parts) == 3 and lower[0] == "datasets" and lower[2] == "origdatablocks":
            if method == "POST":
                return self._create_datablock(parts[1], body, flat=False)
            if method == "GET":
                with self.lock:
                    if parts[1] not in self.datasets:
                        return _not_found(f"Dataset {parts[1]} not found")
                    if not can_read(self, user, self.datasets[parts[1]]):
                        return UNAUTHORIZED_READ
                    return 200, list(self.origdatablocks.get(parts[1], []))
        if len(parts) == 3 and lower[0] == "datasets" and lower[2] == "attachments" and method in ("GET", "POST"):
            from ._scicat_attachments import handle_v3

            return handle_v3(self, method, parts[1], body, user)
        if lower == ["origdatablocks"] and method == "POST":
            pid = body.get("datasetId") if isinstance(body, dict) else None
            return self._create_datablock(pid if isinstance(pid, str) else "", body, flat=True)
        if method == "DELETE" and ((len(parts) == 2 and lower[0] == "origdatablocks")
                                   or (len(parts) == 4 and lower[0] == "datasets" and lower[2] == "origdatablocks")):
            return self._delete_datablock(parts[-1], user)
        return _not_found(f"Cannot {method} {API}/{route.strip('/')}")

    def _login(self, body: Any) -> tuple[int, Any]:
        name = body.get("username") if isinstance(body, dict) else None
        password = body.get("password") if isinstance(body, dict) else None
        with self.lock:
            self.logins += 1
        if not isinstance(name, str) or self.users.get(name) != password:
            return 401, {"statusCode": 401, "message": "Unauthorized"}
        life = self.token_life or 3600
        with self.lock:
            if self.token_life is not None:  # JWT-shaped, with ``exp``, as the real backend issues them
                claims = json.dumps({"username": name, "iat": int(time.time()), "exp": time.time() + life})
                self.token = ".".join(base64.urlsafe_b64encode(part.encode()).decode().rstrip("=") for part in
                                      ('{"alg":"none","typ":"JWT"}', claims, secrets.token_hex(8)))
            self._tokens[self.token] = (name, time.monotonic() + life)
            token = self.token
        return 201, {"access_token": token, "id": token, "expires_in": life, "ttl": life, "userId": name,
                     "user": {"username": name}}

    def _create_dataset(self, body: Any, user: str | None) -> tuple[int, Any]:
        errors = validate_dataset(body)
        if errors:
            return _bad(errors)
        if "pid" in body and user in self.unprivileged:
            return FORBIDDEN
        return self.store_dataset(body, user, version="v3")

    def store_dataset(self, body: dict[str, Any], user: str | None, *, version: str) -> tuple[int, Any]:
        """Store a validated dataset (409 on a duplicate pid); v3 fills datasetName from sourceFolder."""
        with self.lock:
            pid = body.get("pid") or f"{self.pid_prefix}/{uuid.uuid4()}"
            if pid in self.datasets:
                return 409, {"message": f"A dataset with pid {pid} already exists!", "error": "Conflict",
                             "statusCode": 409}
            now = _now()
            folder = [p for p in body["sourceFolder"].split("/") if p]
            doc = {"isPublished": False, "keywords": [], "accessGroups": [], "sharedWith": [],
                   "datasetName": "/".join(folder[-2:]), **body, "pid": pid,
                   "size": int(body.get("size") or 0), "numberOfFiles": int(body.get("numberOfFiles") or 0),
                   "packedSize": int(body.get("packedSize") or 0), "createdBy": user, "updatedBy": user,
                   "createdAt": now, "updatedAt": now, "version": version}
            self.datasets[pid] = doc
            return 201, dict(doc)

    def _create_datablock(self, pid: str, body: Any, *, flat: bool) -> tuple[int, Any]:
        errors = validate_datablock(body, flat=flat)
        if errors:
            return _bad(errors)
        with self.lock:
            dataset = self.datasets.get(pid)
            if dataset is None:
                return _not_found(f"Dataset {pid} not found")
            now = _now()
            block = {**{k: v for k, v in body.items() if k != "datasetId"}, "_id": str(uuid.uuid4()),
                     "datasetId": pid, "ownerGroup": dataset["ownerGroup"],
                     "accessGroups": list(dataset.get("accessGroups", [])), "createdAt": now, "updatedAt": now}
            block["id"] = block["_id"]
            self.origdatablocks.setdefault(pid, []).append(block)
            dataset["size"] += int(body["size"])
            dataset["numberOfFiles"] += len(body["dataFileList"])
            dataset["updatedAt"] = now
            return 201, block

    def _delete_datablock(self, block_id: str, user: str | None) -> tuple[int, Any]:
        """As the real backend (both versions): only DELETE_GROUPS (here: the admins) may; the block's size and file
        count come off its dataset."""
        if user is None or not self.is_admin(user):
            return FORBIDDEN
        with self.lock:
            for pid, blocks in self.origdatablocks.items():
                for block in blocks:
                    if block["_id"] == block_id:
                        blocks.remove(block)
                        dataset = self.datasets[pid]
                        dataset["size"] -= int(block.get("size") or 0)
                        dataset["numberOfFiles"] -= len(block.get("dataFileList") or [])
                        return 200, block
        return _not_found(f"OrigDatablock {block_id} not found")

    def _find(self, query: dict[str, list[str]], user: str | None = None) -> tuple[int, Any]:
        try:
            spec = json.loads(query.get("filter", ["{}"])[0] or "{}")
            where = spec.get("where") or {}
            limit, skip = int(spec.get("limit") or 0), int(spec.get("skip") or 0)
            if not isinstance(where, dict):
                raise ValueError
        except (ValueError, AttributeError, TypeError):
            return _bad(["filter must be a JSON object like {\"where\": {...}}"])
        with self.lock:
            found = [dict(d) for d in self.datasets.values()
                     if all(_matches(d.get(k), v) for k, v in where.items()) and can_read(self, user, d)]
        found = found[skip:]
        return 200, found[:limit] if limit else found



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scicat_fw_ingest.testing.scicat_server",
                                     description="Run the SciCat test server in the foreground.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD",
                        help="a functional account (repeatable; default ingestor:ingestor-password)")
    parser.add_argument("--token", help="a token valid from the start (default: a random one)")
    parser.add_argument("--pid-prefix", default="20.500.12269", help="prefix of server-made pids")
    args = parser.parse_args(argv)
    users = {}
    for item in args.user:
        name, sep, password = item.partition(":")
        if not sep or not name:
            parser.error(f"--user {item!r}: expected NAME:PASSWORD")
        users[name] = password
    server = ScicatTestServer(users or None, token=args.token, port=args.port, pid_prefix=args.pid_prefix,
                              record=False)
    try:
        server.start()
    except OSError as exc:
        parser.exit(1, f"scicat test server: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}\n")
    print(f"url: {server.url}\ntoken: {server.token}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
