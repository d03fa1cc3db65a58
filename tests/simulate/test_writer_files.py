"""produce-test's files in kafka-to-nexus's conventions: the same checks on a real kafka-to-nexus file and on
a produce-test file give the same answers (``k2n_conventions``)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from scicat_fw_ingest.nexus.writer import write_nexus
from scicat_fw_ingest.simulate import LAYOUTS, parse_structure, plan_jobs
from scicat_fw_ingest.testing.k2n_conventions import CHECKS, convention_answers

REAL = "ess_coda_small.hdf"


def _produce_test_file(tmp_path: Path, layout: str = "ess") -> Path:
    (job,) = plan_jobs(1, output_dir=tmp_path, layout=layout)
    path = Path(job.written_path or "")
    write_nexus(path, job.nexus_structure, start_time_ms=job.start_time, stop_time_ms=job.stop_time, rng_seed=3)
    return path


def test_a_real_file_and_a_produce_test_file_get_the_same_answers(shared_data: Path, tmp_path: Path) -> None:
    real = shared_data / REAL
    if not real.exists():
        pytest.skip(f"{real} not present (../shared/data)")
    ours = _produce_test_file(tmp_path)
    real_answers, our_answers = convention_answers(real), convention_answers(ours)
    # the real file (instrument components stripped) has mdat times, static strings and plain groups
    both = [check for check in CHECKS if real_answers[check] is not None and our_answers[check] is not None]
    assert set(both) >= {"mdat strings ascii", "other strings utf-8", "hard links only"}
    assert {check: real_answers[check] for check in both} == {check: our_answers[check] for check in both} == \
        {check: [] for check in both}
    # every check but da00's (the ESS layout has no da00 stream; the next tests cover it) applies to
    # produce-test's file, and it keeps them all
    applicable = {check: found for check, found in our_answers.items() if found is not None}
    assert applicable == {check: [] for check in set(CHECKS) - {"da00 attributes"}}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_stream_datasets_are_chunked_extendable_and_typed_as_kafka_to_nexus(layout: str, tmp_path: Path) -> None:
    path = _produce_test_file(tmp_path, layout)
    with h5py.File(path, "r") as f:
        assert f.attrs["file_name"] == str(path)  # the path the writer opened
        cues = []
        f.visititems(lambda name, obj: cues.append(obj) if name.endswith("cue_timestamp_zero") else None)
        assert cues and all(c.dtype == np.int64 for c in cues)
        zeros = []
        f.visititems(lambda name, obj: zeros.append(obj) if name.endswith("event_time_zero") else None)
        assert zeros
        for dataset in zeros:
            assert dataset.dtype == np.uint64 and dataset.maxshape == (None,) and dataset.chunks == (8192,)


def test_da00_ad00_attributes_and_a_configured_chunk_size(tmp_path: Path) -> None:
    structure = parse_structure({"children": [{"type": "group", "name": "entry", "attributes": [
        {"name": "NX_class", "values": "NXentry"}], "children": [
        {"type": "group", "name": "monitor", "children": [{"module": "da00", "config": {
            "topic": "t", "source": "s", "variables": [
                {"name": "signal", "data_type": "int32", "shape": [7], "axes": ["x"], "unit": "counts",
                 "label": "Counts"},
                {"name": "x", "data_type": "float64", "shape": [7], "axes": ["x"], "unit": "mm"}]}}]},
        {"type": "group", "name": "camera", "children": [{"module": "ad00", "config": {
            "topic": "t", "source": "c", "array_size": [4, 4]}}]},
        {"type": "group", "name": "log", "children": [{"module": "f144", "config": {
            "topic": "t", "source": "l", "chunk_size": 16}}]},
        {"module": "mdat", "config": {"items": ["start_time", "end_time"]}}]}]})
    path = tmp_path / "f.nxs"
    write_nexus(path, structure, start_time_ms=1_732_456_789_000, stop_time_ms=1_732_456_790_000, rng_seed=1)
    with h5py.File(path, "r") as f:
        monitor = f["entry/monitor"]
        assert monitor.attrs["signal"] == "signal" and list(monitor.attrs["axes"]) == ["time", "x"]
        signal = monitor["signal"]
        assert signal.attrs["long_name"] == "Counts" and "label" not in signal.attrs
        assert signal.attrs["axes"] == "time:x" and signal.attrs["units"] == "counts"
        assert signal.maxshape == (None, 7) and signal.chunks == ((1 << 20) // 7, 7)
        value = f["entry/camera/value"]
        assert value.attrs["units"] == "" and value.maxshape == (None, 4, 4) and value.chunks == (65536, 4, 4)
        assert f["entry/log/value"].chunks == (16,) and f["entry/log/time"].chunks == (16,)
        start = f["entry/start_time"]
        assert h5py.check_string_dtype(start.dtype).encoding == "ascii" and start[()] == b"2024-11-24T13:59:49.000Z"
    answers = convention_answers(path)
    # only the configured chunk size differs from kafka-to-nexus's default, as it would in its file
    assert sorted(answers.pop("chunk sizes") or []) == sorted(["entry/log/time: 16 rows, not 1024",
                                                               "entry/log/value: 16 rows, not 1024",
                                                               "entry/log/cue_index: 16 rows, not 1024",
                                                               "entry/log/cue_timestamp_zero: 16 rows, not 1024"])
    assert all(found == [] for found in answers.values() if found is not None)
