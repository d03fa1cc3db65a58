"""f140: any EPICS PVStructure, obsolete (``f140_general.fbs``)."""

from __future__ import annotations

from typing import Any

from ._common import value_tables
from ._table import Schema, read

_SCALARS = ["Byte", "Short", "Int", "Long", "UByte", "UShort", "UInt", "ULong", "Float", "Double", "String"]

SCHEMA = Schema(root="PV", tables={
    **value_tables("v", prefix="pv", array_prefix="", array_suffix="_a"),
    "ObjM": [("k", "string"), ("v", "F")],
    "Obj": [("ms", "[ObjM]")],
    "Obj_a": [("v", "[Obj]")],
    "PV": [("n", "string"), ("v", "F")],
}, unions={"F": [f"pv{s}" for s in _SCALARS] + [f"pv{s}_a" for s in _SCALARS] + ["Obj", "Obj_a"]})


def deserialise(buf: bytes) -> dict[str, Any]:
    return read(SCHEMA, buf)
