"""Simulated data for the file writer's stream modules, in the layout kafka-to-nexus writes them.

Why simulated: a stream module's data comes from Kafka while the writer runs; the simulated writer
has no such data, but readers (and links in the structure) need the datasets to exist with the
right names, types and units. A few values per module keep the files small. A bad module config
raises ``ValueError``; the writer turns it into a ``NexusStructureError`` naming the place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import h5py
import numpy as np

#: kafka-to-nexus dtype names -> numpy dtypes; "string" is handled by the caller.
DTYPES: dict[str, str] = {
    "double": "float64", "float64": "float64", "float": "float32", "float32": "float32",
    "int8": "int8", "uint8": "uint8", "int16": "int16", "uint16": "uint16", "int32": "int32",
    "uint32": "uint32", "int64": "int64", "uint64": "uint64", "int": "int32", "uint": "uint32",
    "char": "int8", "uchar": "uint8", "short": "int16", "ushort": "uint16", "long": "int64",
    "ulong": "uint64", "bool": "bool",
}
STRING = h5py.string_dtype("utf-8")
ASCII = h5py.string_dtype("ascii")

#: The ``start`` attribute kafka-to-nexus puts on its ns-since-epoch time datasets.
EPOCH = "1970-01-01T00:00:00Z"
#: Rows per chunk of a stream module's datasets: kafka-to-nexus's ``chunk_size`` defaults (its writer modules'
#: ``JsonConfig::Field<size_t> ChunkSize``; a ``chunk_size`` in the module's config wins, as there). Every
#: stream dataset is chunked and extendable along time (``maxshape`` ``(None, ...)``), as the writer appends.
CHUNK_ROWS: dict[str, int] = {
    "f144": 1024, "f142": 1024, "ns10": 1024, "tdct": 4096, "senv": 8192, "se00": 8192,
    "ev44": 8192, "ev42": 8192, "ev43": 8192, "an44": 8192, "ep00": 1024, "ep01": 1024, "al00": 1024,
}
#: Elements per chunk of the array modules' n-d datasets (ad00, NDAr, ADAr, da00: ``chunk_size`` ``{1 << 20}``);
#: their 1-D datasets (time, cue_*) get ``DEFAULT_CHUNK_ROWS``.
CHUNK_ELEMENTS = 1 << 20
ARRAY_MODULES = frozenset({"ad00", "NDAr", "ADAr", "da00"})
DEFAULT_CHUNK_ROWS = 1024
#: How many simulated entries each stream module gets: small on purpose.
LOG_POINTS = 10
PULSES = 5
FRAMES = 3


def numpy_dtype(name: Any) -> str | None:
    """The numpy dtype of a kafka-to-nexus type name; ``None`` for strings."""
    if name is None or name == "string":
        return None
    if not isinstance(name, str) or name.lower() not in DTYPES:
        raise ValueError(f"unknown type {name!r} (known: string, {', '.join(sorted(DTYPES))})")
    return DTYPES[name.lower()]


class StreamData:
    """Writes one run's simulated stream datasets: times within the run, seeded random values."""

    def __init__(self, rng: np.random.Generator, start_ns: int, stop_ns: int) -> None:
        self.rng = rng
        self.start_ns, self.stop_ns = start_ns, stop_ns
        self.datasets = 0
        #: Chunking of the module being written: rows per chunk, and for the array modules (ad00, da00, ...)
        #: elements per chunk of their n-d datasets (``None``: n-d datasets get ``chunk_rows`` rows' worth).
        self.chunk_rows = 1024
        self.chunk_elements: int | None = None

    def put(self, group: h5py.Group, name: str, data: Any, *, fixed: bool = False, **attrs: Any) -> h5py.Dataset:
        """A stream dataset: chunked and extendable along its first axis (``fixed``: a scalar, as written)."""
        if name in group:
            raise ValueError(f"'{name}' exists already in {group.name} (two writers in one group?)")
        array = np.asarray(data)
        if fixed or array.ndim == 0:
            dataset = group.create_dataset(name, data=array)
        else:
            row = int(np.prod(array.shape[1:], dtype=np.int64)) or 1
            rows = self.chunk_rows if array.ndim == 1 else max(1, (self.chunk_elements or self.chunk_rows) // row)
            dataset = group.create_dataset(name, data=array, maxshape=(None, *array.shape[1:]),
                                           chunks=(rows, *array.shape[1:]))
        for key, value in attrs.items():
            if value is not None:
                dataset.attrs[key] = value
        self.datasets += 1
        return dataset

    def times(self, count: int) -> np.ndarray:
        # integer arithmetic: a float linspace loses the last digits of ns-since-epoch times
        steps = np.arange(count, dtype=np.int64)
        return self.start_ns + (self.stop_ns - self.start_ns) * steps // max(count - 1, 1)

    def put_time(self, group: h5py.Group, name: str, count: int) -> np.ndarray:
        stamps = self.times(count).astype(np.uint64)  # kafka-to-nexus: uint64 ns since the epoch
        self.put(group, name, stamps, units="ns", start=EPOCH)
        return stamps

    def cue(self, group: h5py.Group, first_ns: int) -> None:
        self.put(group, "cue_index", np.array([0], dtype=np.int64))
        # kafka-to-nexus: NeXusDataset::CueTimestampZero is int64 (event_time_zero and time are uint64)
        self.put(group, "cue_timestamp_zero", np.array([first_ns], dtype=np.int64), units="ns", start=EPOCH)

    def values(self, dtype: str | None, shape: tuple[int, ...]) -> np.ndarray:
        kind = np.dtype(dtype or "float64")
        if kind.kind == "f":
            return (10 + self.rng.standard_normal(shape)).astype(kind)
        if kind.kind == "b":
            return self.rng.integers(0, 2, shape).astype(bool)
        return self.rng.integers(0, min(100, np.iinfo(kind).max), shape).astype(kind)


def _units(config: dict[str, Any]) -> str:
    """The configured units; ``""`` when none, as kafka-to-nexus writes them on f144 values."""
    for key in ("value_units", "units", "unit"):
        if isinstance(config.get(key), str):
            return str(config[key])
    return ""


def _dtype_of(config: dict[str, Any], default: str = "double", *keys: str) -> str | None:
    for key in (*keys, "dtype", "type", "data_type"):
        if key in config:
            return numpy_dtype(config[key]) or "float64"
    return numpy_dtype(default)


def _sizes(value: Any, default: list[int]) -> list[int]:
    sizes = default if value is None else value
    if not isinstance(sizes, list) or not all(isinstance(s, int) and s >= 0 for s in sizes):
        raise ValueError(f"a shape must be a list of sizes, got {value!r}")
    return sizes


def _nxlog(s: StreamData, group: h5py.Group, config: dict[str, Any]) -> None:
    """f144/f142/ns10: NXlog with time, value (units where given) and the writer's statistics."""
    dtype = _dtype_of(config)
    shape = (LOG_POINTS, *_sizes(config.get("array_size"), []))
    stamps = s.put_time(group, "time", LOG_POINTS)
    values = s.values(dtype, shape)
    s.put(group, "value", values, units=_units(config))
    if values.ndim == 1:
        for name, stat in (("minimum_value", values.min()), ("maximum_value", values.max()),
                           ("average_value", values.mean())):
            s.put(group, name, np.float64(stat), fixed=True, units=_units(config))
    s.cue(group, int(stamps[0]))


def _events(s: StreamData, group: h5py.Group, config: dict[str, Any]) -> None:
    """ev44/ev42/ev43/an44: NXevent_data with pulses, their events and the index into them."""
    per_pulse = s.rng.integers(1, 20, PULSES)
    total = int(per_pulse.sum())
    pulses = s.put_time(group, "event_time_zero", PULSES)
    s.put(group, "event_index", np.concatenate([[0], np.cumsum(per_pulse)[:-1]]).astype(np.int64))
    s.put(group, "event_time_offset", s.rng.integers(0, 71_000_000, total).astype(np.int32), units="ns")
    s.put(group, "event_id", s.rng.integers(1, int(config.get("pixels", 16)) + 1, total).astype(np.int32))
    s.cue(group, int(pulses[0]))


def _timestamps(s: StreamData, group: h5py.Group, config: dict[str, Any]) -> None:
    """tdct: chopper top-dead-centre timestamps."""
    stamps = s.times(LOG_POINTS).astype(np.uint64)
    s.put(group, "time", stamps, units="ns", start=EPOCH)
    s.cue(group, int(stamps[0]))


def _area_detector(s: StreamData, group: h5py.Group, config: dict[str, Any]) -> None:
    """ad00 (and NDAr/ADAr): a few frames of the configured array_size."""
    sizes = _sizes(config.get("array_size"), [2, 2])
    stamps = s.put_time(group, "time", FRAMES)
    s.put(group, "value", s.values(_dtype_of(config, "uint16"), (FRAMES, *sizes)), units="")  # as kafka-to-nexus
    s.cue(group, int(stamps[0]))


def _data_array(s: StreamData, group: h5py.Group, config: dict[str, Any]) -> None:
    """da00: one dataset per configured variable, each over time."""
    variables = config.get("variables") or [{"name": "value", "data_type": "float64", "shape": []}]
    if not isinstance(variables, list) or not all(isinstance(v, dict) for v in variables):
        raise ValueError("'variables' must be a list of objects")
    stamps = s.put_time(group, "time", FRAMES)
    names: list[str] = []
    for var in variables:
        name = var.get("name")
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"every variable needs a 'name', got {name!r}")
        data = s.values(_dtype_of(var, "float64", "data_type"),
                        (FRAMES, *_sizes(var.get("shape"), [])))
        # kafka-to-nexus (da00 Variable::add_dataset_attributes): units, long_name from the label, and axes as
        # one colon-separated string led by time
        axes = var.get("axes")
        spec = "time:" + ":".join(str(a) for a in axes) if isinstance(axes, list) and axes else None
        s.put(group, name, data, units=var.get("unit"), long_name=var.get("label"), axes=spec)
        names.append(name)
    # NXdata: the group names its signal (the first variable, or the configured one) and its axes
    signal = config.get("signal") if isinstance(config.get("signal"), str) else names[0]
    first = next((v for v in variables if v.get("name") == signal), variables[0])
    group.attrs["signal"] = signal
    group.attrs["axes"] = np.array(["time", *(str(a) for a in first.get("axes") or [])], dtype=STRING)
    s.cue(group, int(stamps[0]))


