"""SciCat API v3: where datasets and datablocks go, and the payload shapes it takes.

sfi builds every dataset in the v3 shape (singular ``principalInvestigator``, ``proposalId`` ...);
this variant sends it as is. A datablock posted on the nested route *adds* its size and file count to
the dataset's, so sfi creates datasets without sizes (the datablock carries them).
"""

from __future__ import annotations

import json
from typing import Any

from ._transport import pid_path

ROOT = "/api/v3"


class V3:
    """Paths and shapes of ``/api/v3``."""

    name = "v3"
    root = ROOT

    def dataset_body(self, dataset: dict[str, Any]) -> dict[str, Any]:
        return dataset

    def create_dataset_path(self) -> str:
        return f"{ROOT}/Datasets"

    def dataset_path(self, pid: str) -> str:
        return f"{ROOT}/Datasets/{pid_path(pid)}"

    def datablock_posts(self, pid: str, datablock: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """Where to POST the datablock, in order (the next one is tried on a 403)."""
        return [(f"{ROOT}/Datasets/{pid_path(pid)}/origdatablocks", datablock)]

    def datablocks_query(self, pid: str) -> tuple[str, dict[str, str] | None]:
        return f"{ROOT}/Datasets/{pid_path(pid)}/origdatablocks", None

    def datablock_path(self, block_id: str) -> str:
        """One datablock (DELETE): the flat route, which takes any datablock id."""
        return f"{ROOT}/OrigDatablocks/{pid_path(block_id)}"

    def find_query(self, limit: int = 1) -> tuple[str, dict[str, str]]:
        return f"{ROOT}/Datasets", {"filter": json.dumps({"limit": limit})}

    def is_valid_path(self) -> str:
        return f"{ROOT}/Datasets/isValid"
