"""ar51: raw ESS readout data, the detector's UDP payload (``ar51_readout_data.fbs``)."""

from __future__ import annotations

from typing import Any

from ._table import Schema, read

SCHEMA = Schema(root="RawReadoutMessage", tables={
    "RawReadoutMessage": [("source_name", "string"), ("message_id", "long"), ("raw_data", "[ubyte]")],
})


def deserialise(buf: bytes) -> dict[str, Any]:
    return read(SCHEMA, buf)
