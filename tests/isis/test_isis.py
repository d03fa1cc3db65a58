"""The ISIS enrichment core: templates, placeholders, the merge rule, root fields, fc00 discovery."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from streaming_data_types import serialise_fc00, serialise_pl72
from streaming_data_types.fbschemas.forwarder_config_update_fc00.Protocol import Protocol
from streaming_data_types.fbschemas.forwarder_config_update_fc00.UpdateType import UpdateType
from streaming_data_types.forwarder_config_update_fc00 import StreamInfo
from streaming_data_types.run_start_pl72 import DetectorSpectrumMap

from scicat_fw_ingest.errors import ConfigError
from scicat_fw_ingest.isis import (
    EnrichError,
    build_structure,
    enrich_run_start,
    fill_template,
    instrument_from_topic,
    load_template,
    merge_children,
    parse_template,
    root_fields,
)
from scicat_fw_ingest.isis.forward import ForwardedStream, blocks_on_topic, forwarded_streams
from scicat_fw_ingest.messages import decode
from scicat_fw_ingest.testing.isis_run_start import child, dataset_value, icp_structure, run_start_bytes, streams
from scicat_fw_ingest.testing.isis_run_start import group as _group


def builtin() -> dict[str, Any]:
    return load_template("ZOOM")[0]


def test_icp_run_start_is_enriched_with_the_isis_layout_and_keeps_the_icp_streams() -> None:
    run_start = decode(run_start_bytes()).value
    structure = build_structure(run_start, "ZOOM", builtin(), sample_env_blocks=["Temp_1", "Pressure=IN:ZOOM:P1"],
                                monitors=["monitor_1", "monitor_2"], runlog_blocks=["good_frames"])
    json.loads(json.dumps(structure))
    entry = child(structure, "raw_data_1")
    instrument = child(entry, "instrument")
    assert dataset_value(instrument, "name") == "ZOOM"
    source = child(instrument, "source")
    assert (dataset_value(source, "name"), dataset_value(source, "probe"), dataset_value(source, "type")) == (
        "ISIS", "neutrons", "Pulsed Neutron Source")
    assert dataset_value(entry, "beamline") == "ZOOM" and dataset_value(entry, "name") == "ZOOM"
    assert dataset_value(entry, "run_number") == 12345
    assert dataset_value(entry, "title") == "Sample scan"
    assert dataset_value(entry, "experiment_identifier") == "2410001"
    detector = child(entry, "detector_1_events")
    assert {"name": "NX_class", "dtype": "string", "values": "NXevent_data"} in detector["attributes"]
    assert streams(detector) == [("ev44", "ZOOM_events", "ZOOM_det")]
    # the ICP's own blocks win whole over generated ones of the same name; config-only blocks are added
    selog = child(entry, "selog")
    assert [c["name"] for c in selog["children"]] == ["Temp_1", "Pressure", "Field"]
    assert streams(child(selog, "Temp_1")) == [("f144", "ZOOM_sampleEnv", "IN:ZOOM:Temp_1")]
    assert streams(child(selog, "Pressure")) == [("f144", "ZOOM_sampleEnv", "IN:ZOOM:P1")]
    assert streams(child(entry, "monitor_2")) == [("da00", "ZOOM_monitorHistograms", "monitor_2")]
    assert streams(child(entry, "runlog")) == [("f144", "ZOOM_runLog", "good_frames")]
    assert "events" not in [c.get("name") for c in entry["children"]]  # renamed, not duplicated
    assert "$" not in json.dumps(structure)


def test_enriched_pl72_keeps_every_field_and_carries_json_not_a_python_repr() -> None:
    original = decode(run_start_bytes()).value
    payload = enrich_run_start(original, "ZOOM", builtin(), sample_env_blocks=["Temp_1"])
    message = decode(payload, expect="pl72")
    assert not message.json_errors
    out = message.value
    for name in ("job_id", "filename", "start_time", "stop_time", "run_name", "service_id", "broker", "metadata",
                 "control_topic"):
        assert getattr(out, name) == getattr(original, name), name
    assert out.instrument_name == "ZOOM"  # empty in the ICP's message: taken from the topic
    structure = json.loads(out.nexus_structure)  # the str(dict) regression: this fails on a Python repr
    assert "'" not in out.nexus_structure.replace("Pulsed Neutron Source", "")
    assert child(child(structure, "raw_data_1"), "instrument")


def test_instrument_name_sent_by_the_icp_is_kept() -> None:
    original = decode(run_start_bytes(instrument_name="ZOOM-ICP")).value
    out = decode(enrich_run_start(original, "ZOOM", builtin())).value
    assert out.instrument_name == "ZOOM-ICP"


@pytest.mark.parametrize("text, reason", [("{'children': []}", "not valid JSON"), ("[1, 2]", "must be a JSON object")])
def test_nexus_structure_that_is_not_a_json_object_is_refused_naming_the_job(text: str, reason: str) -> None:
    run_start = decode(run_start_bytes(text)).value
    with pytest.raises(EnrichError, match=f"0f8a7b1e-1b2c-4d5e-8f90-123456789abc.*{reason}"):
        enrich_run_start(run_start, "ZOOM", builtin())


def test_unknown_root_fields_are_left_out_not_written_empty() -> None:
    run_start = decode(run_start_bytes(metadata="not json", run_name="", filename="scratch.nxs")).value
    entry = child(build_structure(run_start, "ZOOM", builtin()), "raw_data_1")
    names = [c.get("name") or c.get("config", {}).get("name") for c in entry["children"]]
    assert "run_number" not in names and "title" not in names and "experiment_identifier" not in names
    assert "name" in names


@pytest.mark.parametrize("run_name, filename, metadata, expected", [
    ("12345", "x.nxs", {}, (12345, None, None)),
    ("Scan of sample A", "ZOOM00067890.nxs", {}, (67890, "Scan of sample A", None)),
    ("99", "x.nxs", {"run_number": "42", "title": "T", "rb_number": 2410001}, (42, "T", "2410001")),
    ("", "", None, (None, None, None)),
])
def test_root_fields_from_metadata_then_run_name_then_filename(run_name: str, filename: str, metadata: Any,
                                                                expected: tuple[Any, ...]) -> None:
    fields = root_fields(run_name, filename, metadata)
    assert (fields.run_number, fields.title, fields.experiment_identifier) == expected


def test_placeholders_whole_embedded_escaped_and_spliced() -> None:
    template = parse_template(json.dumps({"children": [
        {"module": "dataset", "config": {"name": "n", "values": "$RUN_NUMBER", "dtype": "int32"}},
        {"module": "dataset", "config": {"name": "t", "values": "${INSTRUMENT}_events costs $$5"}},
        {"module": "dataset", "config": {"name": "gone", "values": "id ${EXPERIMENT_IDENTIFIER}"}},
        "$SAMPLE_ENV",
    ]}), "inline")
    filled = fill_template(template, {"RUN_NUMBER": 7, "INSTRUMENT": "LOQ", "EXPERIMENT_IDENTIFIER": None,
                                      "SAMPLE_ENV": [{"type": "group", "name": "b"}]})
    assert filled["children"] == [
        {"module": "dataset", "config": {"name": "n", "values": 7, "dtype": "int32"}},
        {"module": "dataset", "config": {"name": "t", "values": "LOQ_events costs $5"}},
        {"type": "group", "name": "b"},
    ]


@pytest.mark.parametrize("text, problem", [
    ("{not json", "not valid JSON"),
    ("[]", "must be a JSON object"),
    ('{"children": ["$INSTRUMNET"]}', "unknown placeholder \\$INSTRUMNET"),
    ('{"children": [{"values": "$SAMPLE_ENV"}]}', "'\\$SAMPLE_ENV' may only be an element of a list"),
])
def test_bad_templates_are_refused_naming_the_file(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "ZOOM.json").write_text(text)
    with pytest.raises(ConfigError, match=f"template {tmp_path / 'ZOOM.json'}: {problem}"):
        load_template("ZOOM", tmp_path)


def test_template_lookup_instrument_then_default_then_builtin(tmp_path: Path) -> None:
    (tmp_path / "ZOOM.json").write_text('{"children": [{"module": "dataset", "config": {"name": "zoom"}}]}')
    assert load_template("ZOOM", tmp_path)[1] == str(tmp_path / "ZOOM.json")
    assert load_template("LOQ", tmp_path)[1].startswith("built-in")
    (tmp_path / "default.json").write_text('{"children": []}')
    assert load_template("LOQ", tmp_path)[1] == str(tmp_path / "default.json")
    with pytest.raises(ConfigError, match="not a directory"):
        load_template("LOQ", tmp_path / "absent")


def test_merge_rule_icp_wins_and_nothing_is_lost() -> None:
    template = [
        {"module": "dataset", "config": {"name": "title", "values": "from template"}},
        _group("instrument", [{"module": "dataset", "config": {"name": "name", "values": "ZOOM"}}], "NXinstrument"),
    ]
    icp = [
        {"module": "dataset", "config": {"name": "title", "values": "from ICP"}},
        {"type": "group", "name": "instrument", "attributes": [{"name": "NX_class", "values": "IXinstrument"},
                                                               {"name": "extra", "values": 1}],
         "children": [{"module": "f144", "config": {"topic": "T", "source": "S"}}]},
        {"module": "f144", "config": {"topic": "T", "source": "loose"}},
    ]
    merged = merge_children(template, icp)
    assert merged[0]["config"]["values"] == "from ICP"
    instrument = merged[1]
    assert [a["values"] for a in instrument["attributes"]] == ["IXinstrument", 1]
    assert streams(instrument) == [("f144", "T", "S")] and instrument["children"][0]["config"]["values"] == "ZOOM"
    assert merged[2] == icp[2]


def test_icp_nodes_outside_raw_data_1_and_loose_event_modules_are_kept() -> None:
    icp = {"children": [
        {"type": "group", "name": "raw_data_1", "children": [
            {"module": "ev44", "config": {"topic": "LOQ_events", "source": "loose"}}]},
        {"type": "group", "name": "other_entry", "children": []},
    ]}
    run_start = decode(run_start_bytes(icp)).value
    structure = build_structure(run_start, "LOQ", builtin())
    assert child(structure, "other_entry") == icp["children"][1]
    assert streams(child(child(structure, "raw_data_1"), "detector_1_events")) == [("ev44", "LOQ_events", "loose")]


_names = st.text(alphabet="abcdefgh_", min_size=1, max_size=6)
_leaf = st.one_of(
    st.builds(lambda n, v: {"module": "dataset", "config": {"name": n, "values": v}}, _names, st.integers()),
    st.builds(lambda t, s: {"module": "f144", "config": {"topic": t, "source": s}}, _names, _names),
)
_tree = st.recursive(_leaf, lambda kids: st.builds(
    lambda n, c: {"type": "group", "name": n, "children": c}, _names, st.lists(kids, max_size=4)), max_leaves=12)


@settings(max_examples=60, deadline=None)
@given(st.lists(_tree, max_size=5))
def test_every_icp_stream_survives_the_merge(icp_children: list[Any]) -> None:
    icp = {"children": [{"type": "group", "name": "raw_data_1", "children": icp_children}]}
    run_start = decode(run_start_bytes(icp)).value
    structure = build_structure(run_start, "ZOOM", builtin(), sample_env_blocks=["a", "b"])
    out = json.loads(json.dumps(structure))
    produced = streams(out)
    for stream in streams(icp):
        assert stream in produced


def _fc00(change: int, entries: list[tuple[str, str]]) -> Any:
    raw = serialise_fc00(change, [StreamInfo(pv, "f144", topic, Protocol.PVA, 0) for pv, topic in entries])
    return decode(raw, expect="fc00").value


def test_forwarder_configuration_replay_gives_the_sample_env_pvs() -> None:
    updates = [
        _fc00(UpdateType.ADD, [("IN:ZOOM:SE:Temp_1", "ZOOM_sampleEnv"), ("IN:ZOOM:SE:Temp_2", "ZOOM_sampleEnv"),
                               ("IN:ZOOM:CS:RUNSTATE", "ZOOM_runLog"), ("IN:LOQ:SE:Field", "LOQ_sampleEnv")]),
        _fc00(UpdateType.REMOVE, [("*:Temp_2", "")]),
        _fc00(UpdateType.ADD, [("IN:ZOOM:SE:Volts", "ZOOM_sampleEnv")]),
    ]
    current = forwarded_streams(updates)
    assert blocks_on_topic(current, "ZOOM_sampleEnv") == ["IN:ZOOM:SE:Temp_1", "IN:ZOOM:SE:Volts"]
    assert blocks_on_topic(current, "LOQ_sampleEnv") == ["IN:LOQ:SE:Field"]
    replaced = forwarded_streams([*updates, _fc00(UpdateType.REPLACE, [("IN:ZOOM:SE:New", "ZOOM_sampleEnv")])])
    assert replaced == [ForwardedStream("IN:ZOOM:SE:New", "f144", "ZOOM_sampleEnv")]
    assert forwarded_streams([*updates, _fc00(UpdateType.REMOVEALL, [])]) == []
    # a PV path becomes a block named after its last segment, its source the whole PV
    run_start = decode(run_start_bytes(icp_structure(blocks=()))).value
    selog = child(child(build_structure(run_start, "ZOOM", builtin(),
                                        sample_env_blocks=blocks_on_topic(current, "ZOOM_sampleEnv")),
                        "raw_data_1"), "selog")
    assert [(c["name"], streams(c)[0][2]) for c in selog["children"]] == [
        ("Temp_1", "IN:ZOOM:SE:Temp_1"), ("Volts", "IN:ZOOM:SE:Volts")]


def test_instrument_from_topic() -> None:
    assert instrument_from_topic("ZOOM_runInfo") == "ZOOM"
    assert instrument_from_topic("EMMA-A_runInfo") == "EMMA-A"


def test_detector_spectrum_map_is_kept() -> None:
    raw = serialise_pl72("job", "f.nxs", nexus_structure="{}", detector_spectrum_map=DetectorSpectrumMap(
        np.array([1, 2, 3]), np.array([10, 20, 30]), 3))
    out = decode(enrich_run_start(decode(raw).value, "LOQ", builtin())).value
    assert out.detector_spectrum_map.n_spectra == 3
    assert out.detector_spectrum_map.detector_ids.tolist() == [10, 20, 30]
