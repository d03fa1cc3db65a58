"""The parent of `sfi listen`: a child that dies of a signal is restarted with one line; too many crashes end it."""

from __future__ import annotations

import logging
import sys

import pytest

from scicat_fw_ingest.daemon._supervise import GIVE_UP_CODE, MAX_CRASHES, supervise

CRASH = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]


def test_a_crashing_child_is_restarted_then_given_up_on_with_a_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="sfi.listen"):
        assert supervise(CRASH, restart_delay=0.0) == GIVE_UP_CODE
    lines = [r.getMessage() for r in caplog.records]
    assert len([m for m in lines if "died of SIGSEGV" in m and "restarting it" in m]) == MAX_CRASHES - 1
    assert "giving up (exit 70)" in lines[-1] and "Restart=on-failure" in lines[-1]


def test_a_child_ending_on_its_own_ends_the_parent_with_its_code(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="sfi.listen"):
        assert supervise([sys.executable, "-c", "import sys; sys.exit(3)"]) == 3
        assert supervise([sys.executable, "-c", "pass"]) == 0
    assert not caplog.records
