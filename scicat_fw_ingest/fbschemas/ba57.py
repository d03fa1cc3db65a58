"""ba57: run start/stop for Mantid, superseded by pl72/6s4t (``ba57_run_info.fbs``)."""

from __future__ import annotations

from typing import Any

from .._time import iso_from_ns
from ._table import Schema, read

SCHEMA = Schema(root="RunInfo", tables={
    "RunStart": [("start_time", "ulong"), ("run_number", "int"), ("inst_name", "string"), ("n_periods", "int")],
    "RunStop": [("stop_time", "ulong")],
    "RunInfo": [("info_type", "InfoTypes")],
}, unions={"InfoTypes": ["RunStart", "RunStop"]})


def deserialise(buf: bytes) -> dict[str, Any]:
    out = read(SCHEMA, buf)
    info = out["info_type"]
    if info is not None:
        for name in ("start_time", "stop_time"):  # ns since the epoch
            if name in info:
                info[name] = iso_from_ns(info[name])
    return out
