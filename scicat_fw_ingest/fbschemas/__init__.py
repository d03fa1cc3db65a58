"""Readers sfi carries for schema ids ess-streaming-data-types lacks or cannot decode under numpy 2.

One module per schema id, each a description transcribed from ess-dmsc/streaming-data-types' ``.fbs``
file (BSD-2, see ``LICENSE-streaming-data-types``) read by the one table reader in ``_table``. A module is
imported only when a message of its id is decoded. ``deserialise(bytes) -> dict`` of plain fields (times
as ISO-8601 text, exact to the nanosecond; vectors as numpy arrays), or ``CorruptMessage``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Schema id -> module of this package. f142 is here although the library has it (see ``f142``).
OWN_SCHEMAS: dict[str, str] = {
    "amo0": "amo0", "ar51": "ar51", "ba57": "ba57", "df12": "df12", "dtdb": "dtdb", "f140": "f140",
    "f141": "f141", "f142": "f142", "f143": "f143", "fwdi": "fwdi", "is84": "is84", "mo01": "mo01", "ns11": "ns11",
}

#: What each of these ids is, for people.
NAMES: dict[str, str] = {
    "amo0": "AMOR events (PSI)", "ar51": "raw detector readout", "ba57": "run info for Mantid (ba57)",
    "df12": "detector-spectrum map", "dtdb": "ADC pulse debug", "f140": "EPICS PV (f140)",
    "f141": "EPICS NT (f141)", "f143": "EPICS structure (f143)", "fwdi": "forwarder internals",
    "is84": "ISIS event data", "mo01": "NMX monitor", "ns11": "NICOS typed cache",
}

__all__ = ["NAMES", "OWN_SCHEMAS", "CorruptMessage", "deserialiser"]


class CorruptMessage(ValueError):
    """The bytes do not hold a valid table of the schema (defined here so that catching it costs no import)."""


def deserialiser(schema: str) -> Callable[[bytes], dict[str, Any]] | None:
    """The reader of one of these ids (module imported now), or None for any other id."""
    module = OWN_SCHEMAS.get(schema)
    if module is None:
        return None
    from importlib import import_module

    return import_module(f"{__name__}.{module}").deserialise  # type: ignore[no-any-return]
