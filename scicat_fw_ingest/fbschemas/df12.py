"""df12: detector-spectrum map for Mantid (``df12_det_spec_map.fbs``)."""

from __future__ import annotations

from typing import Any

from ._table import Schema, read

SCHEMA = Schema(root="SpectraDetectorMapping", tables={
    "SpectraDetectorMapping": [("spectrum", "[int]"), ("detector_id", "[int]"), ("n_spectra", "int")],
})


def deserialise(buf: bytes) -> dict[str, Any]:
    return read(SCHEMA, buf)
