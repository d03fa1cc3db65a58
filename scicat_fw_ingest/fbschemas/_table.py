"""A small flatbuffer table reader driven by a schema description: bytes -> plain dict.

Why not flatc-generated classes: sfi decodes these schemas only to show them, field by field. A schema
description transcribed from the ``.fbs`` (a few lines per table) and one reader checked here once is
less code to carry than a generated module per table, and it reads vectors with ``numpy.frombuffer``
without any of the numpy-version-specific calls that break ess-streaming-data-types' f142 under numpy 2.

Every offset is checked against the buffer, so corrupt bytes raise ``CorruptMessage`` (never read past
the end, never loop): ``messages.decode`` reports them as a corrupt body.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from . import CorruptMessage

#: Scalar types of the flatbuffers schema language: struct format (little-endian) and size.
SCALARS: dict[str, str] = {
    "bool": "?", "byte": "b", "ubyte": "B", "int8": "b", "uint8": "B", "short": "h", "ushort": "H",
    "int16": "h", "uint16": "H", "int": "i", "uint": "I", "int32": "i", "uint32": "I", "long": "q",
    "ulong": "Q", "int64": "q", "uint64": "Q", "float": "f", "float32": "f", "double": "d", "float64": "d",
}

#: How deep tables may nest (f143 and ns11 values contain values): more is a corrupt or hostile message.
MAX_DEPTH = 64


class Schema:
    """One ``.fbs`` file: its root table, tables (fields in declaration = slot order), unions, enums, structs.

    A field is ``(name, type)`` or ``(name, type, default)``; a type is a scalar name, ``string``, a
    table, union, enum or struct name of this schema, or one of those in brackets for a vector. A union
    field takes two slots (type, value) as flatc lays it out. Structs are ``[(name, scalar type)]``.
    """

    __slots__ = ("enums", "root", "structs", "tables", "unions")

    def __init__(self, root: str, tables: dict[str, list[tuple[Any, ...]]],
                 unions: dict[str, list[str]] | None = None,
                 enums: dict[str, tuple[str, dict[int, str]]] | None = None,
                 structs: dict[str, list[tuple[str, str]]] | None = None) -> None:
        self.root = root
        self.tables = tables
        self.unions = unions or {}
        self.enums = enums or {}
        self.structs = structs or {}


def _struct_layout(members: list[tuple[str, str]]) -> tuple[list[tuple[str, str, int]], int]:
    """Member offsets and the struct's size with flatbuffers' natural alignment."""
    offset, align, out = 0, 1, []
    for name, kind in members:
        size = struct.calcsize(SCALARS[kind])
        offset = (offset + size - 1) // size * size
        out.append((name, kind, offset))
        offset += size
        align = max(align, size)
    return out, (offset + align - 1) // align * align


class Reader:
    """Reads the tables of one buffer according to one schema."""

    def __init__(self, schema: Schema, buf: bytes) -> None:
        self.schema = schema
        self.buf = buf
        self.size = len(buf)
        #: Tables left to read: a valid buffer holds at most one per 4 bytes. Offsets may point to the same
        #: table many times (a hostile message can nest such vectors to blow up exponentially): stop there.
        self.tables_left = self.size // 4 + 1

    def root(self) -> dict[str, Any]:
        return self.table(self.schema.root, self._uoffset(0), 0)

    # -- raw access, bounds-checked ------------------------------------------------------------------------
    def _unpack(self, fmt: str, pos: int) -> Any:
        if pos < 0 or pos + struct.calcsize(fmt) > self.size:
            raise CorruptMessage(f"offset {pos} out of the {self.size}-byte buffer")
        return struct.unpack_from("<" + fmt, self.buf, pos)[0]

    def _uoffset(self, pos: int) -> int:
        """The position a uoffset at ``pos`` points to."""
        return pos + int(self._unpack("I", pos))

    def _field_pos(self, table_pos: int, slot: int) -> int:
        """Absolute position of a table's field, or 0 when the field is absent."""
        vtable = table_pos - int(self._unpack("i", table_pos))
        vtable_size = int(self._unpack("H", vtable))
        entry = 4 + 2 * slot
        if entry + 2 > vtable_size:
            return 0
        rel = int(self._unpack("H", vtable + entry))
        return table_pos + rel if rel else 0

    def _vector(self, pos: int) -> tuple[int, int]:
        """(start of the elements, count) of the vector a field at ``pos`` refers to."""
        start = self._uoffset(pos)
        count = int(self._unpack("I", start))
        return start + 4, count

    def _string_at(self, pos: int) -> str:
        start, length = self._vector(pos)
        if start + length > self.size:
            raise CorruptMessage(f"string of {length} bytes runs past the buffer")
        raw = self.buf[start:start + length]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("utf-8", errors="backslashreplace")

    # -- schema-driven reading -------------------------------------------------------------------------------
    def table(self, name: str, pos: int, depth: int) -> dict[str, Any]:
        if depth > MAX_DEPTH:
            raise CorruptMessage(f"tables nested deeper than {MAX_DEPTH}")
        self.tables_left -= 1
        if self.tables_left < 0:
            raise CorruptMessage("more tables than a buffer of this size can hold (tables shared by offsets)")
        out: dict[str, Any] = {}
        slot = 0
        for spec in self.schema.tables[name]:
            fname, kind = spec[0], spec[1]
            default = spec[2] if len(spec) > 2 else None
            if kind in self.schema.unions:
                type_pos = self._field_pos(pos, slot)
                value_pos = self._field_pos(pos, slot + 1)
                tag = int(self._unpack("B", type_pos)) if type_pos else 0
                out[fname] = self._union(kind, tag, value_pos, depth)
                slot += 2
                continue
            where = self._field_pos(pos, slot)
            out[fname] = self._value(kind, where, default, depth)
            slot += 1
        return out

    def _union(self, union: str, tag: int, value_pos: int, depth: int) -> dict[str, Any] | None:
        if tag == 0 or not value_pos:
            return None
        members = self.schema.unions[union]
        if tag > len(members):
            raise CorruptMessage(f"union {union} has no member {tag}")
        member = members[tag - 1]
        return {"type": member, **self.table(member, self._uoffset(value_pos), depth + 1)}

    def _value(self, kind: str, pos: int, default: Any, depth: int) -> Any:
        schema = self.schema
        if kind.startswith("["):
            return self._vector_value(kind[1:-1], pos, depth) if pos else None
        if kind in SCALARS:
            return self._unpack(SCALARS[kind], pos) if pos else (default if default is not None else
                                                                 False if kind == "bool" else 0)
        if kind in schema.enums:
            base, names = schema.enums[kind]
            number = self._unpack(SCALARS[base], pos) if pos else (default or 0)
            return names.get(int(number), int(number))
        if kind == "string":
            return self._string_at(pos) if pos else None
        if kind in schema.structs:
            return self._struct(kind, pos) if pos else None
        if kind in schema.tables:
            return self.table(kind, self._uoffset(pos), depth + 1) if pos else None
        raise CorruptMessage(f"schema description has no type {kind!r}")  # pragma: no cover - a bug in a schema module

    def _struct(self, kind: str, pos: int) -> dict[str, Any]:
        layout, _ = _struct_layout(self.schema.structs[kind])
        return {name: self._unpack(SCALARS[member], pos + offset) for name, member, offset in layout}

    def _vector_value(self, kind: str, pos: int, depth: int) -> Any:
        start, count = self._vector(pos)
        if kind in SCALARS or kind in self.schema.enums:
            base = self.schema.enums[kind][0] if kind in self.schema.enums else kind
            code = SCALARS[base]
            if start + count * struct.calcsize(code) > self.size:
                raise CorruptMessage(f"vector of {count} {kind} runs past the buffer")
            array = np.frombuffer(self.buf, dtype=np.dtype("<" + code), count=count, offset=start)
            if kind in self.schema.enums:
                names = self.schema.enums[kind][1]
                return [names.get(int(v), int(v)) for v in array.tolist()]
            return array
        if start + 4 * count > self.size:
            raise CorruptMessage(f"vector of {count} {kind} runs past the buffer")
        if kind == "string":
            return [self._string_at(start + 4 * i) for i in range(count)]
        if kind in self.schema.tables:
            return [self.table(kind, self._uoffset(start + 4 * i), depth + 1) for i in range(count)]
        if kind in self.schema.structs:
            _, size = _struct_layout(self.schema.structs[kind])
            if start + size * count > self.size:
                raise CorruptMessage(f"vector of {count} {kind} runs past the buffer")
            return [self._struct(kind, start + size * i) for i in range(count)]
        raise CorruptMessage(f"schema description has no type {kind!r}")  # pragma: no cover - a bug in a schema module


def read(schema: Schema, buf: bytes) -> dict[str, Any]:
    """The root table of ``buf`` as a dict (``CorruptMessage`` when the bytes do not fit the schema)."""
    try:
        return Reader(schema, buf).root()
    except (struct.error, ValueError, IndexError, RecursionError) as exc:
        if isinstance(exc, CorruptMessage):
            raise
        raise CorruptMessage(str(exc)) from None
