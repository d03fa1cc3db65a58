"""The test server's API v4 routes and the access rules both versions share, as seen on the live backend.

Kept apart from ``scicat_server.py`` (HTTP, faults, v3 storage) so each rule reads against
``shared/docs/scicat-api.md``:
- v4 dataset DTO: plural ``principalInvestigators``/``proposalIds``/``instrumentIds``/``sampleIds``,
  ``datasetName`` required, a singular v3 field is a 400, a missing ``owner`` a 500 (storage needs it);
- ``POST /api/v4/origdatablocks`` with ``datasetId``: 4.5.0 *recomputes* the dataset's size and file
  count from all its datablocks, 5.1.0 adds (as v3 always does); a non-admin account not in the dataset's groups
  gets 403 there (v3's nested route accepts);
- reads by a non-admin account: only datasets whose ownerGroup/accessGroups meet its groups
  (``{username, "globalaccess"}``), else 403 ``Unauthorized access``; list reads are filtered silently.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from ._scicat_rules import DATASET_FIELDS, _BOOL, _EMAILS, _ISO, _LIST_OBJ, _LIST_STR, _OBJ, _STR, validate
from ._scicat_state import FORBIDDEN, UNAUTHORIZED_READ, ServerState, can_read

_V3_ONLY = ("principalInvestigator", "proposalId", "instrumentId", "sampleId")
V4_DATASET_FIELDS: dict[str, tuple[str, bool]] = {
    **{k: v for k, v in DATASET_FIELDS.items() if k not in _V3_ONLY},
    "datasetName": (_STR, True), "owner": (_STR, False), "principalInvestigators": (_LIST_STR, False),
    "proposalIds": (_LIST_STR, False), "instrumentIds": (_LIST_STR, False), "sampleIds": (_LIST_STR, False),
    "inputDatasets": (_LIST_STR, False), "usedSoftware": (_LIST_STR, False),
    "creationLocation": (_STR, False), "contactEmail": (_EMAILS, True), "creationTime": (_ISO, True),
    "scientificMetadata": (_OBJ, False), "techniques": (_LIST_OBJ, False), "isPublished": (_BOOL, False),
}

def handle_v4(server: ServerState, method: str, parts: list[str], query: dict[str, list[str]], body: Any,
              user: str | None) -> tuple[int, Any]:
    """Route one request below /api/v4 (``parts``: decoded path segments)."""
    lower = [p.lower() for p in parts]
    if method == "POST" and user is None:
        return FORBIDDEN
    if lower == ["datasets"] and method == "POST":
        errors = validate(body, V4_DATASET_FIELDS)
        if errors:
            return 400, {"statusCode": 400, "message": errors, "error": "Bad Request"}
        if not body.get("owner"):
            return 500, {"statusCode": 500, "message": "Internal server error"}
        status, doc = server.store_dataset(body, user, version="v4")
        return status, doc
    if len(parts) == 2 and lower[0] == "datasets" and method == "GET":
        with server.lock:
            doc = dict(server.datasets[parts[1]]) if parts[1] in server.datasets else None
        if doc is None:
            return 404, {"statusCode": 404, "message": f"Dataset {parts[1]} not found", "error": "Not Found"}
        return (200, doc) if can_read(server, user, doc) else UNAUTHORIZED_READ
    if lower[:1] == ["attachments"]:
        from ._scicat_attachments import handle_v4 as attachments

        return attachments(server, method, parts, body, user)
    if lower == ["origdatablocks"] and method == "POST":
        return _post_datablock(server, body, user)
    if lower == ["origdatablocks"] and method == "GET":
        try:
            where = json.loads(query.get("filter", ["{}"])[0] or "{}").get("where") or {}
        except (ValueError, AttributeError):
            return 400, {"statusCode": 400, "message": ["filter must be JSON"], "error": "Bad Request"}
        with server.lock:
            found = [dict(b) for pid, blocks in server.origdatablocks.items() for b in blocks
                     if ("datasetId" not in where or pid == where["datasetId"])
                     and can_read(server, user, server.datasets.get(pid, {}))]
        return 200, found
    return 404, {"statusCode": 404, "message": f"Cannot {method} /api/v4/{'/'.join(parts)}", "error": "Not Found"}


def _post_datablock(server: ServerState, body: Any, user: str | None) -> tuple[int, Any]:
    from ._scicat_rules import validate_datablock

    errors = validate_datablock(body, flat=True)
    if errors:
        return 400, {"statusCode": 400, "message": errors, "error": "Bad Request"}
    pid = body["datasetId"]
    with server.lock:
        dataset = server.datasets.get(pid)
        if dataset is None:
            return 404, {"statusCode": 404, "message": f"Dataset {pid} not found", "error": "Not Found"}
        if not can_read(server, user, dataset):
            return UNAUTHORIZED_READ
        block = {**{k: v for k, v in body.items()}, "_id": str(uuid.uuid4()), "ownerGroup": dataset["ownerGroup"],
                 "accessGroups": list(dataset.get("accessGroups", []))}
        block["id"] = block["_id"]
        blocks = server.origdatablocks.setdefault(pid, [])
        blocks.append(block)
        if server.version == "4.5.0":  # 4.5.0's v4 recomputes the totals from every datablock
            dataset["size"] = sum(int(b["size"]) for b in blocks)
            dataset["numberOfFiles"] = sum(len(b["dataFileList"]) for b in blocks)
        else:  # 5.1.0's v4 adds, as v3 does
            dataset["size"] = int(dataset.get("size") or 0) + int(body["size"])
            dataset["numberOfFiles"] = int(dataset.get("numberOfFiles") or 0) + len(body["dataFileList"])
        return 201, dict(block)
