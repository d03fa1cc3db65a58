"""mo01: NMX event-formation monitoring, under development upstream (``mo01_nmx.fbs``)."""

from __future__ import annotations

from typing import Any

from ._table import Schema, read

SCHEMA = Schema(root="MonitorMessage", tables={
    "pos": [("time", "uint"), ("strip", "ushort"), ("adc", "ushort")],
    "GEMTrack": [("time", "ulong"), ("xtrack", "[pos]"), ("ytrack", "[pos]"), ("xpos", "double"), ("ypos", "double")],
    "GEMHist": [("xstrips", "[uint]"), ("ystrips", "[uint]"), ("xspectrum", "[uint]"), ("yspectrum", "[uint]"),
                ("cluster_spectrum", "[uint]")],
    "MonitorMessage": [("source_name", "string"), ("data", "DataField")],
}, unions={"DataField": ["GEMHist", "GEMTrack"]})


def deserialise(buf: bytes) -> dict[str, Any]:
    return read(SCHEMA, buf)  # GEMTrack.time is the detector's clock, not a time since the epoch: a number
