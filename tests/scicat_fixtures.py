"""Shared SciCat fixtures: a real-HTTP test server and valid payloads to start from.

Use from any test module with ``from .scicat_fixtures import scicat_server, raw_dataset, datablock``
(tests is a package), or from the root conftest with ``pytest_plugins = ["tests.scicat_fixtures"]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from scicat_fw_ingest.testing.scicat_server import ScicatTestServer

USER = "ingestor"
PASSWORD = "pw-for-tests-1b7c"


@pytest.fixture
def scicat_server() -> Iterator[ScicatTestServer]:
    """A started SciCat test server with one functional account ``USER``/``PASSWORD``."""
    with ScicatTestServer({USER: PASSWORD}) as server:
        yield server


def raw_dataset(pid: str | None = "20.500.12269/test-0001", **fields: Any) -> dict[str, Any]:
    """A POST /Datasets body the real backend accepts (without size/numberOfFiles: the datablock carries them)."""
    body: dict[str, Any] = {
        "type": "raw", "ownerGroup": "ess", "owner": "Ada Lovelace", "contactEmail": "ada@example.org",
        "sourceFolder": "/data/ess/2024/coda", "creationTime": "2024-05-01T10:00:00Z",
        "principalInvestigator": "Ada Lovelace", "creationLocation": "ESS:CODA",
    }
    if pid is not None:
        body["pid"] = pid
    body.update(fields)
    return body


def datablock(*sizes: int, chk_alg: str = "sha256") -> dict[str, Any]:
    """A POST /Datasets/{pid}/origdatablocks body with one file per size (default: one 10-byte file)."""
    sizes = sizes or (10,)
    files = [{"path": f"file_{i}.nxs", "size": size, "time": "2024-05-01T10:05:00Z", "chk": f"{i:064x}",
              "uid": "1000", "gid": "1000", "perm": "-rw-r--r--"} for i, size in enumerate(sizes)]
    return {"size": sum(sizes), "chkAlg": chk_alg, "dataFileList": files}
