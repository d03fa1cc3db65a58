"""Shared fixtures: a real Kafka-protocol broker, unique topics, and running ``sfi`` as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scicat_fw_ingest.config import Config, load_config
from scicat_fw_ingest.testing.broker import TansuBroker

# The real SciCat backend (../shared/scicat-backend/start.sh, both versions, or SFI_TEST_SCICAT_URL) comes from
# this plugin: fixtures ``real_scicat`` and ``real_scicat_factory``; the project's SciCat test server
# (fixture ``scicat_server``) from tests/scicat_fixtures, so test modules take it as an argument without importing it.
pytest_plugins = ("scicat_fw_ingest.testing.fixtures", "tests.scicat_fixtures")

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


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


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def sigint_as_from_a_terminal() -> None:
    """``preexec_fn`` for a child that a test Ctrl-Cs: SIGINT at its default, as under a terminal.

    A suite started in the background by a non-interactive shell (``cmd &``) inherits SIGINT *ignored*,
    and Python then installs no KeyboardInterrupt handler: the Ctrl-C tests would test the launcher."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_sfi(*args: str, input: bytes | None = None, env: dict[str, str] | None = None,
            timeout: float = 60, cwd: Path | None = None) -> Run:
    """Run the real ``sfi`` entry point in a subprocess, exactly as an operator would."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SFI_")}
    proc = subprocess.run(
        [sys.executable, "-m", "scicat_fw_ingest", *args],
        input=input, capture_output=True, timeout=timeout, env={**base, **(env or {})}, cwd=cwd,
    )
    return Run(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))


@pytest.fixture
def sfi():
    return run_sfi
