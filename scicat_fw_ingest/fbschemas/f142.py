"""f142: log data, the format most sample-environment streams still use (``f142_logdata.fbs``).

Why sfi reads f142 itself: ess-streaming-data-types' ``deserialise_f142`` (up to at least 0.27) calls
``np.unicode_``, removed in numpy 2, for every scalar and string value. This reader gives the same fields as
the library's ``LogDataInfo`` (``value``, ``source_name``, ``timestamp_unix_ns``, ``alarm_status``,
``alarm_severity``) under any numpy, plus ``value_type`` (the union member: a scalar's width and signedness
are otherwise lost in JSON).
"""

from __future__ import annotations

from typing import Any

from ._common import value_tables
from ._table import Schema, read

_STATUS = ["NO_ALARM", "READ", "WRITE", "HIHI", "HIGH", "LOLO", "LOW", "STATE", "COS", "COMM", "TIMED", "HWLIMIT",
           "CALC", "SCAN", "LINK", "SOFT", "BAD_SUB", "UDF", "DISABLE", "SIMM", "READ_ACCESS", "WRITE_ACCESS",
           "NO_CHANGE"]
_SEVERITY = ["MINOR", "MAJOR", "NO_ALARM", "INVALID", "NO_CHANGE"]
_NUMBERS = ["Byte", "UByte", "Short", "UShort", "Int", "UInt", "Long", "ULong", "Float", "Double"]

SCHEMA = Schema(root="LogData", tables={
    **value_tables(),
    "LogData": [("source_name", "string"), ("value", "Value"), ("timestamp_unix_ns", "ulong"),
                ("alarm_status", "AlarmStatus", 22), ("alarm_severity", "AlarmSeverity", 4)],
}, unions={"Value": _NUMBERS + [f"Array{s}" for s in _NUMBERS] + ["String", "ArrayString"]},
   enums={"AlarmStatus": ("ushort", dict(enumerate(_STATUS))),
          "AlarmSeverity": ("ushort", dict(enumerate(_SEVERITY)))})


def deserialise(buf: bytes) -> dict[str, Any]:
    raw = read(SCHEMA, buf)
    union = raw["value"]
    return {
        "value": None if union is None else union["value"],
        "value_type": None if union is None else union["type"],
        "source_name": raw["source_name"] or "",
        "timestamp_unix_ns": raw["timestamp_unix_ns"],
        "alarm_status": raw["alarm_status"],
        "alarm_severity": raw["alarm_severity"],
    }
