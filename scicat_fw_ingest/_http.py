"""One threaded HTTP server mechanism for sfi's small servers: the daemons' ops server and the test servers.

Why one: bind, serve in a daemon thread and shut down were written three times (ops server, SciCat test
server, fault proxy) and drifted; the daemons' ops endpoints are in ``daemon.ops_http``.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ThreadedHttp(ThreadingHTTPServer):
    """A loopback-friendly HTTP server run in a daemon thread; handlers reach their object as ``server.owner``.

    One mechanism for the ops server here and the test servers in ``testing/`` (SciCat, fault proxy).
    """

    daemon_threads = True
    allow_reuse_address = True
    owner: Any

    @classmethod
    def serve(cls, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], owner: Any,
              name: str) -> tuple[ThreadedHttp, threading.Thread]:
        """Bind ``address`` (port 0: any), serve in a daemon thread; OSError when it cannot bind."""
        http = cls(address, handler)
        http.owner = owner
        thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.05},
                                  name=f"{name}-{http.server_address[1]}", daemon=True)
        thread.start()
        return http, thread

    def close(self) -> None:
        """Stop serving and release the port."""
        self.shutdown()
        self.server_close()
