"""f143: any EPICS structure, obsolete (``f143_structure.fbs``, which includes ``fwdi``)."""

from __future__ import annotations

from typing import Any

from .._time import iso_from_ns
from ._common import value_tables
from ._table import Schema, read
from .fwdi import FWDINFO

_SCALARS = ["Byte", "Short", "Int", "Long", "UByte", "UShort", "UInt", "ULong", "Float", "Double", "String"]

SCHEMA = Schema(root="Structure", tables={
    **value_tables(),
    "ObjM": [("k", "string"), ("v", "Value")],
    "Obj": [("value", "[ObjM]")],
    "ArrayObj": [("value", "[Obj]")],
    "fwdinfo_1_t": FWDINFO,
    "Structure": [("name", "string"), ("value", "Value"), ("timestamp", "ulong"),
                  ("fwdinfo", "forwarder_internal"), ("expires_after", "ulong")],
}, unions={
    "Value": _SCALARS + ["Obj"] + [f"Array{s}" for s in _SCALARS] + ["ArrayObj"],
    "forwarder_internal": ["fwdinfo_1_t"],
})


def deserialise(buf: bytes) -> dict[str, Any]:
    out = read(SCHEMA, buf)
    out["timestamp"] = iso_from_ns(out["timestamp"])  # ns since the epoch; expires_after is a duration in ns
    return out