def _sample_environment(s: StreamData, group: h5py.Group, config: dict[str, Any]) -> None:
    """senv/se00: sampled values with their times."""
    stamps = s.put_time(group, "time", LOG_POINTS)
    s.put(group, "value", s.values(_dtype_of(config, "int16"), (LOG_POINTS,)), units=_units(config) or None)
    s.cue(group, int(stamps[0]))


def _connection(s: StreamData, group: h5py.Group, config: dict[str, Any]) -> None:
    """ep00/ep01: the EPICS connection status log (connected throughout)."""
    s.put(group, "connection_status_time", s.times(2), units="ns")
    s.put(group, "connection_status", np.array(["CONNECTED", "CONNECTED"], dtype=STRING))


def _alarms(s: StreamData, group: h5py.Group, config: dict[str, Any]) -> None:
    """al00: alarm changes (none raised during the simulated run)."""
    s.put(group, "alarm_time", s.times(1), units="ns")
    s.put(group, "alarm_severity", np.array([0], dtype=np.int16))
    s.put(group, "alarm_message", np.array([""], dtype=STRING))


STREAMS: dict[str, Callable[[StreamData, h5py.Group, dict[str, Any]], None]] = {
    "f144": _nxlog, "f142": _nxlog, "ns10": _nxlog,
    "ev44": _events, "ev42": _events, "ev43": _events, "an44": _events,
    "tdct": _timestamps,
    "ad00": _area_detector, "NDAr": _area_detector, "ADAr": _area_detector,
    "da00": _data_array,
    "senv": _sample_environment, "se00": _sample_environment,
    "ep00": _connection, "ep01": _connection,
    "al00": _alarms,
}
