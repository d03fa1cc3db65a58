"""amo0: PSI SINQ (AMOR) neutron events (``amo0_psi_sinq.fbs``)."""

from __future__ import annotations

from typing import Any

from .._time import iso_from_ns
from ._table import Schema, read

SCHEMA = Schema(root="EventMessage", tables={
    "EventMessage": [("source_name", "string"), ("message_id", "ulong"), ("pulse_time", "ulong"),
                     ("time_of_flight", "[uint]"), ("detector_id", "[uint]")],
})


def deserialise(buf: bytes) -> dict[str, Any]:
    out = read(SCHEMA, buf)
    out["pulse_time"] = iso_from_ns(out["pulse_time"])  # ns since the epoch, as ev42's pulse_time
    return out
