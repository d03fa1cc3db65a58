"""The file writer's run-control messages (pl72, 6s4t, answ, x5f2, wrdn) read without numpy or flatbuffers.

Why sfi reads these itself although ess-streaming-data-types has them: they are most of what ``sfi decode
--topic`` and ``sfi list-status`` read, and the library's generated classes go through the ``flatbuffers``
package's generic accessors (a function call and a ``struct`` lookup per field byte range): 60-70 % of
sfi's time over a control topic (issue 23.6). Importing the library also imports numpy, 17 MB of
``list-status``'s resident memory, for schemas that hold no array.

The contract is "the library's value, faster": ``read`` returns tuples with the library's field names, order
and values (same class names too), or ``None`` whenever the message is not the plain well-formed case —
a field out of the buffer, text that is not UTF-8, a string the library would fail on when absent, a pl72
with a detector-spectrum map (numpy arrays). ``messages.decode`` then asks the library, so its values and
its errors on odd or corrupt bytes stay exactly what they were. ``tests/messages/test_run_control.py``
compares both on the samples and on mutated bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

#: The ids read here.
SCHEMAS = frozenset({"pl72", "6s4t", "answ", "x5f2", "wrdn"})

_I32 = struct.Struct("<i").unpack_from
_U32 = struct.Struct("<I").unpack_from
_U16 = struct.Struct("<H").unpack_from
_U64 = struct.Struct("<Q").unpack_from
_I8 = struct.Struct("<b").unpack_from


class RunStartInfo(NamedTuple):
    job_id: str
    filename: str
    start_time: int
    stop_time: int
    nexus_structure: str
    service_id: str
    broker: str
    run_name: str
    instrument_name: str
    metadata: str
    detector_spectrum_map: Any
    control_topic: str


class RunStopInfo(NamedTuple):
    stop_time: int
    run_name: str
    job_id: str
    service_id: str
    command_id: str


class Response(NamedTuple):
    service_id: str
    job_id: str
    command_id: str
    action: int
    outcome: int
    message: str
    status_code: int
    stop_time: datetime


class StatusMessage(NamedTuple):
    software_name: str
    software_version: str
    service_id: str
    host_name: str
    process_id: int
    update_interval: int
    status_json: str


class FinishedWriting(NamedTuple):
    service_id: str
    job_id: str
    error_encountered: bool
    file_name: str
    metadata: str | None
    message: str | None


class _Odd(Exception):
    """Not the plain case: the library decides."""


class _Table:
    """Bounds-checked access to the fields of the root table (vtable slots as flatc numbers them)."""

    __slots__ = ("buf", "pos", "size", "vsize", "vtable")

    def __init__(self, buf: bytes) -> None:
        self.buf, self.size = buf, len(buf)
        if self.size < 12:
            raise _Odd
        self.pos: int = _U32(buf, 0)[0]
        if self.pos + 4 > self.size:
            raise _Odd
        self.vtable: int = self.pos - _I32(buf, self.pos)[0]
        if self.vtable < 0 or self.vtable + 4 > self.size:
            raise _Odd
        self.vsize: int = _U16(buf, self.vtable)[0]

    def _at(self, slot: int, width: int) -> int:
        """Position of a field's value, or 0 when absent."""
        entry = 4 + 2 * slot
        if entry >= self.vsize:  # the library's test: entries past the vtable's end are absent
            return 0
        if self.vtable + entry + 2 > self.size:
            raise _Odd
        rel: int = _U16(self.buf, self.vtable + entry)[0]
        if not rel:
            return 0
        pos = self.pos + rel
        if pos + width > self.size:
            raise _Odd
        return pos

    def text(self, slot: int) -> str | None:
        """The string in ``slot`` (None when absent); ``_Odd`` when out of the buffer or not UTF-8."""
        pos = self._at(slot, 4)
        if not pos:
            return None
        start = pos + _U32(self.buf, pos)[0]
        if start + 4 > self.size:
            raise _Odd
        length = _U32(self.buf, start)[0]
        if start + 4 + length > self.size:
            raise _Odd
        try:
            return self.buf[start + 4:start + 4 + length].decode("utf-8")
        except UnicodeDecodeError:
            raise _Odd from None

    def required(self, slot: int) -> str:
        """A string the library calls ``.decode()`` on unconditionally: absent is its error, not ours."""
        value = self.text(slot)
        if value is None:
            raise _Odd
        return value

    def scalar(self, slot: int, unpack: Callable[[bytes, int], tuple[Any, ...]], width: int) -> Any:
        pos = self._at(slot, width)
        return unpack(self.buf, pos)[0] if pos else 0


def _pl72(t: _Table) -> RunStartInfo:
    if t._at(10, 4):  # a detector-spectrum map: numpy arrays, the library's job
        raise _Odd
    return RunStartInfo(
        job_id=t.text(5) or "", filename=t.text(8) or "", start_time=t.scalar(0, _U64, 8),
        stop_time=t.scalar(1, _U64, 8), run_name=t.text(2) or "", nexus_structure=t.text(4) or "",
        service_id=t.text(7) or "", instrument_name=t.text(3) or "", broker=t.text(6) or "",
        metadata=t.text(11) or "", detector_spectrum_map=None, control_topic=t.text(12) or "")


def _6s4t(t: _Table) -> RunStopInfo:
    return RunStopInfo(stop_time=t.scalar(0, _U64, 8), run_name=t.text(1) or "", job_id=t.text(2) or "",
                       service_id=t.text(3) or "", command_id=t.required(4))


_MAX_TIME_S: float | None = None


def _answ_stop_time(stop_ms: int) -> datetime:
    """As the library computes it: seconds capped at 3001-01-01 (a naive, so local, time), as UTC."""
    global _MAX_TIME_S
    if _MAX_TIME_S is None:
        _MAX_TIME_S = datetime(year=3001, month=1, day=1, hour=0, minute=0, second=0).timestamp()
    seconds = stop_ms / 1000
    return datetime.fromtimestamp(_MAX_TIME_S if seconds > _MAX_TIME_S else seconds, tz=UTC)


def _answ(t: _Table) -> Response:
    return Response(service_id=t.required(0), job_id=t.required(1), command_id=t.required(7),
                    action=t.scalar(2, _I8, 1), outcome=t.scalar(3, _I8, 1), message=t.required(6),
                    status_code=t.scalar(4, _I32, 4), stop_time=_answ_stop_time(t.scalar(5, _U64, 8)))


def _x5f2(t: _Table) -> StatusMessage:
    return StatusMessage(t.required(0), t.required(1), t.required(2), t.required(3), t.scalar(4, _U32, 4),
                         t.scalar(5, _U32, 4), t.required(6))


def _wrdn(t: _Table) -> FinishedWriting:
    pos = t._at(2, 1)
    return FinishedWriting(service_id=t.required(0), job_id=t.required(1),
                           error_encountered=bool(t.buf[pos]) if pos else False, file_name=t.text(3) or "",
                           metadata=t.text(4) or None, message=t.text(5) or None)


_READERS: dict[str, Callable[[_Table], Any]] = {"pl72": _pl72, "6s4t": _6s4t, "answ": _answ, "x5f2": _x5f2,
                                                "wrdn": _wrdn}


def read(schema: str, buf: bytes) -> Any:
    """The library's value for a well-formed message of one of ``SCHEMAS``, or None: ask the library."""
    reader = _READERS.get(schema)
    if reader is None:
        return None
    try:
        return reader(_Table(buf))
    except (_Odd, struct.error, OverflowError, ValueError, OSError):
        return None
