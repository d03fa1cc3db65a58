"""What kafka-to-nexus's files look like, as checks any HDF5 file can be put through.

Used on real kafka-to-nexus files (``../shared/data/ess_coda_small.hdf``) and on produce-test's files alike, so
that both get the same answers. Sources: ../shared/docs/filewriter-protocol.md and kafka-to-nexus's writer modules
(``NeXusDataset::CueTimestampZero`` int64, ``ExtensibleDataset`` chunked with an unlimited first dimension and the
modules' ``chunk_size`` defaults, da00 ``Variable::add_dataset_attributes``, mdat strings ASCII).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py

#: kafka-to-nexus's default rows per chunk per writer module (1-D stream datasets).
K2N_CHUNK_ROWS = {"f144": 1024, "f142": 1024, "ns10": 1024, "tdct": 4096, "senv": 8192, "se00": 8192,
                  "ev44": 8192, "ev42": 8192, "ev43": 8192, "an44": 8192, "ep00": 1024, "ep01": 1024, "al00": 1024}
#: Elements per chunk of the array modules' n-d datasets (their 1-D ones: 1024 rows).
K2N_CHUNK_ELEMENTS = 1 << 20
#: Scalar-per-run datasets a stream module writes at the end (not appended to).
_WRITTEN_ONCE = {"minimum_value", "maximum_value", "average_value"}

CHECKS = ("time dtypes", "cue_timestamp_zero int64", "stream datasets chunked and extendable", "chunk sizes",
          "stream group attributes", "value units", "da00 attributes", "mdat strings ascii",
          "other strings utf-8", "root file_name a path", "hard links only")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def convention_answers(path: Path) -> dict[str, list[str] | None]:
    """Per check: the places where the file breaks it (``[]``: kept), or ``None`` when the file has nothing
    the check applies to."""
    seen: dict[str, list[str] | None] = dict.fromkeys(CHECKS)

    def note(check: str, problem: str | None = None) -> None:
        found = seen[check]
        if found is None:
            found = seen[check] = []
        if problem:
            found.append(problem)

    def dataset(name: str, obj: h5py.Dataset) -> None:
        base = name.rsplit("/", 1)[-1]
        parent = obj.parent
        module = _text(parent.attrs.get("writer_module", ""))
        if base in ("time", "event_time_zero"):
            note("time dtypes", None if obj.dtype == "uint64" else f"{name}: {obj.dtype}, not uint64")
        if base == "cue_index":
            note("time dtypes", None if obj.dtype == "int64" else f"{name}: {obj.dtype}, not int64")
        if base == "cue_timestamp_zero":
            note("cue_timestamp_zero int64", None if obj.dtype == "int64" else f"{name}: {obj.dtype}, not int64")
            if "start" not in obj.attrs:
                note("cue_timestamp_zero int64", f"{name}: no start attribute")
        if module and base not in _WRITTEN_ONCE and obj.shape:
            extendable = obj.chunks is not None and obj.maxshape[0] is None
            note("stream datasets chunked and extendable", None if extendable else
                 f"{name}: chunks {obj.chunks}, maxshape {obj.maxshape}")
            if obj.chunks is not None:
                row = 1
                for size in obj.shape[1:]:
                    row *= size
                rows = K2N_CHUNK_ROWS.get(module, 1024)
                want = rows if len(obj.shape) == 1 else max(1, K2N_CHUNK_ROWS.get(module, K2N_CHUNK_ELEMENTS) // row)
                note("chunk sizes", None if obj.chunks[0] == want else f"{name}: {obj.chunks[0]} rows, not {want}")
        if module in ("f144", "f142", "ad00") and base in ("value", *_WRITTEN_ONCE):
            note("value units", None if "units" in obj.attrs else f"{name}: {module} value without units")
        if module == "da00" and base not in ("time", "cue_index", "cue_timestamp_zero"):
            problems = []
            if "label" in obj.attrs:
                problems.append(f"{name}: 'label' attribute (kafka-to-nexus writes long_name)")
            if "axes" in obj.attrs and (getattr(obj.attrs["axes"], "shape", ()) != ()
                                        or not _text(obj.attrs["axes"]).startswith("time:")):
                problems.append(f"{name}: axes not one 'time:...' string")
            note("da00 attributes", "; ".join(problems) or None)
        kind = h5py.check_string_dtype(obj.dtype)
        if kind is not None:
            if base in ("start_time", "end_time") and _text(parent.attrs.get("NX_class", "")) == "NXentry":
                note("mdat strings ascii", None if kind.encoding == "ascii" and obj.shape == () else
                     f"{name}: {kind.encoding} {obj.shape}")
            else:
                note("other strings utf-8", None if kind.encoding == "utf-8" else f"{name}: {kind.encoding}")

    def group(name: str, obj: h5py.Group) -> None:
        module = _text(obj.attrs.get("writer_module", ""))
        if module:
            missing = [key for key in ("topic", "source") if key not in obj.attrs]
            note("stream group attributes", f"{name}: no {', '.join(missing)}" if missing else None)
        if module == "da00":
            note("da00 attributes", None if {"signal", "axes"} <= set(obj.attrs) else
                 f"{name}: no group signal/axes attributes")
        for child in obj:
            link = obj.get(child, getlink=True)
            note("hard links only", None if isinstance(link, h5py.HardLink) else f"{name}/{child}: not a hard link")

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            dataset(name, obj)
        else:
            group(name, obj)

    with h5py.File(path, "r") as f:
        if "file_name" in f.attrs:
            name = _text(f.attrs["file_name"])
            note("root file_name a path",
                 None if name.startswith("/") else f"/@file_name {name!r}: not the opened path")
        group("/", f)
        f.visititems(visit)
    return seen


def convention_problems(path: Path) -> list[str]:
    """Every place where a file differs from what kafka-to-nexus writes."""
    return [problem for found in convention_answers(path).values() for problem in found or []]
