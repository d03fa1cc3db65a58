"""Convergence across hosts: a dataset with duplicate identical datablocks is repaired to one.

Why apart from ``_client``: one host's journal keeps its own POSTs single, but two hosts (a failover) can each
store a datablock; whoever looks next finds the duplicates. The repair is the same for ``upsert`` and
``converge``: delete the datablocks identical to the oldest, and correct the dataset's size and file count when
the backend left them off. Datablocks that differ are left to an operator.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from ._transport import ScicatError, Transport

log = logging.getLogger("sfi.scicat")


class DatablockPaths(Protocol):
    """The paths the repair needs of an API version (``v3.V3``, ``v4.V4``)."""

    def dataset_path(self, pid: str) -> str: ...
    def datablock_path(self, block_id: str) -> str: ...


def repair_duplicates(transport: Transport, api: DatablockPaths,
                      read_dataset: Callable[[str], dict[str, Any] | str | None], pid: str,
                      blocks: list[dict[str, Any]], before: dict[str, Any]) -> str:
    """Delete datablocks identical to the oldest one (same files, sizes, checksums) and correct the
    dataset's size and file count: "repaired", or "exists" when the blocks differ (left to an operator)."""
    blocks = sorted(blocks, key=lambda b: str(b.get("createdAt") or ""))
    keep, extras = blocks[0], [b for b in blocks[1:] if same_files(b, blocks[0])]
    if len(extras) < len(blocks) - 1:
        log.warning("dataset %s has %d datablocks that list different files or checksums: left as they are "
                    "(an operator decides which is right)", pid, len(blocks))
        if not extras:
            return "exists"
    for block in extras:
        block_id = str(block.get("_id") or block.get("id") or "")
        path = api.datablock_path(block_id)
        resp, _ = transport.exchange("DELETE", path)
        if resp is not None and resp.status_code == 404:
            continue  # another listener repaired it first
        if resp is not None and resp.status_code == 403:
            raise ScicatError(f"dataset {pid} has {len(blocks)} identical datablocks and this account may not "
                              f"delete the {len(extras)} extra one(s) (403: not in the backend's DELETE_GROUPS); "
                              "an admin must delete them and correct the dataset's size", status=403)
        if resp is None or resp.status_code >= 300:
            raise transport.error("DELETE", path, resp)
    kept = [keep, *[b for b in blocks[1:] if b not in extras]]
    size = sum(int(b.get("size") or 0) for b in kept)
    count = sum(len(b.get("dataFileList") or []) for b in kept)
    # Both versions take a deleted datablock's size off the dataset; correct it anyway if it is still off
    # (a lost read-modify-write update of concurrent POSTs, see docs/scicat.md)
    seen = read_dataset(pid)
    patched = ""
    if isinstance(seen, dict) and (seen.get("size"), seen.get("numberOfFiles")) != (size, count):
        path = api.dataset_path(pid)
        resp, _ = transport.exchange("PATCH", path, body={"size": size, "numberOfFiles": count})
        if resp is None or resp.status_code >= 300:
            raise transport.error("PATCH", path, resp)
        patched = " (patched)"
    log.warning("dataset %s had %d identical datablocks: deleted %d duplicate(s); dataset size %s -> %d, "
                "numberOfFiles %s -> %d%s", pid, len(blocks), len(extras), before.get("size"), size,
                before.get("numberOfFiles"), count, patched)
    return "repaired"


def same_files(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two datablocks describe the same files: paths, sizes and checksums equal (times may differ)."""
    def files(block: dict[str, Any]) -> list[tuple[str, object, object]]:
        return sorted((str(f.get("path")), f.get("size"), f.get("chk")) for f in block.get("dataFileList") or []
                      if isinstance(f, dict))
    return files(a) == files(b) and a.get("size") == b.get("size")


__all__ = ["DatablockPaths", "repair_duplicates", "same_files"]
