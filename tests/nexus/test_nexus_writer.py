"""The NeXus writer: real HDF5 files from kafka-to-nexus nexus_structures, opened again with h5py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from scicat_fw_ingest._time import iso_ms
from scicat_fw_ingest.nexus.writer import (
    KNOWN_MODULES,
    NexusStructureError,
    NexusWriteError,
    check_structure,
    write_nexus,
)

START_MS = 1_730_106_401_186  # 2024-10-28T09:06:41.186Z
STOP_MS = START_MS + 753_190


def _text(value: Any) -> str:
    value = value[()] if isinstance(value, h5py.Dataset) else value
    return value.decode() if isinstance(value, bytes) else str(value)


def _group(name: str, children: list[Any], nx_class: str | None = None, **extra: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "group", "name": name, "children": children, **extra}
    if nx_class:
        node["attributes"] = [{"name": "NX_class", "values": nx_class}]
    return node


def _write(tmp_path: Path, structure: Any, **kw: Any) -> tuple[Path, Any]:
    path = tmp_path / "out.nxs"
    return path, write_nexus(path, structure, **kw)


def test_static_information_template_becomes_groups_datasets_attributes_and_links(shared_data: Path,
                                                                                   tmp_path: Path) -> None:
    text = (shared_data / "k2n_static_information_template.json").read_text()
    path, report = _write(tmp_path, text, start_time_ms=START_MS, stop_time_ms=STOP_MS)
    assert report.warnings == [] and report.links == 2
    with h5py.File(path, "r") as f:
        assert _text(f["entry"].attrs["NX_class"]) == "NXentry"
        assert _text(f["entry/title"]) == "This is a title"
        assert _text(f["entry/start_time"]) == "2024-10-28T09:06:41.186Z"
        assert _text(f["entry/end_time"]) == iso_ms(STOP_MS)
        assert _text(f["entry/instrument/chopper"].attrs["NX_class"]) == "NXdisk_chopper"
        assert _text(f["entry/instrument/chopper/depends_on"]) == "."
        delay = f["entry/instrument/chopper/delay"]
        assert _text(delay.attrs["NX_class"]) == "NXlog"
        assert delay["value"].dtype == np.float64 and delay["time"].shape == delay["value"].shape
        assert delay["time"].attrs["units"] == "ns"
        links = f["entry/instrument/links"]
        # kafka-to-nexus makes hard links: the same object under two names
        assert isinstance(links.get("linked_value", getlink=True), h5py.HardLink)
        assert links["linked_value"] == delay["value"] and links["linked_time"] == delay["time"]
        shape = f["entry/instrument/example_detector/pixel_shape"]
        assert _text(shape.attrs["NX_class"]) == "NXcylindrical_geometry"
        assert shape["cylinders"].dtype == np.int32 and shape["cylinders"][()].tolist() == [[0, 1, 2]]
        assert shape["vertices"].dtype == np.float32 and shape["vertices"].shape == (3, 3)
        assert shape["vertices"].attrs["units"] == "m"
        detector = f["entry/instrument/example_detector"]
        assert detector["detector_number"][()].tolist() == [1, 2, 3, 4, 5]
        assert detector["x_pixel_offset"].dtype == np.float32
        assert detector["x_pixel_offset"].attrs["units"] == "m"


def test_writer_modules_template_gets_simulated_stream_data(shared_data: Path, tmp_path: Path) -> None:
    text = (shared_data / "k2n_writer_modules_template.json").read_text()
    path, report = _write(tmp_path, text, start_time_ms=START_MS, stop_time_ms=STOP_MS, rng_seed=3)
    assert report.warnings == []
    assert report.modules["f144"] == 2 and report.modules["ev44"] == 1 and report.modules["da00"] == 1
    with h5py.File(path, "r") as f:
        chopper = f["entry/instrument/chopper"]
        assert chopper["rotation_speed/value"].attrs["units"] == "Hz"
        assert chopper["slit_height"][()] == pytest.approx(0.085) and chopper["slit_height"].dtype == np.float64
        assert chopper["slits"][()] == 1 and chopper["slits"].dtype == np.int64
        assert chopper["slit_edges"][()].tolist() == pytest.approx([31.97, 326.71])
        assert chopper["slit_edges"].attrs["units"] == "deg"
        tdc = chopper["time"][()]  # tdct writes its timestamps into the chopper group
        assert tdc.dtype == np.uint64 and START_MS * 10**6 <= tdc.min() <= tdc.max() <= STOP_MS * 10**6
        events = f["entry/instrument/event_detector/events"]
        assert _text(events.attrs["NX_class"]) == "NXevent_data"
        index, ids = events["event_index"][()], events["event_id"][()]
        assert len(index) == len(events["event_time_zero"]) and index[0] == 0 and np.all(np.diff(index) > 0)
        assert len(ids) == len(events["event_time_offset"]) > index[-1]
        assert events["event_time_offset"].attrs["units"] == "ns"
        assert f["entry/instrument/event_detector/detector_number"].shape == (1, 4)
        image = f["entry/instrument/image_detector/data/value"]
        assert image.dtype == np.uint16 and image.shape[1:] == (2, 2)
        signal = f["entry/instrument/beam_monitor/signal"]
        assert signal.dtype == np.int32 and signal.shape[1:] == (7,)
        assert signal.attrs["units"] == "counts" and signal.attrs["long_name"] == "some label"  # as kafka-to-nexus


def test_older_dataset_and_link_forms_written_old_stream_form_ignored(tmp_path: Path) -> None:
    structure = {
        "attributes": {"facility": "SIM"},
        "children": [_group("entry", [
            {"type": "dataset", "name": "title", "values": "old style", "dataset": {"type": "string"}},
            {"type": "dataset", "name": "counts", "values": [1, 2, 3], "dataset": {"type": "uint16"},
             "attributes": {"units": "counts", "scale": 2.5}},
            _group("temperature", [{"type": "stream", "stream": {"writer_module": "f142", "topic": "t",
                                                                  "source": "s", "type": "float",
                                                                  "value_units": "K"}}], "NXlog"),
            _group("hist", [{"type": "stream", "stream": {
                "writer_module": "hs00", "topic": "t", "source": "h", "data_type": "uint32",
                "shape": [{"size": 4, "label": "x", "unit": "mm", "edges": [0, 1, 2, 3, 4], "dataset_name": "x_det"},
                          {"size": 2, "label": "y", "unit": "mm"}]}}], "NXdata"),
            {"type": "link", "name": "temp_value", "target": "temperature/value"},
        ], "NXentry", )],
    }
    path, report = _write(tmp_path, json.dumps(structure))
    with h5py.File(path, "r") as f:
        assert _text(f.attrs["facility"]) == "SIM"
        assert _text(f["entry/title"]) == "old style"
        counts = f["entry/counts"]
        assert counts.dtype == np.uint16 and counts.attrs["units"] == "counts" and counts.attrs["scale"] == 2.5
        # kafka-to-nexus no longer reads {"type": "stream"}: the groups stay empty, the link dangles
        assert list(f["entry/temperature"]) == [] and list(f["entry/hist"]) == []
        assert "temp_value" not in f["entry"]
    assert report.links == 0
    assert sum("old {'type': 'stream'} form, ignored" in w for w in report.warnings) == 2
    assert any("link target /entry/temperature/value does not exist" in w for w in report.warnings)


@pytest.mark.parametrize("module", [m for m in KNOWN_MODULES if m not in ("dataset", "link", "mdat")])
def test_every_stream_module_writes_something_readable(module: str, tmp_path: Path) -> None:
    structure = {"children": [_group("entry", [_group("data", [{"module": module, "config": {"topic": "t",
                                                                                          "source": "s"}}])])]}
    path, report = _write(tmp_path, structure, rng_seed=1)
    assert report.modules == {module: 1} and report.warnings == []
    with h5py.File(path, "r") as f:
        names = list(f["entry/data"])
        assert names, module
        for name in names:
            assert f["entry/data"][name].size > 0


def test_unknown_module_is_skipped_with_a_warning_naming_its_place(tmp_path: Path) -> None:
    structure = {"children": [_group("entry", [{"module": "zz99", "config": {}},
                                               {"module": "dataset", "config": {"name": "ok", "values": 1}}])]}
    path, report = _write(tmp_path, structure)
    assert len(report.warnings) == 1 and "zz99" in report.warnings[0] and "/entry" in report.warnings[0]
    with h5py.File(path, "r") as f:
        assert list(f["entry"]) == ["ok"]


def test_dangling_link_is_reported_not_made(tmp_path: Path) -> None:
    structure = {"children": [_group("entry", [{"module": "link", "config": {"name": "l", "source": "/nowhere"}}])]}
    path, report = _write(tmp_path, structure)
    assert report.links == 0 and "/nowhere" in report.warnings[0]
    with h5py.File(path, "r") as f:
        assert "l" not in f["entry"]


def test_strings_numbers_as_text_and_string_arrays(tmp_path: Path) -> None:
    structure = {"children": [_group("e", [
        {"module": "dataset", "config": {"name": "run", "values": ["42"], "type": "int32"}},
        {"module": "dataset", "config": {"name": "names", "values": ["a", "bé"]}},
        {"module": "dataset", "config": {"name": "inferred", "values": [1.5, 2]}},
    ])]}
    path, _ = _write(tmp_path, structure)
    with h5py.File(path, "r") as f:
        assert f["e/run"].dtype == np.int32 and f["e/run"][()].tolist() == [42]
        assert [v.decode() for v in f["e/names"][()]] == ["a", "bé"]
        assert f["e/inferred"].dtype == np.float64


def test_same_seed_same_data(tmp_path: Path) -> None:
    structure = {"children": [_group("e", [{"module": "ev44", "config": {}}])]}
    a = write_nexus(tmp_path / "a.nxs", structure, rng_seed=7, start_time_ms=START_MS, stop_time_ms=STOP_MS)
    b = write_nexus(tmp_path / "b.nxs", structure, rng_seed=7, start_time_ms=START_MS, stop_time_ms=STOP_MS)
    assert a.datasets == b.datasets
    with h5py.File(tmp_path / "a.nxs") as fa, h5py.File(tmp_path / "b.nxs") as fb:
        np.testing.assert_array_equal(fa["e/event_id"][()], fb["e/event_id"][()])


@pytest.mark.parametrize(("structure", "expected"), [
    ("{not json", "not valid JSON"),
    ("[]", "must be a JSON object"),
    ({"kids": []}, "'children' list"),
    ({"children": [{"type": "group", "children": []}]}, "needs a 'name'"),
    ({"children": [{"type": "group", "name": "a/b"}]}, "needs a 'name'"),
    ({"children": ["x"]}, "child #1: must be an object"),
    ({"children": [{"name": "x"}]}, "needs 'module'"),
    ({"children": [_group("e", [{"module": "dataset", "config": {"name": "d", "values": 1, "type": "quad"}}])]},
     "/e/d: unknown type 'quad'"),
    ({"children": [_group("e", [{"module": "dataset", "config": {"name": "d", "values": "abc",
                                                                 "type": "int32"}}])]}, "/e/d: values do not fit"),
    ({"children": [_group("e", [{"module": "dataset", "config": {"name": "d"}}])]}, "/e/d: has no 'values'"),
    ({"children": [_group("e", []), _group("e", [])]}, "/e: defined twice"),
    ({"children": [_group("e", [{"module": "f144", "config": {}}, {"module": "f144", "config": {}}])]},
     "'time' exists already in /e"),
    ({"children": [_group("e", [{"module": "da00", "config": {"variables": [{"name": "a/b"}]}}])]},
     "every variable needs a 'name'"),
])
def test_bad_structures_name_the_place_and_leave_no_file(structure: Any, expected: str, tmp_path: Path) -> None:
    with pytest.raises(NexusStructureError, match=expected.replace("(", r"\(").replace("'", "'")) as err:
        write_nexus(tmp_path / "bad.nxs", structure)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "bad.nxs").exists()
    with pytest.raises(NexusStructureError):
        check_structure(structure)


def test_existing_file_is_not_overwritten_and_missing_directory_is_named(tmp_path: Path) -> None:
    structure: dict[str, Any] = {"children": []}
    target = tmp_path / "f.nxs"
    target.write_bytes(b"keep")
    with pytest.raises(NexusWriteError, match="exists already"):
        write_nexus(target, structure)
    assert target.read_bytes() == b"keep"
    write_nexus(target, structure, overwrite=True)
    assert h5py.is_hdf5(target)
    with pytest.raises(NexusWriteError, match="no_such_dir"):
        write_nexus(tmp_path / "no_such_dir" / "f.nxs", structure)


def test_kafka_to_nexus_conventions_units_types_and_stream_group_attributes(tmp_path: Path) -> None:
    structure = {"children": [_group("entry", [
        {"module": "dataset", "config": {"name": "untyped", "values": [1, 2, 3]}},
        _group("log", [{"module": "f144", "config": {"topic": "motion", "source": "m:pos", "dtype": "double"}}],
               "NXlog"),
        _group("events", [{"module": "ev44", "config": {"topic": "det", "source": "det1"}}], "NXevent_data"),
    ])]}
    path, _ = _write(tmp_path, structure, start_time_ms=START_MS, stop_time_ms=STOP_MS)
    with h5py.File(path, "r") as f:
        assert f["entry/untyped"].dtype == np.float64  # a dataset without a type is double
        log = f["entry/log"]
        assert {k: _text(log.attrs[k]) for k in ("topic", "source", "writer_module")} == \
            {"topic": "motion", "source": "m:pos", "writer_module": "f144"}
        for name in ("value", "minimum_value", "maximum_value", "average_value"):
            assert _text(log[name].attrs["units"]) == ""  # present even when none is configured
        assert log["time"].dtype == np.uint64 and log["cue_index"].dtype == np.int64
        assert log["cue_timestamp_zero"].dtype == np.int64 and "start" in log["cue_timestamp_zero"].attrs
        events = f["entry/events"]
        assert events["event_time_zero"].dtype == np.uint64 and _text(events.attrs["writer_module"]) == "ev44"
