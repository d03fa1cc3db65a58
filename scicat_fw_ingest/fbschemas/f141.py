"""f141: EPICS normative-type scalars and arrays, obsolete (``f141_epics_nt.fbs``)."""

from __future__ import annotations

from typing import Any

from .._time import iso_from_ns
from ._common import NUMBER_TYPES
from ._table import Schema, read

_TABLES: dict[str, list[tuple[Any, ...]]] = {}
for _suffix, _kind in NUMBER_TYPES:
    _TABLES[f"NTScalar{_suffix}"] = [("value", _kind)]
    _TABLES[f"NTScalarArray{_suffix}"] = [("value", f"[{_kind}]")]
_ORDER = ["Byte", "UByte", "Short", "UShort", "Int", "UInt", "Long", "ULong", "Float", "Double"]

SCHEMA = Schema(root="EpicsPV", tables={
    **_TABLES,
    "EpicsPV": [("name", "string"), ("pv", "PV"), ("timeStamp", "timeStamp_t")],
}, unions={"PV": [f"NTScalar{s}" for s in _ORDER] + [f"NTScalarArray{s}" for s in _ORDER]},
   structs={"timeStamp_t": [("secondsPastEpoch", "ulong"), ("nanoseconds", "int")]})


def deserialise(buf: bytes) -> dict[str, Any]:
    out = read(SCHEMA, buf)
    stamp = out.pop("timeStamp")
    # EPICS time: seconds and nanoseconds since the Unix epoch (the forwarder converted it), shown as one time.
    out["timestamp"] = (None if stamp is None else
                        iso_from_ns(stamp["secondsPastEpoch"] * 1_000_000_000 + stamp["nanoseconds"]))
    return out
