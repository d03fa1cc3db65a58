"""The NeXus reader: metadata only, both layouts, typed failures, waiting for a locked file."""

from __future__ import annotations

import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from scicat_fw_ingest.nexus.reader import (
    DamagedFileError,
    FileLockedError,
    NexusSnapshot,
    Node,
    NotNexusError,
    open_snapshot,
    read_snapshot,
    read_snapshot_waiting,
)
from scicat_fw_ingest.testing.nexus_files import FileLock, ten_million_event_file, write_ess, write_isis


def node_at(snap: NexusSnapshot, path: str) -> Node:
    """The node at ``path``, which the test expects to be there."""
    found = snap.get(path)
    assert found is not None, path
    return found


@pytest.fixture(scope="session")
def ess_10m(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ESS-layout file with 10^7 events, written once per session (~0.5 s)."""
    return ten_million_event_file(tmp_path_factory.getbasetemp())


def test_ess_layout_values_units_and_user_groups(tmp_path: Path) -> None:
    snap = read_snapshot(str(write_ess(tmp_path / "a.nxs", instrument="DREAM")))
    assert snap.value("/entry/instrument/name") == "DREAM"
    assert snap.value("/entry/entry_identifier_uuid") == "5f0e7a1e-0000-4000-8000-000000000001"
    assert node_at(snap, "/entry/sample/temperature").units == "K"
    assert snap.value("/entry/sample/temperature") == 295.5
    assert node_at(snap, "/entry").nx_class == "NXentry"
    assert snap.glob("/entry/user_*/email") == ["/entry/user_AdaLovelace/email"]
    assert snap.has_group("/entry/instrument") and not snap.has_group("/entry/title")


def test_event_arrays_are_described_not_read(ess_10m: Path) -> None:
    snap = read_snapshot(str(ess_10m))
    node = snap.get("/entry/instrument/detector/events/event_id")
    assert node is not None and node.value is None
    assert node.shape == (10_000_000,) and node.dtype == "uint32"
    assert node_at(snap, "/entry/instrument/detector/events/event_time_offset").units == "ns"


def test_reading_cost_does_not_grow_with_events(tmp_path: Path, ess_10m: Path) -> None:
    # Not a timing test: the number of objects visited is what the cost depends on, and it is equal.
    small = read_snapshot(str(write_ess(tmp_path / "small.nxs", events=10)))
    big = read_snapshot(str(ess_10m))
    assert sorted(small.nodes) == sorted(big.nodes)


def test_isis_layout_one_element_arrays_become_scalars(tmp_path: Path) -> None:
    snap = read_snapshot(str(write_isis(tmp_path / "LOQ1.nxs", run_number=77)))
    assert snap.value("/raw_data_1/run_number") == 77
    assert snap.value("/raw_data_1/title") == "LOQ sample run"
    assert snap.value("/raw_data_1/duration") == 5400.0
    assert node_at(snap, "/raw_data_1/duration").units == "second"
    assert snap.value("/@file_name") == "c:\\data\\LOQ00000077.nxs"
    assert node_at(snap, "/raw_data_1").nx_class == "NXentry"


def test_real_isis_file_hard_links_seen_at_every_path(shared_data: Path) -> None:
    snap = read_snapshot(str(shared_data / "isis_loq_minimal_histogram.nxs"))
    assert snap.value("/raw_data_1/name") == "LOQ"
    for path in ("/raw_data_1/detector_1/counts", "/raw_data_1/instrument/detector_1/counts"):
        assert node_at(snap, path).shape == (1, 17792, 5) and node_at(snap, path).value is None
    assert snap.value("/@file_time") == "2009-04-28T10:47:44+00:00"


def test_real_ess_file(shared_data: Path) -> None:
    snap = read_snapshot(str(shared_data / "ess_coda_small.hdf"))
    assert snap.value("/entry/experiment_identifier") == "443503"
    assert len(snap.glob("/entry/user_*/name")) == 6


@pytest.mark.parametrize("content", [b"", b"hello", b"\x89HDF" + b"\0" * 600])
def test_not_hdf5_is_not_retryable(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.nxs"
    path.write_bytes(content)
    with pytest.raises(NotNexusError, match="not an HDF5") as info:
        read_snapshot(str(path))
    assert info.value.retryable is False


def test_user_block_signature_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "ub.h5"
    with h5py.File(path, "w", userblock_size=512) as fh:
        fh.create_group("entry").attrs["NX_class"] = "NXentry"
    assert node_at(read_snapshot(str(path)), "/entry").nx_class == "NXentry"


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_snapshot(str(tmp_path / "nope.nxs"))


def test_locked_file_is_retryable_and_waited_for(tmp_path: Path) -> None:
    path = write_ess(tmp_path / "locked.nxs")
    with FileLock(path, 1.0):
        with pytest.raises(FileLockedError) as info:
            read_snapshot(str(path))
        assert info.value.retryable is True
        snap = read_snapshot_waiting(str(path), deadline=time.monotonic() + 20)
    assert snap.value("/entry/title") == "test run"


def test_locked_file_past_the_deadline_fails(tmp_path: Path) -> None:
    path = write_ess(tmp_path / "locked.nxs")
    with FileLock(path, 1.0):
        started = time.monotonic()
        with pytest.raises(FileLockedError, match="still locked after waiting"):
            read_snapshot_waiting(str(path), deadline=time.monotonic() + 0.3)
        assert time.monotonic() - started < 0.9


def test_truncated_and_corrupt_files_fail_at_once_with_hdf5s_reason(tmp_path: Path) -> None:
    whole = write_ess(tmp_path / "whole.nxs").read_bytes()
    truncated = tmp_path / "truncated.nxs"
    truncated.write_bytes(whole[: len(whole) // 2])
    corrupt = tmp_path / "corrupt.nxs"
    corrupt.write_bytes(whole[:8] + b"\0" * 32 + whole[40:])  # superblock addresses zeroed
    for reader in (read_snapshot, open_snapshot):
        started = time.monotonic()
        with pytest.raises(DamagedFileError, match=r"damaged HDF5 file: truncated file: eof = \d+") as info:
            read_snapshot_waiting(str(truncated), deadline=time.monotonic() + 20) if reader is read_snapshot \
                else reader(str(truncated))
        assert info.value.retryable is False and time.monotonic() - started < 2
        with pytest.raises(DamagedFileError, match="damaged HDF5 file: bad byte number") as info:
            reader(str(corrupt))
        assert not isinstance(info.value, FileLockedError)


def test_large_attribute_arrays_and_compound_datasets_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as fh:
        g = fh.create_group("entry")
        g.attrs["big"] = np.arange(1000)
        g.attrs["small"] = np.arange(3)
        g.create_dataset("table", data=np.zeros(2, dtype=[("a", "i4"), ("b", "f8")]))
        g["alias"] = h5py.SoftLink("/entry/table")
        g["dangling"] = h5py.SoftLink("/nowhere")
        g["ext"] = h5py.ExternalLink("other.h5", "/x")
    snap = read_snapshot(str(path))
    assert "big" not in node_at(snap, "/entry").attrs and node_at(snap, "/entry").attrs["small"] == [0, 1, 2]
    assert node_at(snap, "/entry/table").value is None and snap.get("/entry/alias") is not None
    assert snap.get("/entry/dangling") is None and snap.get("/entry/ext") is None
