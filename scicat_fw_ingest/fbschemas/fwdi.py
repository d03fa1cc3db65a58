"""fwdi: the forwarder's internal sequence and timing record (``fwdi_forwarder_internal.fbs``), also
embedded in f143."""

from __future__ import annotations

from typing import Any

from ._table import Schema, read

FWDINFO = [("seq_data", "ulong"), ("seq_fwd", "ulong"), ("ts_data", "ulong"), ("ts_fwd", "ulong"),
           ("fwdix", "uint"), ("teamid", "ulong")]

#: The schema declares no root type: a message with this id holds one ``fwdinfo_1_t``.
SCHEMA = Schema(root="fwdinfo_1_t", tables={"fwdinfo_1_t": FWDINFO})


def deserialise(buf: bytes) -> dict[str, Any]:
    return read(SCHEMA, buf)
