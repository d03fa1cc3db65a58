"""The real-backend tier itself: both versions start, log in, and differ where the docs say they do."""

from __future__ import annotations

import time
import uuid

import pytest

from scicat_fw_ingest.testing.backend import RealBackend


def test_backend_answers_and_accepts_a_raw_dataset(real_scicat: RealBackend) -> None:
    pid = f"sfi-test/{uuid.uuid4()}"
    body = {"pid": pid, "type": "raw", "ownerGroup": "ess", "owner": "A", "contactEmail": "a@example.org",
            "sourceFolder": "/data/x", "creationTime": "2024-05-01T10:00:00Z", "principalInvestigator": "A",
            "creationLocation": "ESS:CODA"}
    status, doc = real_scicat.request("POST", "/api/v3/Datasets", body, user="ingestor")
    assert status == 201, doc
    status, _ = real_scicat.request("POST", "/api/v3/Datasets", body, user="ingestor")
    assert status == 409
    status, read = real_scicat.request("GET", "/api/v3/Datasets/" + pid.replace("/", "%2F"))
    assert status == 200 and read["pid"] == pid


@pytest.mark.slow
@pytest.mark.parametrize("version,expected", [("5.1.0", 401), ("4.5.0", 403)])
def test_expired_token_status_differs_by_version(real_scicat_factory, version: str, expected: int) -> None:
    backend = real_scicat_factory(version, jwt_expires_in=2)
    token = backend.login("ingestor")
    time.sleep(3.5)
    body = {"type": "raw", "ownerGroup": "ess", "owner": "A", "contactEmail": "a@example.org",
            "sourceFolder": "/data/x", "creationTime": "2024-05-01T10:00:00Z", "principalInvestigator": "A",
            "creationLocation": "ESS:CODA"}
    status, answer = backend.request("POST", "/api/v3/Datasets", body, token=token)
    assert status == expected, answer
