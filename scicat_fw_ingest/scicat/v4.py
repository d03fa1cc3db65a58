"""SciCat API v4: the same server under ``/api/v4``, with another dataset DTO and datablock route.

Differences from v3 (``shared/docs/scicat-api.md``, seen on 4.5.0 and 5.1.0):
- the dataset DTO has plural arrays (``principalInvestigators``, ``proposalIds``, ``instrumentIds``,
  ``sampleIds``); a singular one is a 400. ``datasetName`` is required (v3 fills it from the last two
  parts of ``sourceFolder``; we do the same). ``owner`` is optional in the DTO but storage needs it.
- datablocks: ``POST /api/v4/origdatablocks`` with ``datasetId``; no nested read route, so they are
  found by filtering on ``datasetId``. v4 *recomputes* the dataset's size from its datablocks (v3 adds).
- a non-admin account gets 403 on the v4 datablock route for a dataset whose ownerGroup/accessGroups
  it is not in (seen on both versions); the v3 nested route accepts it, so it is tried next.
Login stays on v3 (``/api/v3/auth/login``); the token is valid for both.
"""

from __future__ import annotations

import json
from typing import Any

from ._transport import pid_path
from .v3 import ROOT as V3_ROOT

ROOT = "/api/v4"
#: v3 singular field -> v4 plural list field
PLURALS = {"principalInvestigator": "principalInvestigators", "proposalId": "proposalIds",
           "instrumentId": "instrumentIds", "sampleId": "sampleIds"}


class V4:
    """Paths and shapes of ``/api/v4``."""

    name = "v4"
    root = ROOT

    def dataset_body(self, dataset: dict[str, Any]) -> dict[str, Any]:
        """The v3-shaped dataset sfi builds, as the v4 DTO."""
        body = dict(dataset)
        for single, plural in PLURALS.items():
            value = body.pop(single, None)
            if value not in (None, "") and plural not in body:
                body[plural] = [value] if not isinstance(value, list) else value
        if not body.get("datasetName"):
            parts = [p for p in str(body.get("sourceFolder") or "").split("/") if p]
            body["datasetName"] = "/".join(parts[-2:]) or str(body.get("pid") or "dataset")
        if not body.get("owner"):
            body["owner"] = str(body.get("ownerGroup") or "unknown")
        return body

    def create_dataset_path(self) -> str:
        return f"{ROOT}/datasets"

    def dataset_path(self, pid: str) -> str:
        return f"{ROOT}/datasets/{pid_path(pid)}"

    def datablock_posts(self, pid: str, datablock: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        return [(f"{ROOT}/origdatablocks", {**datablock, "datasetId": pid}),
                (f"{V3_ROOT}/Datasets/{pid_path(pid)}/origdatablocks", datablock)]

    def datablocks_query(self, pid: str) -> tuple[str, dict[str, str] | None]:
        return f"{ROOT}/origdatablocks", {"filter": json.dumps({"where": {"datasetId": pid}})}

    def datablock_path(self, block_id: str) -> str:
        return f"{ROOT}/origdatablocks/{pid_path(block_id)}"

    def find_query(self, limit: int = 1) -> tuple[str, dict[str, str]]:
        return f"{ROOT}/datasets", {"filter": json.dumps({"limits": {"limit": limit}})}

    def is_valid_path(self) -> str:
        return f"{V3_ROOT}/Datasets/isValid"
