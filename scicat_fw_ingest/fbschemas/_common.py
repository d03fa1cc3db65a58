"""Pieces several schema descriptions share: the value tables of the EPICS-like log schemas."""

from __future__ import annotations

from typing import Any

#: (table suffix, flatbuffers scalar type) of the scalar value tables f142, f143 and ns11 define.
NUMBER_TYPES = (("Byte", "byte"), ("UByte", "ubyte"), ("Short", "short"), ("UShort", "ushort"), ("Int", "int"),
                ("UInt", "uint"), ("Long", "long"), ("ULong", "ulong"), ("Float", "float"), ("Double", "double"))


def value_tables(field: str = "value", prefix: str = "", scalar_suffix: str = "", array_prefix: str = "Array",
                 array_suffix: str = "", strings: bool = True,
                 extra: tuple[tuple[Any, ...], ...] = ()) -> dict[str, list[tuple[Any, ...]]]:
    """``{prefix}Double { value: double; }`` and ``{prefix}ArrayDouble { value: [double]; ...extra }`` tables."""
    kinds = NUMBER_TYPES + ((("String", "string"),) if strings else ())
    tables: dict[str, list[tuple[Any, ...]]] = {}
    for suffix, kind in kinds:
        tables[f"{prefix}{suffix}{scalar_suffix}"] = [(field, kind)]
        tables[f"{prefix}{array_prefix}{suffix}{array_suffix}"] = [(field, f"[{kind}]"), *extra]
    return tables
