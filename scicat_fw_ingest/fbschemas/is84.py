"""is84: ISIS fields of neutron event messages (``is84_isis_events.fbs``; no root type declared: a message
with this id holds one ``ISISData``)."""

from __future__ import annotations

from typing import Any

from ._table import Schema, read

SCHEMA = Schema(root="ISISData", tables={
    "ISISData": [("period_number", "uint"), ("run_state", "RunState"), ("proton_charge", "float")],
    "ArrayISISData": [("period_number", "[uint]"), ("run_state", "RunState"), ("proton_charge", "[float]")],
}, enums={"RunState": ("byte", {0: "SETUP", 1: "RUNNING"})})


def deserialise(buf: bytes) -> dict[str, Any]:
    return read(SCHEMA, buf)
