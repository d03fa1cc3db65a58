"""sfi's own run-control readers give the library's value, or step aside (None) for the library to decide."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from typing import Any

import pytest
import streaming_data_types as sdt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streaming_data_types import serialise_6s4t, serialise_answ, serialise_pl72, serialise_wrdn, serialise_x5f2
from streaming_data_types.fbschemas.action_response_answ.ActionOutcome import ActionOutcome
from streaming_data_types.fbschemas.action_response_answ.ActionType import ActionType

from scicat_fw_ingest.fbschemas import run_control
from scicat_fw_ingest.messages import decode
from scicat_fw_ingest.testing.message_samples import SAMPLES

CONTROL = sorted(run_control.SCHEMAS)


def _same_as_library(schema: str, data: bytes) -> None:
    ours = run_control.read(schema, data)
    if ours is None:
        return  # the library decides (and decode() asks it)
    theirs = sdt.DESERIALISERS[schema](data)  # must not fail where ours succeeded
    assert type(ours).__name__ == type(theirs).__name__
    assert ours._fields == theirs._fields
    assert tuple(ours) == tuple(theirs)
    assert [type(v) for v in ours] == [type(v) for v in theirs]


@pytest.mark.parametrize("schema", CONTROL)
def test_samples_are_read_here_and_equal_the_library(schema: str) -> None:
    data = SAMPLES[schema][0]
    assert run_control.read(schema, data) is not None
    _same_as_library(schema, data)


def _variants() -> list[tuple[str, bytes]]:
    """Empty and unusual values the library writes: defaults, empty strings, extremes."""
    out = [
        ("pl72", serialise_pl72("", "")),
        ("pl72", serialise_pl72("j", "f.nxs", start_time=0, stop_time=2**64 - 1, run_name="", nexus_structure="",
                                service_id="", instrument_name="", broker="", metadata="", control_topic="")),
        ("6s4t", serialise_6s4t("", run_name="", service_id="", command_id="", stop_time=None)),
        ("answ", serialise_answ("", "", "", ActionType.SetStopTime, ActionOutcome.Failure, "", -1,
                                datetime.fromtimestamp(0))),
        ("answ", serialise_answ("s", "j", "c", ActionType.StartJob, ActionOutcome.Success, "ünïcode", 2**31 - 1,
                                datetime(2999, 12, 31))),
        ("x5f2", serialise_x5f2("", "", "", "", 0, 0, "")),
        ("x5f2", serialise_x5f2("kafka-to-nexus", "6.1", "s", "h", 2**32 - 1, 2**32 - 1, "{}")),
        ("wrdn", serialise_wrdn("", "", False, "", None, None)),
        ("wrdn", serialise_wrdn("s", "j", True, "/d/f.nxs", "", "")),
    ]
    return out


@pytest.mark.parametrize(("schema", "data"), _variants())
def test_edge_values_equal_the_library(schema: str, data: bytes) -> None:
    assert run_control.read(schema, data) is not None
    _same_as_library(schema, data)


def test_a_pl72_with_a_detector_map_and_a_6s4t_without_command_id_go_to_the_library() -> None:
    import numpy as np
    from streaming_data_types.run_start_pl72 import DetectorSpectrumMap

    mapped = serialise_pl72("j", "f.nxs", detector_spectrum_map=DetectorSpectrumMap(
        np.array([1, 2], dtype=np.int32), np.array([3, 4], dtype=np.int32), 2))
    assert run_control.read("pl72", mapped) is None
    assert decode(mapped).value.detector_spectrum_map.n_spectra == 2


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=st.sampled_from(CONTROL), data=st.data())
def test_mutated_bytes_give_the_library_value_or_none(schema: str, data: Any) -> None:
    raw = bytearray(SAMPLES[schema][0])
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(8, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(8, len(raw)))
    _same_as_library(schema, bytes(raw[:cut]))


def test_list_status_decoding_imports_neither_numpy_nor_the_library() -> None:
    samples = {schema: SAMPLES[schema][0].hex() for schema in CONTROL}  # made here: the samples need the library
    code = ("import sys\n"
            "from scicat_fw_ingest.messages import decode\n"
            "from scicat_fw_ingest.status import Tracker\n"
            "import scicat_fw_ingest.status.feed, scicat_fw_ingest.cli.list_status\n"
            "tracker = Tracker()\n"
            f"for schema, data in {samples!r}.items():\n"
            "    assert tracker.feed(decode(bytes.fromhex(data)), topic='t', timestamp_ms=1)\n"
            "print(sorted(m for m in ('numpy', 'streaming_data_types', 'h5py') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
