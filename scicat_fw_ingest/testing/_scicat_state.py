"""What the SciCat test server's parts share: the recorded request, an injected fault, the access rules both
API versions apply, and ``ServerState``, the server as its route handlers see it.

Why a module of its own: the HTTP layer (``_scicat_http``), the v4 routes (``_scicat_v4``) and the attachment
routes (``_scicat_attachments``) all need these, and taking them from ``scicat_server`` (which imports those
modules to serve) or from each other made an import circle. Every part imports this leaf; only
``scicat_server`` imports the parts.
"""

from __future__ import annotations

import socket
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

FORBIDDEN = (403, {"statusCode": 403, "message": "Forbidden resource", "error": "Forbidden"})
UNAUTHORIZED_READ = (403, {"statusCode": 403, "message": "Unauthorized access", "error": "Forbidden"})


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
class Fault:
    """A fault injected on the next matching requests (``ScicatTestServer.fail_next``/``drop_next``)."""

    remaining: int
    status: int  # 0: drop the connection instead of answering
    path_contains: str | None
    method: str | None
    retry_after: float | None = None
    after: bool = False  # drop after the request took effect (the answer is lost, the change is not)

    def matches(self, method: str, path: str) -> bool:
        return (self.remaining > 0 and (self.method is None or self.method == method)
                and (self.path_contains is None or self.path_contains in path))


class ServerState(Protocol):
    """``ScicatTestServer`` as the HTTP layer and the v4 and attachment routes use it (documents, tokens, faults,
    the v3 routes); read-only members so that the server's own, more precise types fit."""

    @property
    def version(self) -> str: ...
    @property
    def lock(self) -> AbstractContextManager[bool]: ...
    @property
    def record(self) -> bool: ...
    @property
    def requests(self) -> list[RecordedRequest]: ...
    @property
    def datasets(self) -> dict[str, dict[str, Any]]: ...
    @property
    def origdatablocks(self) -> dict[str, list[dict[str, Any]]]: ...
    @property
    def attachments(self) -> dict[str, dict[str, Any]]: ...
    @property
    def _tokens(self) -> dict[str, tuple[str, float]]: ...
    @property
    def _delay(self) -> float: ...
    @property
    def _conns(self) -> set[socket.socket]: ...
    def is_admin(self, user: str) -> bool: ...
    def _take_fault(self, method: str, path: str) -> Fault | None: ...
    def handle(self, method: str, route: str, query: dict[str, list[str]], body: Any,
               user: str | None) -> tuple[int, Any]: ...
    def store_dataset(self, body: dict[str, Any], user: str | None, *, version: str) -> tuple[int, Any]: ...


def groups_of(user: str) -> set[str]:
    """The groups a functional account is in on the real backend (``GET auth/whoami`` currentGroups)."""
    return {user, "globalaccess"}


def can_read(server: ServerState, user: str | None, doc: dict[str, Any]) -> bool:
    """Whether ``user`` may read the dataset ``doc`` (both API versions): admins and published datasets always,
    else only an account in the dataset's ownerGroup or accessGroups."""
    if user is not None and server.is_admin(user):
        return True
    if doc.get("isPublished"):
        return True
    if user is None:
        return False
    return bool(({doc.get("ownerGroup")} | set(doc.get("accessGroups") or [])) & groups_of(user))


__all__ = ["FORBIDDEN", "UNAUTHORIZED_READ", "Fault", "RecordedRequest", "ServerState", "can_read", "groups_of"]
