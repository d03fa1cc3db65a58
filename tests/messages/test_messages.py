"""The decoding core: round trips of the writer's messages, bad input, and a fuzz test."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streaming_data_types import (
    serialise_answ,
    serialise_ev44,
    serialise_pl72,
    serialise_wrdn,
)
from streaming_data_types.fbschemas.action_response_answ.ActionOutcome import ActionOutcome
from streaming_data_types.fbschemas.action_response_answ.ActionType import ActionType

from scicat_fw_ingest._time import iso_datetime, iso_from_ns
from scicat_fw_ingest.messages import ARRAY_PREVIEW, DecodeError, decode, schema_of
from scicat_fw_ingest.testing.message_samples import NS_ISO, SAMPLES, START_MS, other_schemas


@pytest.mark.parametrize("schema", sorted(SAMPLES))
def test_round_trip_to_json(schema: str) -> None:
    data, expected = SAMPLES[schema]
    message = decode(data)
    assert message.schema == schema
    assert message.json_errors == {}
    assert message.to_jsonable() == {"schema": schema, **expected}
    json.dumps(message.to_jsonable())  # JSON-ready all the way down


def test_typed_value_is_the_library_tuple() -> None:
    message = decode(SAMPLES["pl72"][0])
    assert message.value.job_id == "job-1" and message.value.start_time == START_MS
    assert type(message.value).__name__ == "RunStartInfo"


def test_wrdn_without_metadata_or_message() -> None:
    out = decode(serialise_wrdn("w1", "job-1", False, "/f.nxs")).to_jsonable()
    assert out["metadata"] is None and out["message"] is None and out["error_encountered"] is False


def test_pl72_unset_stop_time_is_null() -> None:
    out = decode(serialise_pl72("j", "f.nxs", START_MS)).to_jsonable()
    assert out["stop_time"] is None and out["start_time"].startswith("2024-10-27T03:33:20")


def test_large_arrays_are_summarised_unless_full() -> None:
    big = np.arange(1000, dtype=np.int32)
    data = serialise_ev44("det", 1, np.array([5]), np.array([0]), big, big)
    short = decode(data).to_jsonable()
    assert short["pixel_id"] == {"dtype": "int32", "shape": [1000], "first": list(range(ARRAY_PREVIEW))}
    assert decode(data).to_jsonable(full=True)["pixel_id"] == list(range(1000))


def test_invalid_embedded_json_is_kept_and_flagged() -> None:
    message = decode(serialise_pl72("j", "f.nxs", nexus_structure="{not json", metadata="[1, 2"))
    out = message.to_jsonable()
    assert out["nexus_structure"] == "{not json" and out["metadata"] == "[1, 2"
    assert set(out["json_errors"]) == {"nexus_structure", "metadata"}
    assert "not valid JSON" in out["json_errors"]["nexus_structure"]


@pytest.mark.parametrize(
    "data, schema, reason",
    [
        (b"", None, "too short: 0 bytes"),
        (b"abc", None, "too short: 3 bytes"),
        (b"\x00\x00\x00\x00zzzz\x00\x00\x00\x00", "zzzz", "unknown schema id"),
        (SAMPLES["pl72"][0][:24], "pl72", "corrupt body"),
        (SAMPLES["wrdn"][0][:12], "wrdn", "corrupt body"),
        (b"\x00\x01\x02\x03\xff\xfe\xfd\xfc", None, "no schema id"),
    ],
    ids=["empty", "3-bytes", "unknown-id", "truncated-pl72", "truncated-wrdn", "binary-id"],
)

def test_bad_input_raises_one_clear_error(data: bytes, schema: str | None, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(data)
    assert info.value.schema == schema
    assert reason in str(info.value)
    assert "\n" not in str(info.value)
    if schema:
        assert f"'{schema}'" in str(info.value)


def test_wrong_schema_for_the_expected_type() -> None:
    with pytest.raises(DecodeError, match=r"schema 'pl72': expected a 'wrdn'"):
        decode(SAMPLES["pl72"][0], expect="wrdn")
    assert decode(SAMPLES["wrdn"][0], expect="wrdn").schema == "wrdn"


def test_schema_of_reads_bytes_4_to_8() -> None:
    assert schema_of(SAMPLES["x5f2"][0]) == "x5f2"


def test_iso_times_always_have_milliseconds_and_keep_finer_digits() -> None:
    assert iso_from_ns(1_000_000_000) == "1970-01-01T00:00:01.000Z"
    assert iso_from_ns(1_500_000_000) == "1970-01-01T00:00:01.500Z"
    assert iso_from_ns(1_500_001_000) == "1970-01-01T00:00:01.500001Z"
    assert iso_from_ns(1) == "1970-01-01T00:00:00.000000001Z"
    assert iso_datetime(datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)) == "2024-01-02T03:04:05.123Z"
    assert iso_datetime(datetime(2024, 1, 2, 3, 4, 5, 123456)) == "2024-01-02T03:04:05.123456Z"


_ids = st.sampled_from([*sorted(SAMPLES), "hs01", "f142", "ev42", "ep01", "al00", "da00", "ad00", "tdct", "json"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=200),
    st.tuples(st.binary(min_size=4, max_size=4), _ids, st.binary(max_size=300)).map(
        lambda t: t[0] + t[1].encode() + t[2]),
    st.tuples(st.sampled_from([v[0] for v in SAMPLES.values()]), st.integers(0, 400), st.binary(max_size=8)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + len(t[2]):]),
))
def test_no_bytes_make_the_decoder_raise_anything_but_decode_error(data: bytes) -> None:
    try:
        message = decode(data)
    except DecodeError:
        return
    json.dumps(message.to_jsonable())  # whatever decodes must also render


# -- every other schema the library knows: lossless, times ISO, enums by name -------------------

def _no_reprs(value: object) -> None:
    text = json.dumps(value)
    assert " object at 0x" not in text and "Variable(" not in text and "array(" not in text, text


@pytest.mark.parametrize(("schema", "data"), sorted(other_schemas().items()))
def test_every_schema_is_plain_json_without_python_reprs(schema: str, data: bytes) -> None:
    out = decode(data).to_jsonable(full=True)
    assert out["schema"] == schema
    _no_reprs(out)


def test_da00_variables_keep_name_unit_axes_shape_and_every_value() -> None:
    out = decode(other_schemas()["da00"]).to_jsonable(full=True)
    assert out["timestamp_ns"] == NS_ISO
    counts, tof = out["data"]
    assert counts == {"name": "counts", "data": list(range(20)), "axes": ["tof"], "shape": [20], "unit": "counts",
                      "label": "Counts", "source": "mon1"}
    assert tof["data"] == pytest.approx(list(np.linspace(0.0, 20.0, 21))) and tof["unit"] == "us"
    summary = decode(other_schemas()["da00"]).to_jsonable()["data"][0]["data"]  # tables: summarised
    assert summary["shape"] == [20] and summary["first"] == list(range(ARRAY_PREVIEW))


def test_area_detector_attributes_are_objects() -> None:
    for schema in ("ad00", "ADAr"):
        out = decode(other_schemas()[schema]).to_jsonable(full=True)
        assert out["attributes"][0]["name"] == "gain" and out["attributes"][0]["data"] == 2.5
        assert out["data"] == [[0, 1, 2], [3, 4, 5]]
    assert decode(other_schemas()["ADAr"]).to_jsonable()["timestamp"] == "2024-10-27T03:33:20.123Z"


def test_times_are_iso_wherever_the_schema_says_time() -> None:
    got = {schema: decode(data).to_jsonable(full=True) for schema, data in other_schemas().items()}
    assert got["ev42"]["pulse_time"] == NS_ISO and got["ev43"]["pulse_time"] == [NS_ISO, NS_ISO]
    assert got["an44"]["reference_time"] == [NS_ISO]
    assert got["hs01"]["timestamp"] == NS_ISO and got["hs01"]["last_metadata_timestamp"] is None
    assert got["tdct"]["timestamps"] == [NS_ISO, "2024-10-27T03:33:20.123457789Z"]
    assert got["se00"]["value_ts"][1] == "2024-10-27T03:33:20.123456799Z" and got["se00"]["timestamp_unix_ns"] == NS_ISO
    assert got["ns10"]["time_stamp"] == "2024-10-27T03:33:20.500Z"
    for schema in ("al00", "ad00"):
        assert got[schema]["timestamp_ns"] == NS_ISO
    for schema in ("ep00", "ep01"):
        assert got[schema]["timestamp"] == NS_ISO


def test_enums_are_names() -> None:
    got = {schema: decode(data).to_jsonable(full=True) for schema, data in other_schemas().items()}
    assert got["fc00"]["config_change"] == "ADD" and got["fc00"]["streams"][0]["protocol"] == "PVA"
    assert got["se00"]["ts_location"] == "Start" and got["senv"]["ts_location"] == "Middle"
    assert got["al00"]["severity"] == "MAJOR" and got["ep00"]["type"] == "CONNECTED"
    assert got["ep01"]["status"] == "CONNECTED"


def test_answ_no_stop_time_sentinel_is_null() -> None:
    sentinel = datetime.fromtimestamp(9_223_372_036_854 / 1000, tz=UTC)
    out = decode(serialise_answ("w", "j", "j", ActionType.StartJob, ActionOutcome.Success, "ok", 201,
                                sentinel)).to_jsonable()
    assert out["stop_time"] is None and out["command_id"] == "j"
