"""NeXus files in the two real layouts, written with h5py, for tests and benchmarks.

Why our own writers: the reference files in ../shared/data are read in place and never copied, and
tests need variations (missing fields, many files, millions of events) the reference files lack.
Event arrays are written in chunks so that a 10^8-event file never needs 10^8 events in memory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

_CHUNK = 1_000_000


def finished(path: Path | str) -> Path:
    """The file as kafka-to-nexus (>= eed2958d) leaves it once closed: mode 0440, which tells sfi it is complete."""
    os.chmod(path, 0o440)
    return Path(path)


def _text(group: h5py.Group, name: str, value: str) -> h5py.Dataset:
    return group.create_dataset(name, data=value, dtype=h5py.string_dtype())


def _events(group: h5py.Group, count: int, *, pulses: int = 1000) -> None:
    """An NXevent_data group with ``count`` events, written chunk by chunk."""
    ev = group.create_group("events")
    ev.attrs["NX_class"] = "NXevent_data"
    ids = ev.create_dataset("event_id", shape=(count,), dtype="u4", maxshape=(None,),
                              chunks=(min(max(count, 1), _CHUNK),))
    tof = ev.create_dataset("event_time_offset", shape=(count,), dtype="u4", maxshape=(None,),
                              chunks=(min(max(count, 1), _CHUNK),))
    tof.attrs["units"] = "ns"
    base = np.arange(min(count, _CHUNK), dtype="u4")
    for start in range(0, count, _CHUNK):
        n = min(_CHUNK, count - start)
        ids[start:start + n] = base[:n] % 4096
        tof[start:start + n] = base[:n] * 7 % 71_000_000
    etz = ev.create_dataset("event_time_zero",
                            data=np.arange(pulses, dtype="u8") * 71_428_571 + 1_700_000_000_000_000_000)
    etz.attrs["units"] = "ns"
    ev.create_dataset("event_index", data=np.linspace(0, count, pulses, endpoint=False).astype("u8"))


def write_ess(path: Path | str, *, events: int = 0, uuid: str | None = "5f0e7a1e-0000-4000-8000-000000000001",
              title: str = "test run", proposal: str | None = "123456", instrument: str = "LOKI",
              users: list[dict[str, str]] | None = None, start: str = "2024-05-01T10:00:00.000Z",
              end: str | None = "2024-05-01T11:30:00.000Z", entry_identifier: str = "1001",
              extra: dict[str, Any] | None = None, creator: str | None = "kafka-to-nexus commit 0123456") -> Path:
    """A kafka-to-nexus style file rooted at /entry (with the root ``creator`` attribute kafka-to-nexus writes)."""
    path = Path(path)
    users = users if users is not None else [
        {"name": "Ada Lovelace", "email": "ada@example.org", "affiliation": "ESS", "facility_user_id": "adalov"}]
    with h5py.File(path, "w") as fh:
        if creator is not None:
            fh.attrs["creator"] = creator
        entry = fh.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        if uuid is not None:
            _text(entry, "entry_identifier_uuid", uuid)
        _text(entry, "entry_identifier", entry_identifier)
        if proposal is not None:
            _text(entry, "experiment_identifier", proposal)
        _text(entry, "experiment_description", f"Proposal {proposal}")
        _text(entry, "title", title)
        _text(entry, "start_time", start)
        if end is not None:
            _text(entry, "end_time", end)
        inst = entry.create_group("instrument")
        inst.attrs["NX_class"] = "NXinstrument"
        _text(inst, "name", instrument)
        sample = entry.create_group("sample")
        sample.attrs["NX_class"] = "NXsample"
        _text(sample, "name", "silicon powder")
        temp = sample.create_dataset("temperature", data=295.5)
        temp.attrs["units"] = "K"
        for user in users:
            group = entry.create_group("user_" + user["name"].replace(" ", ""))
            group.attrs["NX_class"] = "NXuser"
            for key, value in user.items():
                _text(group, key, value)
        detector = inst.create_group("detector")
        detector.attrs["NX_class"] = "NXdetector"
        _events(detector, events)
        for key, value in (extra or {}).items():
            entry.create_dataset(key, data=value)
    return finished(path)


def write_isis(path: Path | str, *, run_number: int = 49886, title: str = "LOQ sample run", instrument: str = "LOQ",
               experiment_identifier: str | None = "1820123", start: str = "2024-07-01T09:00:00",
               end: str = "2024-07-01T10:30:00", events: int = 0, user: str | None = "Grace Hopper") -> Path:
    """An ISIS raw-style file rooted at /raw_data_1 (naive UK local times, one-element arrays like the DAE)."""
    path = Path(path)
    with h5py.File(path, "w") as fh:
        fh.attrs["file_name"] = np.bytes_(f"c:\\data\\{instrument}{run_number:08d}.nxs".encode())
        raw = fh.create_group("raw_data_1")
        raw.attrs["NX_class"] = np.bytes_(b"NXentry")
        raw.create_dataset("run_number", data=np.array([run_number], dtype="i4"))
        raw.create_dataset("title", data=np.array([title.encode()]))
        raw.create_dataset("name", data=np.array([instrument.encode()]))
        raw.create_dataset("beamline", data=np.array([instrument.encode()]))
        if experiment_identifier is not None:
            raw.create_dataset("experiment_identifier", data=np.array([experiment_identifier.encode()]))
        raw.create_dataset("start_time", data=np.array([start.encode()]))
        raw.create_dataset("end_time", data=np.array([end.encode()]))
        raw.create_dataset("good_frames", data=np.array([17000], dtype="i4"))
        raw.create_dataset("total_counts", data=np.array([123456789], dtype="i8"))
        duration = raw.create_dataset("duration", data=np.array([5400.0], dtype="f4"))
        duration.attrs["units"] = np.bytes_(b"second")
        inst = raw.create_group("instrument")
        inst.attrs["NX_class"] = np.bytes_(b"NXinstrument")
        inst.create_dataset("name", data=np.array([instrument.encode()]))
        if user is not None:
            u = raw.create_group("user_1")
            u.attrs["NX_class"] = np.bytes_(b"NXuser")
            u.create_dataset("name", data=np.array([user.encode()]))
            u.create_dataset("affiliation", data=np.array([b"STFC"]))
        sample = raw.create_group("sample")
        sample.attrs["NX_class"] = np.bytes_(b"NXsample")
        sample.create_dataset("name", data=np.array([b"water"]))
        det = raw.create_group("detector_1")
        det.attrs["NX_class"] = np.bytes_(b"NXevent_data")
        _events(det, events)
    return finished(path)


def _group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    group = parent.create_group(name)
    group.attrs["NX_class"] = nx_class
    return group


def write_v20(path: Path | str, *, title: str = "V20 chopper commissioning",
              start: str = "2019-10-21T12:34:56.789Z", end: str = "2019-10-21T13:05:00Z", events: int = 100) -> Path:
    """kafka-to-nexus V20 test data layout: the NXentry is ``/entry-01``, the instrument group is named V20."""
    path = Path(path)
    with h5py.File(path, "w") as fh:
        entry = _group(fh, "entry-01", "NXentry")
        _text(entry, "title", title)
        _text(entry, "start_time", start)
        _text(entry, "end_time", end)
        inst = _group(entry, "V20", "NXinstrument")
        _text(inst, "name", "V20")
        det = _group(inst, "detector_1", "NXdetector")
        _events(det, events, pulses=10)
        sample = _group(entry, "sample", "NXsample")
        _text(sample, "name", "chopper test")
    return finished(path)


def write_ill(path: Path | str, *, title: str = "vanadium calibration", start: str = "18-Sep-21 22:04:08",
              end: str = "18-Sep-21 22:34:10", proposal: str = "9-10-1650", run_number: int = 92345) -> Path:
    """ILL layout: NXentry ``/entry0``, day-month-year naive local times, instrument group named after
    the instrument (``/entry0/D22``), one ``user`` group holding the proposal."""
    path = Path(path)
    with h5py.File(path, "w") as fh:
        entry = _group(fh, "entry0", "NXentry")
        entry.create_dataset("title", data=np.array([title.encode()]))
        entry.create_dataset("start_time", data=np.array([start.encode()]))
        entry.create_dataset("end_time", data=np.array([end.encode()]))
        entry.create_dataset("run_number", data=np.array([run_number], dtype="i4"))
        entry.create_dataset("experiment_identifier", data=np.array([proposal.encode()]))
        duration = entry.create_dataset("duration", data=np.array([1802.0], dtype="f4"))
        duration.attrs["units"] = "second"
        inst = _group(entry, "D22", "NXinstrument")
        inst.create_dataset("name", data=np.array([b"D22"]))
        user = _group(entry, "user", "NXuser")
        user.create_dataset("name", data=np.array([b"Marie Curie"]))
        user.create_dataset("namelocalcontact", data=np.array([b"Paul Langevin"]))
        user.create_dataset("proposal", data=np.array([proposal.encode()]))
        sample = _group(entry, "sample", "NXsample")
        sample.create_dataset("name", data=np.array([b"vanadium"]))
    return finished(path)


def write_supermusr(path: Path | str, *, run_number: int = 1234, events: int = 5000, frames: int = 50,
                    file_time: str = "2024-11-27 21:49:41.125433859 UTC",
                    start: str = "2024-11-27T21:39:41.000000001+00:00") -> Path:
    """SuperMuSR nexus-writer layout: muon ``raw_data_1`` with an event detector, no end_time; the end
    is the root ``file_time`` (nanoseconds and a ``UTC`` word)."""
    path = Path(path)
    with h5py.File(path, "w") as fh:
        fh.attrs["file_name"] = f"MUSR{run_number:08d}.nxs"
        fh.attrs["file_time"] = file_time
        raw = _group(fh, "raw_data_1", "NXentry")
        raw.create_dataset("IDF_version", data=np.int32(2))
        _text(raw, "definition", "muonTD")
        raw.create_dataset("run_number", data=np.int32(run_number))
        _text(raw, "title", "SuperMuSR commissioning run")
        _text(raw, "start_time", start)
        _text(raw, "name", "SuperMuSR")
        _text(raw, "experiment_identifier", "2410987")
        inst = _group(raw, "instrument", "NXinstrument")
        _text(inst, "name", "SuperMuSR")
        det = _group(raw, "detector_1", "NXevent_data")
        for name, dtype in (("event_id", "u4"), ("event_time_offset", "u4"), ("pulse_height", "f8")):
            det.create_dataset(name, shape=(events,), dtype=dtype, chunks=(min(max(events, 1), _CHUNK),))
        det.create_dataset("event_time_zero", data=np.arange(frames, dtype="u8") * 20_000_000)
        det.create_dataset("event_index", data=np.linspace(0, events, frames, endpoint=False).astype("u4"))
        det.create_dataset("frame_number", data=np.arange(frames, dtype="u4"))
        det.create_dataset("period_number", data=np.zeros(frames, dtype="u4"))
    return path


def write_other(path: Path | str) -> Path:
    """A valid HDF5 file with neither /entry nor /raw_data_1."""
    path = Path(path)
    with h5py.File(path, "w") as fh:
        fh.create_group("measurement").create_dataset("value", data=1.0)
    return finished(path)


def ten_million_event_file(base: Path) -> Path:
    """The shared 10^7-event ESS file under a session's base temp dir, written on first use (~0.5 s)."""
    path = Path(base) / "ess_10m" / "ess_10m.nxs"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        write_ess(partial, events=10_000_000)
        partial.rename(path)
    return path


class FileLock:
    """Another process holding ``path`` open for writing (HDF5's file lock) for ``seconds``."""

    def __init__(self, path: Path | str, seconds: float) -> None:
        self.path, self.seconds = str(path), seconds
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> FileLock:
        code = ("import h5py, sys, time\n"
                f"f = h5py.File({self.path!r}, 'a')\n"
                "print('locked', flush=True)\n"
                f"time.sleep({self.seconds})\n"
                "f.close()\n")
        self._proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        assert line.strip() == b"locked", line
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.wait(timeout=self.seconds + 30)
