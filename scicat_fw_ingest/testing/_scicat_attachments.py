"""The test server's attachment routes (v3 nested, v4 flat), with the rules seen on the real backend.

Observed on 4.5.0 and 5.1.0 (``docs/scicat.md#attachments``):
- v3 ``POST /Datasets/{pid}/attachments``: ``caption`` and ``ownerGroup`` required strings, ``thumbnail``
  optional, ``accessGroups``, ``id``, ``datasetId``, ``proposalId``, ``sampleId`` allowed, anything else a
  400; the dataset must exist (404) and, for a non-admin account, be readable (403); a client ``id`` is
  ignored (a new uuid each time: two POSTs, two attachments); ``ownerGroup`` becomes the dataset's.
  ``GET`` on the same route lists every attachment of the dataset (also those made through v4).
- v4 ``POST /attachments``: ``caption``, ``ownerGroup`` (strings) and ``isPublished`` (bool) required;
  ``aid`` optional and kept as the id; ``relationships`` a list of ``{targetId, targetType, relationType?}``
  (targetType one of dataset/proposal/sample/published_data; the target is not checked); a second POST of
  the same ``aid`` is a 500 (the database's duplicate key, on both versions); a non-admin account gets 403.
  ``GET /attachments/{aid}``: 200 or 404.
"""

from __future__ import annotations

import uuid
from typing import Any

from ._scicat_rules import _BOOL, _LIST_OBJ, _LIST_STR, _STR, validate
from ._scicat_state import FORBIDDEN, UNAUTHORIZED_READ, ServerState, can_read

V3_FIELDS: dict[str, tuple[str, bool]] = {
    "thumbnail": (_STR, False), "caption": (_STR, True), "ownerGroup": (_STR, True), "accessGroups": (_LIST_STR, False),
    "id": (_STR, False), "datasetId": (_STR, False), "proposalId": (_STR, False), "sampleId": (_STR, False),
    "isPublished": (_BOOL, False),
}
V4_FIELDS: dict[str, tuple[str, bool]] = {
    "thumbnail": (_STR, False), "caption": (_STR, True), "ownerGroup": (_STR, True), "accessGroups": (_LIST_STR, False),
    "aid": (_STR, False), "isPublished": (_BOOL, True), "relationships": (_LIST_OBJ, False),
}
TARGET_TYPES = ("dataset", "proposal", "sample", "published_data")


def _bad(errors: list[str]) -> tuple[int, Any]:
    return 400, {"statusCode": 400, "message": errors, "error": "Bad Request"}


def _missing(pid: str) -> tuple[int, Any]:
    return 404, {"statusCode": 404, "message": f"dataset: {pid} not found", "error": "Not Found"}


def _targets(item: dict[str, Any]) -> set[str]:
    found = {str(r.get("targetId")) for r in item.get("relationships") or [] if r.get("targetType") == "dataset"}
    return found | ({item["datasetId"]} if item.get("datasetId") else set())


def handle_v3(server: ServerState, method: str, pid: str, body: Any, user: str | None) -> tuple[int, Any]:
    """``/Datasets/{pid}/attachments`` (GET lists, POST creates)."""
    with server.lock:
        dataset = server.datasets.get(pid)
        if dataset is None:
            return _missing(pid)
        if not can_read(server, user, dataset):
            return UNAUTHORIZED_READ
        if method == "GET":
            return 200, [dict(a) for a in server.attachments.values() if pid in _targets(a)]
        errors = validate(body, V3_FIELDS)
        if errors:
            return _bad(errors)
        aid = str(uuid.uuid4())  # the real backend ignores a client id here
        doc = {**{k: v for k, v in body.items() if k != "id"}, "_id": aid, "id": aid, "datasetId": pid,
               "ownerGroup": dataset["ownerGroup"], "accessGroups": list(body.get("accessGroups") or []),
               "isPublished": bool(body.get("isPublished", False)), "createdBy": user}
        server.attachments[aid] = doc
        return 201, dict(doc)


def handle_v4(server: ServerState, method: str, parts: list[str], body: Any,
              user: str | None) -> tuple[int, Any]:
    """``/attachments`` (POST) and ``/attachments/{aid}`` (GET)."""
    if method == "GET" and len(parts) == 2:
        with server.lock:
            doc = server.attachments.get(parts[1])
        if doc is None:
            return 404, {"statusCode": 404, "message": f"Attachment: {parts[1]} not found", "error": "Not Found"}
        return 200, dict(doc)
    if method != "POST" or len(parts) != 1:
        return 404, {"statusCode": 404, "message": f"Cannot {method} /api/v4/{'/'.join(parts)}", "error": "Not Found"}
    if user is None or not server.is_admin(user):
        if server.version == "4.5.0":
            return FORBIDDEN
        return 403, {"statusCode": 403, "message": "Unauthorized to create this attachment", "error": "Forbidden"}
    errors = validate(body, V4_FIELDS)
    for i, rel in enumerate(body.get("relationships") or [] if isinstance(body, dict) else []):
        if rel.get("targetType") not in TARGET_TYPES:
            errors.append(f"relationships.{i}.targetType must be one of the following values: "
                          + ", ".join(TARGET_TYPES))
    if errors:
        return _bad(errors)
    with server.lock:
        aid = body.get("aid") or str(uuid.uuid4())
        if aid in server.attachments:  # the database's duplicate key, unhandled: 500, never 409
            return 500, {"statusCode": 500, "message": "Internal server error"}
        relationships = [{"relationType": "is attached to", **r} for r in body.get("relationships") or []]
        doc = {**body, "aid": aid, "_id": aid, "id": aid, "relationships": relationships, "createdBy": user,
               "accessGroups": list(body.get("accessGroups") or [])}
        server.attachments[aid] = doc
        return 201, dict(doc)
