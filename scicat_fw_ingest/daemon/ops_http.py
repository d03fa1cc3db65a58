"""A tiny HTTP server for operations: ``GET /health`` and Prometheus ``GET /metrics``, in a daemon thread.

Why the standard library: two read-only endpoints do not justify a web framework, and a
``ThreadingHTTPServer`` in a daemon thread never holds up the listener's shutdown. A slow health
check (Kafka metadata, a SciCat round trip) runs in its own request thread, so a scrape of
/metrics is never stuck behind it. Requests are not logged: a scrape every 15 s would bury the
listener's own log lines.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from .._http import ThreadedHttp
from ..errors import SfiError

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: One check's answer: (ok, detail), or a callable giving it so that one check raising fails alone.
CheckResult = tuple[bool, str] | Callable[[], tuple[bool, str]]


class OpsServerError(SfiError):
    """The operations port cannot be opened (in use, no permission)."""


class OpsServer:
    """Serves /health (200 or 503 with JSON) and /metrics (text exposition); anything else is 404."""

    def __init__(self, port: int, *, health: Callable[[], Mapping[str, CheckResult]], metrics: Callable[[], str],
                 host: str = "127.0.0.1") -> None:
        self._requested_port = port
        self.host = host
        self.health = health
        self.metrics = metrics
        self._http: ThreadedHttp | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port once started (the picked one when asked for 0), else the requested one."""
        return self._http.server_address[1] if self._http is not None else self._requested_port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> OpsServer:
        if self._http is not None:
            return self
        try:
            self._http, self._thread = ThreadedHttp.serve((self.host, self._requested_port), _Handler, self,
                                                          "sfi-ops-http")
        except OSError as exc:
            raise OpsServerError(f"--http-port: cannot listen on {self.host}:{self._requested_port}: "
                                 f"{exc.strerror or exc}") from None
        return self

    def stop(self) -> None:
        http, self._http = self._http, None
        if http is None:
            return
        http.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> OpsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def health_report(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) of /health: 200 when every check passes, else 503."""
        checks: dict[str, dict[str, Any]] = {}
        try:
            answers = dict(self.health())
        except Exception as exc:  # the health callable itself failed: that is the answer
            answers = {"health": (False, _one_line(exc))}
        for name, answer in answers.items():
            try:
                ok, detail = answer() if callable(answer) else answer
                checks[str(name)] = {"ok": bool(ok), "detail": str(detail)}
            except Exception as exc:
                checks[str(name)] = {"ok": False, "detail": _one_line(exc)}
        healthy = all(c["ok"] for c in checks.values())
        return (200 if healthy else 503), {"status": "ok" if healthy else "fail", "checks": checks}


def _one_line(exc: BaseException) -> str:
    """An exception as one line for a response body (type name for a bug, the message for an SfiError)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, SfiError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Handler(BaseHTTPRequestHandler):
    server: ThreadedHttp
    server_version = "sfi"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: see the module docstring

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/health":
            status, body = self.server.owner.health_report()
            self._send(status, "application/json", json.dumps(body).encode("utf-8"))
        elif path == "/metrics":
            try:
                text = self.server.owner.metrics()
            except Exception as exc:
                self._send(500, "text/plain; charset=utf-8", f"metrics unavailable: {_one_line(exc)}\n".encode())
                return
            self._send(200, METRICS_CONTENT_TYPE, text.encode("utf-8"))
        else:
            self._not_found()

    def do_HEAD(self) -> None:
        self._not_found()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD

    def _not_found(self) -> None:
        self._send(404, "text/plain; charset=utf-8", b"not found: GET /health or /metrics\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
