"""A simulated SuperMuSR nexus-writer: run start, run stop, no wrdn, and a slow copy into the archive.

Why: the real writer (STFC supermusr-data-pipeline, Rust) sends no finished-writing message. It
consumes a run start (pl72) and a run stop (6s4t), writes ``<local>/<run_name>.nxs``, and when the
run is complete copies the file into its archive directory (``std::fs::copy``) and deletes the
original. The archive file therefore exists, growing, while it is being copied: the half-copied
window ``sfi watch`` must not ingest. This simulator reproduces exactly that, slowly and in chunks
(optionally pausing half-way, longer than a watcher's quiet period), for tests and the demo.

Files follow the writer's layout (its ``nexus_structure`` sources, 2024-2025): root attributes
``HDF5_version``, ``NeXus_version``, ``file_name`` and ``file_time`` in the form
``2024-11-27 21:49:41.125433859 UTC`` (chrono's ``Utc::now().to_string()``); ``/raw_data_1`` (NXentry,
muonTD) with ``IDF_version``, ``definition``, ``program_name``, ``run_number``, ``name`` (the run
name), empty ``title`` and ``experiment_identifier``, ``start_time``/``end_time`` as
``%Y-%m-%dT%H:%M:%S%z``, ``instrument`` (``name``, ``source``), ``period``, ``runlogs``, ``selogs``,
``sample`` and ``detector_1`` (NXevent_data: pulse_height, event_id, event_time_offset,
event_time_zero with its ``offset`` attribute, event_index, period/frame numbers, flags).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..config import Config

__all__ = ["SimulatedRun", "copy_slowly", "file_time_text", "simulate_supermusr", "write_run_file"]

PROGRAM_NAME = "SuperMuSR Data Pipeline Nexus Writer"
SERVICE_ID = "supermusr-nexus-writer-sim"
#: Bytes per event in the file (pulse_height f8, event_id u4, event_time_offset u4).
_EVENT_BYTES = 16


def file_time_text(ns: int) -> str:
    """``2024-11-27 21:49:41.125433859 UTC``: how the writer stamps ``/@file_time`` (ns since the epoch)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S") + f".{frac:09d} UTC"


def _nexus_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class SimulatedRun:
    """One simulated run; times are ms since the epoch, copy times ``time.time()`` seconds."""

    run_name: str
    job_id: str
    instrument: str
    start_ms: int
    stop_ms: int
    local_path: str = ""
    archive_path: str = ""
    size: int = 0
    copy_started: float = 0.0
    copy_finished: float = 0.0

    @property
    def filename(self) -> str:
        """The writer names its file after the run."""
        return f"{self.run_name}.nxs"

    def to_json(self) -> dict[str, Any]:
        """One line of ``produce-test --writer supermusr --json``."""
        return {"run_name": self.run_name, "job_id": self.job_id, "file": self.archive_path, "size": self.size,
                "copy_started": self.copy_started, "copy_finished": self.copy_finished}


