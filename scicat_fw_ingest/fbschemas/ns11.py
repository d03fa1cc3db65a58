"""ns11: NICOS cache entry with typed values (``ns11_typed_cache_entry.fbs``)."""

from __future__ import annotations

from typing import Any

from .._time import iso_from_seconds
from ._common import value_tables
from ._table import Schema, read

_SCALARS = ["Byte", "Short", "Int", "Long", "UByte", "UShort", "UInt", "ULong", "Float", "Double", "String"]

SCHEMA = Schema(root="CacheEntry", tables={
    **value_tables(extra=(("array_type", "ArrayType"),)),
    "DictMapping": [("k", "Value"), ("v", "Value")],
    "Dict": [("value", "[DictMapping]")],
    "CacheEntry": [("key", "string"), ("time", "double"), ("ttl", "double"), ("expired", "bool", False),
                   ("value", "Value")],
}, unions={"Value": _SCALARS + ["Dict"] + [f"Array{s}" for s in _SCALARS]},
   enums={"ArrayType": ("byte", {0: "ListType", 1: "TupleType", 2: "SetType"})})


def deserialise(buf: bytes) -> dict[str, Any]:
    out = read(SCHEMA, buf)
    out["time"] = iso_from_seconds(out["time"]) if out["time"] else None  # s since the epoch; ttl is a duration
    return out
