"""A loopback HTTP proxy in front of a real server that injects faults *after* the server acted.

Why: the faults that duplicate datablocks happen between the backend and the client — the backend
stored the POST, but the answer came after the client's timeout, was replaced by a 502 from a
gateway, or never came because the client died. ``ScicatTestServer`` can imitate them; this proxy
makes the real backend live through them. Every request is forwarded at once (so the backend stores
it); a matching rule then holds the answer back (``delay``) or replaces it (``replace``). Two more
rules act *before* the server sees the request: ``hold`` forwards it only after a pause (a server
slow to store: the client may time out, die or look before the request lands), and ``drop`` never
forwards it (a POST lost on the way: the client gets no answer, the server stored nothing).

    with FaultProxy(backend.base) as proxy:
        proxy.delay(3.0, path_contains="origdatablocks", method="POST")
        client = ScicatClient(proxy.url, ...)
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from urllib.parse import urlsplit

from .._http import ThreadedHttp

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade", "content-length"}


@dataclass
class _Rule:
    remaining: int
    path_contains: str | None
    method: str | None
    delay: float = 0.0
    status: int | None = None
    #: seconds to wait before forwarding (the server stores late)
    hold: float = 0.0
    #: never forward; the client's connection is held open ``delay`` seconds, then closed without an answer
    drop: bool = False
    #: never forward; answer ``status`` at once (SciCat down behind its gateway)
    refuse: bool = False

    def matches(self, method: str, path: str) -> bool:
        return (self.remaining > 0 and (self.method is None or self.method == method)
                and (self.path_contains is None or self.path_contains in path))


class FaultProxy:
    """Forward to ``target`` (a server root, e.g. ``http://127.0.0.1:3000``); ``url`` is the proxied /api/v3."""

    def __init__(self, target: str) -> None:
        split = urlsplit(target)
        self.host, self.port_target = split.hostname or "127.0.0.1", split.port or 80
        self.port = 0
        self.lock = threading.Lock()
        self.rules: list[_Rule] = []
        #: (method, path, status sent to the client) of every answered request, in order
        self.seen: list[tuple[str, str, int]] = []
        #: (method, path) of every request passed on to the server, at the moment it was passed on
        self.forwarded: list[tuple[str, str]] = []
        self._http: ThreadedHttp | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.base + "/api/v3"

    def delay(self, seconds: float, *, path_contains: str | None = None, method: str | None = None,
              n: int = 1) -> None:
        """Hold back the answer to the next ``n`` matching requests (the server has already acted)."""
        with self.lock:
            self.rules.append(_Rule(n, path_contains, method, delay=seconds))

    def replace(self, status: int, *, path_contains: str | None = None, method: str | None = None,
                n: int = 1) -> None:
        """Answer the next ``n`` matching requests with ``status`` after the server acted on them."""
        with self.lock:
            self.rules.append(_Rule(n, path_contains, method, status=status))

    def hold(self, seconds: float, *, path_contains: str | None = None, method: str | None = None,
             n: int = 1) -> None:
        """Forward the next ``n`` matching requests only after ``seconds`` (slow to store), even when the
        client has given up or died meanwhile."""
        with self.lock:
            self.rules.append(_Rule(n, path_contains, method, hold=seconds))

    def drop(self, *, path_contains: str | None = None, method: str | None = None, n: int = 1,
             after: float = 0.0) -> None:
        """Never forward the next ``n`` matching requests; close the client's connection after ``after``
        seconds without an answer."""
        with self.lock:
            self.rules.append(_Rule(n, path_contains, method, delay=after, drop=True))

    def refuse(self, status: int = 503, *, path_contains: str | None = None, method: str | None = None,
               n: int = 1) -> None:
        """Answer the next ``n`` matching requests with ``status`` without forwarding them (an outage)."""
        with self.lock:
            self.rules.append(_Rule(n, path_contains, method, status=status, refuse=True))

    def clear(self) -> None:
        """Forget every rule not used up yet."""
        with self.lock:
            self.rules.clear()

    def start(self) -> FaultProxy:
        self._http, _thread = ThreadedHttp.serve(("127.0.0.1", 0), _Handler, self, "fault-proxy")
        self.port = self._http.server_address[1]
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _take(self, method: str, path: str, *, before: bool) -> _Rule | None:
        """The first matching rule that acts before forwarding (``before``: hold, drop) or after it."""
        with self.lock:
            for rule in self.rules:
                if (rule.hold > 0 or rule.drop or rule.refuse) == before and rule.matches(method, path):
                    rule.remaining -= 1
                    return rule
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadedHttp

    def log_message(self, format: str, *args: object) -> None:
        return

    def handle(self) -> None:
        try:
            super().handle()
        except ConnectionError:  # a client killed (kill -9) between two requests of a kept-alive connection
            self.close_connection = True

    def do_GET(self) -> None:
        self._forward("GET")

    def do_POST(self) -> None:
        self._forward("POST")

    def do_PATCH(self) -> None:
        self._forward("PATCH")

    def do_PUT(self) -> None:
        self._forward("PUT")

    def do_DELETE(self) -> None:
        self._forward("DELETE")

    def _pass_on(self, owner: FaultProxy, method: str, body: bytes | None,
                 headers: dict[str, str]) -> tuple[int, str, bytes, list[tuple[str, str]]]:
        conn = http.client.HTTPConnection(owner.host, owner.port_target, timeout=120)
        with owner.lock:
            owner.forwarded.append((method, self.path))
        try:
            conn.request(method, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            return (resp.status, resp.reason, resp.read(),
                    [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP])
        except OSError:
            return 502, "Bad Gateway", b'{"message":"proxy: no answer"}', []
        finally:
            conn.close()

    def _forward(self, method: str) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        early = owner._take(method, self.path, before=True)
        if early is not None and early.drop:
            time.sleep(early.delay)
            with owner.lock:
                owner.seen.append((method, self.path, 0))
            self.close_connection = True  # no answer: the client sees a dropped connection or its own timeout
            return
        if early is not None and early.refuse:
            status, reason, data = early.status or 503, "Injected", b'{"message":"proxy: SciCat unavailable"}'
            out_headers = [("Content-Type", "application/json")]
            rule: _Rule | None = None
        else:
            if early is not None:
                time.sleep(early.hold)
            status, reason, data, out_headers = self._pass_on(owner, method, body, headers)
            rule = owner._take(method, self.path, before=False)
        if rule is not None and rule.delay:
            time.sleep(rule.delay)
        if rule is not None and rule.status is not None:
            status, reason = rule.status, "Injected"
            data = b'{"statusCode": %d, "message": "injected by the fault proxy"}' % rule.status
            out_headers = [("Content-Type", "application/json")]
        with owner.lock:
            owner.seen.append((method, self.path, status))
        try:
            self.send_response(status, reason)
            for key, value in out_headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (timeout) or died: the answer goes nowhere
            self.close_connection = True
