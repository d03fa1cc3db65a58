"""dtdb: ADC pulse debug fields (``dtdb_adc_pulse_debug.fbs``, the file the upstream README lists for dtdb;
the older ``dtdb_ess_event_debug.fbs`` had only amplitude and background)."""

from __future__ import annotations

from typing import Any

from .._time import iso_from_ns
from ._table import Schema, read

SCHEMA = Schema(root="AdcPulseDebug", tables={
    "AdcPulseDebug": [("amplitude", "[uint]"), ("peak_area", "[uint]"), ("background", "[uint]"),
                      ("threshold_time", "[ulong]"), ("peak_time", "[ulong]")],
})


def deserialise(buf: bytes) -> dict[str, Any]:
    out = read(SCHEMA, buf)
    for name in ("threshold_time", "peak_time"):  # ns since the epoch
        if out[name] is not None:
            out[name] = [iso_from_ns(v) for v in out[name].tolist()]
    return out
