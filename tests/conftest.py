"""Shared fixtures: a real Kafka-protocol broker, unique topics, and running ``sfi`` as a user would."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from scicat_fw_ingest.config import Config, load_config
from scicat_fw_ingest.testing.broker import TansuBroker
from scicat_fw_ingest.testing.checkout import SHARED_DATA
from scicat_fw_ingest.testing.sfi_process import run_sfi

# The real SciCat backend (../shared/scicat-backend/start.sh, both versions, or SFI_TEST_SCICAT_URL) comes from
# this plugin: fixtures ``real_scicat`` and ``real_scicat_factory``, and the project's SciCat test server (fixture
# ``scicat_server``), so test modules take them as arguments without importing them. Builders (NeXus files, payloads,
# listener processes) are in scicat_fw_ingest.testing: test modules import the package, never each other.
pytest_plugins = ("scicat_fw_ingest.testing.fixtures",)



@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a real broker: $SFI_TEST_KAFKA, else a Tansu started for this session."""
    external = os.environ.get("SFI_TEST_KAFKA")
    if external:
        yield external
        return
    with TansuBroker() as broker:
        yield broker.bootstrap


@pytest.fixture
def kafka_config(kafka_bootstrap: str) -> Config:
    return load_config(None, env={}, overrides={"kafka": {"bootstrap.servers": kafka_bootstrap}})


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses (the broker is shared by the session)."""
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture
def sfi():
    return run_sfi
