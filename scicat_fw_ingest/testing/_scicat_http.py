"""The test server's HTTP layer: one handler thread per connection, faults applied before the API answers.

Split from ``scicat_server.py`` (storage, faults and the v3 API) so each part stays readable.
"""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .._http import ThreadedHttp
from ._scicat_state import RecordedRequest, ServerState
from ._scicat_v4 import handle_v4

API = "/api/v3"
API_V4 = "/api/v4"


def _matches(value: Any, cond: Any) -> bool:
    if isinstance(cond, dict) and "inq" in cond:
        return bool(value in cond["inq"])
    return bool(value == cond)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _bad(errors: list[str]) -> tuple[int, Any]:
    return 400, {"statusCode": 400, "message": errors, "error": "Bad Request"}


def _not_found(message: str) -> tuple[int, Any]:
    return 404, {"statusCode": 404, "message": message, "error": "Not Found"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections, as with the real backend
    server: ThreadedHttp

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
        owner: ServerState = self.server.owner
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
            if fault.after:
                self._answer(owner, method, split.path, query, raw, rec)
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

    def _answer(self, owner: ServerState, method: str, path: str, query: dict[str, list[str]],
                raw: bytes, rec: RecordedRequest) -> tuple[int, Any]:
        root = API if (path == API or path.startswith(API + "/")) else (
            API_V4 if path == API_V4 or path.startswith(API_V4 + "/") else None)
        if root is None:
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
        if token and not path.rstrip("/").lower().endswith("/auth/login"):
            with owner.lock:
                user, expires = owner._tokens.get(token, (None, 0.0))
            if user is None:
                return 401, {"statusCode": 401, "message": "Unauthorized"}
            if expires <= time.monotonic():
                if owner.version == "5.1.0":
                    return 401, {"statusCode": 401, "message": "SESSION_EXPIRED"}
                user = None  # 4.5.0: an expired token is no token (writes 403, reads as anonymous)
        rec.user = user
        if root == API_V4:
            route = path[len(API_V4):].strip("/")
            parts = [unquote(p) for p in route.split("/")] if route else []
            return handle_v4(owner, method, parts, query, body, user)
        return owner.handle(method, path[len(API):], query, body, user)