def write_run_file(path: str | Path, run: SimulatedRun, *, size_mb: float = 3.0, seed: int = 0) -> int:
    """Write ``run``'s file at ``path`` in the writer's layout with about ``size_mb`` MB of events; its size."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(seed)
    events = max(1, int(size_mb * 1_000_000 / _EVENT_BYTES))
    frames = max(1, events // 500)
    path = str(path)
    text = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f.attrs["HDF5_version"] = "{}.{}.{}".format(*h5py.version.hdf5_version_tuple)
        f.attrs["NeXus_version"] = ""
        f.attrs["file_name"] = path
        f.attrs["file_time"] = file_time_text(run.start_ms * 1_000_000 + int(rng.integers(0, 1_000_000)))
        entry = f.create_group("raw_data_1")
        entry.attrs["NX_class"] = "NXentry"
        entry.create_dataset("IDF_version", data=np.uint32(2))
        entry.create_dataset("definition", data="muonTD", dtype=text)
        program = entry.create_dataset("program_name", data=PROGRAM_NAME, dtype=text)
        program.attrs["version"] = "1.0"
        program.attrs["configuration"] = "simulated by sfi produce-test --writer supermusr"
        digits = "".join(c for c in run.run_name if c.isdigit())
        entry.create_dataset("run_number", data=np.uint32(int(digits) if digits else 0))
        charge = entry.create_dataset("proton_charge", data=np.float32(round(float(rng.uniform(10, 200)), 3)))
        charge.attrs["units"] = "uAh"
        duration = entry.create_dataset("duration", data=np.uint32((run.stop_ms - run.start_ms) // 1000))
        duration.attrs["units"] = "second"
        entry.create_dataset("experiment_identifier", data="", dtype=text)
        entry.create_dataset("start_time", data=_nexus_time(run.start_ms), dtype=text)
        entry.create_dataset("end_time", data=_nexus_time(run.stop_ms), dtype=text)
        entry.create_dataset("name", data=run.run_name, dtype=text)
        entry.create_dataset("title", data="", dtype=text)
        instrument = entry.create_group("instrument")
        instrument.attrs["NX_class"] = "NXinstrument"
        instrument.create_dataset("name", data=run.instrument, dtype=text)
        source = instrument.create_group("source")
        source.attrs["NX_class"] = "NXsource"
        source.create_dataset("name", data="MuSR", dtype=text)
        source.create_dataset("type", data="", dtype=text)
        source.create_dataset("probe", data="", dtype=text)
        period = entry.create_group("period")
        period.attrs["NX_class"] = "NXperiod"
        period.create_dataset("number", data=np.uint32(1))
        period.create_dataset("type", data=np.array([1], dtype="u4"))
        for name in ("runlogs", "selogs"):
            entry.create_group(name).attrs["NX_class"] = "IXrunlog" if name == "runlogs" else "IXselog"
        sample = entry.create_group("sample")
        sample.attrs["NX_class"] = "NXsample"
        detector = entry.create_group("detector_1")
        detector.attrs["NX_class"] = "NXevent_data"
        chunk = (min(events, 1 << 16),)
        detector.create_dataset("pulse_height", data=rng.uniform(0, 2.0, events), maxshape=(None,), chunks=chunk)
        detector.create_dataset("event_id", data=rng.integers(0, 64, events, dtype="u4"), maxshape=(None,),
                                chunks=chunk)
        offsets = detector.create_dataset("event_time_offset", data=rng.integers(0, 30_000, events, dtype="u4"),
                                          maxshape=(None,), chunks=chunk)
        offsets.attrs["units"] = "ns"
        zero = detector.create_dataset("event_time_zero", data=np.arange(frames, dtype="u8") * 20_000_000,
                                       maxshape=(None,))
        zero.attrs["units"] = "ns"
        zero.attrs["offset"] = datetime.fromtimestamp(run.start_ms / 1000, tz=UTC).isoformat()
        detector.create_dataset("event_index", data=np.linspace(0, events, frames, endpoint=False).astype("u8"))
        detector.create_dataset("period_number", data=np.zeros(frames, dtype="u8"))
        detector.create_dataset("frame_number", data=np.arange(frames, dtype="u8"))
        detector.create_dataset("frame_complete", data=np.ones(frames, dtype="u8"))
        detector.create_dataset("running", data=np.ones(frames, dtype=bool))
        detector.create_dataset("veto_flags", data=np.zeros(frames, dtype="u2"))
    return os.path.getsize(path)


def copy_slowly(src: str, dst: str, *, chunk: int = 256 * 1024, delay: float = 0.01, pause: float = 0.0) -> None:
    """Copy ``src`` to ``dst`` in ``chunk``-byte pieces, ``delay`` s apart, stopping ``pause`` s half-way.

    Like ``std::fs::copy``, ``dst`` has its final name from the first byte on: a watcher sees it grow.
    """
    size = os.path.getsize(src)
    written = 0
    paused = pause <= 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while True:
            data = fin.read(chunk)
            if not data:
                break
            fout.write(data)
            fout.flush()
            written += len(data)
            if not paused and written >= size // 2:
                paused = True
                time.sleep(pause)
            elif delay > 0:
                time.sleep(delay)


def simulate_supermusr(cfg: Config | None, count: int, *, local_dir: Path, archive_dir: Path, topic: str,
                       instrument: str = "SuperMuSR", metadata: dict[str, Any] | None = None,
                       size_mb: float = 3.0, chunk: int = 256 * 1024, delay: float = 0.01, pause: float = 0.0,
                       pause_every: int = 1, first_run: int | None = None, seed: int | None = None,
                       on_run: Callable[[SimulatedRun], None] | None = None) -> list[SimulatedRun]:
    """Simulate ``count`` runs: pl72, the file written locally, 6s4t, the slow copy to the archive, removal.

    ``cfg`` None (or without a broker) writes and copies files only. ``pause`` applies to every
    ``pause_every``-th run. Messages go to ``topic``, the writer's run-control topic.
    """
    producer = None
    if cfg is not None and cfg.bootstrap:
        from ..kafka import ensure_topics, make_producer

        ensure_topics(cfg, [topic])
        producer = make_producer(cfg)
    base = first_run if first_run is not None else int(time.time()) % 10_000_000
    meta = json.dumps(metadata or {})
    runs: list[SimulatedRun] = []
    for i in range(count):
        start_ms = int(time.time() * 1000)
        run = SimulatedRun(f"MUSR{base + i:08d}", str(uuid.uuid4()), instrument, start_ms, start_ms + 60_000)
        if producer is not None:
            _send(producer, topic, _run_start(run, meta))
        run.local_path = str(local_dir / run.filename)
        run.size = write_run_file(run.local_path, run, size_mb=size_mb, seed=(seed or 0) + i)
        if producer is not None:
            _send(producer, topic, _run_stop(run))
        run.archive_path = str(archive_dir / run.filename)
        run.copy_started = time.time()
        copy_slowly(run.local_path, run.archive_path, chunk=chunk, delay=delay,
                    pause=pause if pause_every > 0 and i % pause_every == 0 else 0.0)
        run.copy_finished = time.time()
        os.remove(run.local_path)
        runs.append(run)
        if on_run is not None:
            on_run(run)
    return runs


def _run_start(run: SimulatedRun, metadata: str) -> bytes:
    from streaming_data_types import serialise_pl72

    payload: bytes = serialise_pl72(job_id=run.job_id, filename=run.filename, start_time=run.start_ms,
                                    run_name=run.run_name, instrument_name=run.instrument, metadata=metadata,
                                    service_id="")
    return payload


def _run_stop(run: SimulatedRun) -> bytes:
    from streaming_data_types import serialise_6s4t

    payload: bytes = serialise_6s4t(run.job_id, run.run_name, SERVICE_ID, str(uuid.uuid4()), run.stop_ms)
    return payload


def _send(producer: Any, topic: str, value: bytes) -> None:
    from ..kafka import produce_sync

    produce_sync(producer, topic, value)
