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
import json
import secrets
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ._scicat_rules import validate_datablock, validate_dataset

API = "/api/v3"


@dataclass
class RecordedRequest:
    """One request as the server saw it; ``path`` is raw (still percent-encoded), ``query`` parsed."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    status: int = 0
    body: Any = None
    user: str | None = None

    def __repr__(self) -> str:  # the Authorization header holds a token: keep it out of reports
        return f"RecordedRequest({self.method} {self.path} -> {self.status})"


@dataclass
class _Fault:
    remaining: int
    status: int  # 0: drop the connection instead of answering
    path_contains: str | None
    method: str | None
    retry_after: float | None = None
    after: bool = False  # drop after the request took effect (the answer is lost, the change is not)

    def matches(self, method: str, path: str) -> bool:
        return (self.remaining > 0 and (self.method is None or self.method == method)
                and (self.path_contains is None or self.path_contains in path))


class _Http(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: ScicatTestServer


class ScicatTestServer:
    """A thread-safe in-memory SciCat v3 subset; a context manager that starts and stops it."""

    def __init__(self, users: dict[str, str] | None = None, *, token: str | None = None, port: int = 0,
                 pid_prefix: str = "20.500.12269", unprivileged: set[str] | frozenset[str] = frozenset(),
                 record: bool = True) -> None:
        self.users = dict(users if users is not None else {"ingestor": "ingestor-password"})
        #: users who may not supply their own pid (not in CREATE_DATASET_WITH_PID): 403 when they do.
        self.unprivileged = set(unprivileged)
        self.pid_prefix = pid_prefix
        self.port = port
        self.token = token or secrets.token_urlsafe(24)
        self._tokens: dict[str, str] = {self.token: "ingestor" if "ingestor" in self.users else "functional"}
        self.datasets: dict[str, dict] = {}
        self.origdatablocks: dict[str, list[dict]] = {}
        self.requests: list[RecordedRequest] = []
        #: False for long runs (demo, benchmarks): ``requests`` then stays empty instead of growing.
        self.record = record
        self.lock = threading.RLock()
        self._faults: list[_Fault] = []
        self._delay = 0.0
        self._http: _Http | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API}"

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> ScicatTestServer:
        http = _Http(("127.0.0.1", self.port), _Handler)
        http.owner = self
        self.port = http.server_address[1]
        self._http = http
        self._thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"scicat-test-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
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
                  method: str | None = None, retry_after: float | None = None) -> None:
        """Answer the next ``n`` matching requests with ``status`` (and ``Retry-After`` when given).

        ``path_contains`` is matched against the raw (percent-encoded) path, e.g. "origdatablocks".
        """
        with self.lock:
            self._faults.append(_Fault(n, status, path_contains, method and method.upper(), retry_after))

    def slow(self, seconds: float) -> None:
        self._delay = max(0.0, seconds)

    def drop_next(self, n: int, *, path_contains: str | None = None, method: str | None = None,
                  after: bool = False) -> None:
        """Close the connection on the next ``n`` matching requests without an answer.

        By default nothing is stored; ``after=True`` lets the request take effect first (a lost answer).
        """
        with self.lock:
            self._faults.append(_Fault(n, 0, path_contains, method and method.upper(), after=after))

    def expire_tokens(self) -> None:
        """Invalidate every issued token (clients get 401); login then issues a new ``token``."""
        with self.lock:
            self.token = secrets.token_urlsafe(24)
            self._tokens = {}

    def _take_fault(self, method: str, path: str) -> _Fault | None:
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
        if method == "POST" and user is None:
            return 403, {"statusCode": 403, "message": "Forbidden resource", "error": "Forbidden"}
        if lower == ["datasets"] and method == "POST":
            return self._create_dataset(body, user)
        if lower == ["datasets"] and method == "GET":
            return self._find(query)
        if len(parts) == 2 and lower[0] == "datasets" and method == "GET":
            with self.lock:
                doc = dict(self.datasets[parts[1]]) if parts[1] in self.datasets else None
            return (200, doc) if doc is not None else _not_found(f"Dataset {parts[1]} not found")
        if len(parts) == 3 and lower[0] == "datasets" and lower[2] == "origdatablocks":
            if method == "POST":
                return self._create_datablock(parts[1], body, flat=False)
            if method == "GET":
                with self.lock:
                    if parts[1] not in self.datasets:
                        return _not_found(f"Dataset {parts[1]} not found")
                    return 200, list(self.origdatablocks.get(parts[1], []))
        if lower == ["origdatablocks"] and method == "POST":
            pid = body.get("datasetId") if isinstance(body, dict) else None
            return self._create_datablock(pid if isinstance(pid, str) else "", body, flat=True)
        return _not_found(f"Cannot {method} {API}/{route.strip('/')}")

    def _login(self, body: Any) -> tuple[int, Any]:
        name = body.get("username") if isinstance(body, dict) else None
        password = body.get("password") if isinstance(body, dict) else None
        if not isinstance(name, str) or self.users.get(name) != password:
            return 401, {"statusCode": 401, "message": "Unauthorized"}
        with self.lock:
            self._tokens[self.token] = name
            token = self.token
        return 201, {"access_token": token, "id": token, "expires_in": 3600, "ttl": 3600, "userId": name,
                     "user": {"username": name}}

    def _create_dataset(self, body: Any, user: str) -> tuple[int, Any]:
        errors = validate_dataset(body)
        if errors:
            return _bad(errors)
        if "pid" in body and user in self.unprivileged:
            return 403, {"statusCode": 403, "message": "Forbidden resource", "error": "Forbidden"}
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
                   "createdAt": now, "updatedAt": now, "version": "v3"}
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

    def _find(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        try:
            spec = json.loads(query.get("filter", ["{}"])[0] or "{}")
            where = spec.get("where") or {}
            limit, skip = int(spec.get("limit") or 0), int(spec.get("skip") or 0)
            if not isinstance(where, dict):
                raise ValueError
        except (ValueError, AttributeError, TypeError):
            return _bad(["filter must be a JSON object like {\"where\": {...}}"])
        with self.lock:
            found = [dict(d) for d in self.datasets.values() if all(_matches(d.get(k), v) for k, v in where.items())]
        found = found[skip:]
        return 200, found[:limit] if limit else found


def _matches(value: Any, cond: Any) -> bool:
    if isinstance(cond, dict) and "inq" in cond:
        return value in cond["inq"]
    return value == cond


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _bad(errors: list[str]) -> tuple[int, Any]:
    return 400, {"statusCode": 400, "message": errors, "error": "Bad Request"}


def _not_found(message: str) -> tuple[int, Any]:
    return 404, {"statusCode": 404, "message": message, "error": "Not Found"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections, as with the real backend
    server: _Http

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle + delayed ACK cost 40 ms a request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.owner.lock:
            self.server.owner._conns.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.owner.lock:
                self.server.owner._conns.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and benchmarks read stderr
        return

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        owner = self.server.owner
        split = urlsplit(self.path)
        query = parse_qs(split.query)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        raw = self.rfile.read(length) if length > 0 else b""
        rec = RecordedRequest(method, split.path, query, dict(self.headers.items()))
        if owner.record:
            with owner.lock:
                owner.requests.append(rec)
        fault = owner._take_fault(method, split.path)
        if fault is not None and fault.status == 0:
            if fault.after:
                rec.status = self._answer(owner, method, split.path, query, raw, rec)[0]
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if owner._delay:
            time.sleep(owner._delay)
        headers: dict[str, str] = {}
        if fault is not None:
            status, payload = fault.status, {"statusCode": fault.status, "message": "injected fault"}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
        else:
            status, payload = self._answer(owner, method, split.path, query, raw, rec)
        rec.status = status
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _answer(self, owner: ScicatTestServer, method: str, path: str, query: dict[str, list[str]],
                raw: bytes, rec: RecordedRequest) -> tuple[int, Any]:
        if not (path == API or path.startswith(API + "/")):
            return _not_found(f"Cannot {method} {path}")
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return _bad(["body is not valid JSON"])
        rec.body = body
        token = None
        auth = self.headers.get("Authorization") or ""
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        elif "access_token" in query:  # accepted like the real server; tests assert it never happens
            token = query["access_token"][0]
        user = None
        if token:
            with owner.lock:
                user = owner._tokens.get(token)
            if user is None and not path.rstrip("/").lower().endswith("/auth/login"):
                return 401, {"statusCode": 401, "message": "Unauthorized"}
        rec.user = user
        return owner.handle(method, path[len(API):], query, body, user)


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
