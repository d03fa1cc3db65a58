"""The decoding core: Kafka bytes -> typed message -> JSON-ready dict.

Every command that reads the file writer's channels goes through ``decode``; nothing else in sfi
calls ``streaming_data_types`` deserialisers directly. That way a corrupt or unexpected message
always surfaces as one ``DecodeError`` naming the schema id and the reason, which the CLI prints as
one line and the listener records against its offset.

The typed message is the NamedTuple (or flatbuffer object) that ess-streaming-data-types returns.
``to_jsonable`` turns it into plain data, losing nothing with ``full``: embedded JSON strings parsed
(or kept, flagged, when invalid), numpy arrays summarised unless ``full``, every field the schema
defines as a time (scalar or array; ms, ns or s as the schema says) as ISO-8601 UTC with at least
millisecond digits (more only when the value has them), enums by name, and the library's helper
objects (da00 variables, ad00/ADAr attributes) as objects of their fields.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import importlib
import json
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from enum import Enum
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import fbschemas
from ._time import iso_datetime, iso_from_ns, ns_from_float
from .errors import SfiError
from .fbschemas import run_control

if TYPE_CHECKING:
    import numpy as np

# numpy and ess-streaming-data-types are imported where a message needs them: the run-control schemas are read
# without them (``fbschemas.run_control``), so ``sfi list-status`` never loads numpy (17 MB, issue 23.6).

#: kafka-to-nexus's "no stop time yet" (``time_point::max()`` in ms) in x5f2 status_json.stop_time and
#: answ(StartJob).stop_time: not a time (it would be year 2262).
NO_STOP_TIME_MS = 9223372036854

#: How many leading values of an array are shown when it is summarised.
ARRAY_PREVIEW = 8

#: What each schema id is, for people.
SCHEMA_NAMES: dict[str, str] = {
    "pl72": "run start", "6s4t": "run stop", "answ": "command response", "x5f2": "status",
    "wrdn": "finished writing", "f142": "log data (f142)", "f144": "log data", "ev42": "event data (ev42)",
    "ev43": "event data (ev43)", "ev44": "event data", "an44": "ANSTO event data", "hs00": "histogram (hs00)",
    "hs01": "histogram", "ns10": "NICOS cache", "ep00": "EPICS connection (ep00)", "ep01": "EPICS connection",
    "tdct": "timestamps", "rf5k": "forwarder config (rf5k)", "fc00": "forwarder config", "NDAr": "NDArray",
    "senv": "sample environment (senv)", "se00": "sample environment", "ADAr": "area detector (ADAr)",
    "al00": "alarm", "json": "JSON", "ad00": "area detector", "da00": "data array",
    **fbschemas.NAMES,
}

#: Embedded JSON strings, parsed when valid: (schema, field).
_JSON_FIELDS: dict[str, tuple[str, ...]] = {
    "pl72": ("nexus_structure", "metadata"),
    "wrdn": ("metadata",),
    "x5f2": ("status_json",),
}

#: Time fields (scalars or arrays) and their unit as each schema defines it: ms, ns or s since the
#: epoch. 0 means "not set" for the run-control ones. (ADAr/senv/answ times arrive as datetimes;
#: NDAr's ``timestamp`` is areaDetector's own clock, not defined by the schema: left as a number.)
_TIME_FIELDS: dict[str, dict[str, str]] = {
    "pl72": {"start_time": "ms", "stop_time": "ms"},
    "6s4t": {"stop_time": "ms"},
    "f142": {"timestamp_unix_ns": "ns"},
    "f144": {"timestamp_unix_ns": "ns"},
    "al00": {"timestamp_ns": "ns"},
    "ad00": {"timestamp_ns": "ns"},
    "da00": {"timestamp_ns": "ns"},
    "ep00": {"timestamp": "ns"},
    "ep01": {"timestamp": "ns"},
    "se00": {"timestamp_unix_ns": "ns", "value_ts": "ns"},
    "senv": {"value_ts": "ns"},
    "ev42": {"pulse_time": "ns"},
    "ev43": {"pulse_time": "ns"},
    "ev44": {"reference_time": "ns"},
    "an44": {"reference_time": "ns"},
    "hs00": {"timestamp": "ns", "last_metadata_timestamp": "ns"},
    "hs01": {"timestamp": "ns", "last_metadata_timestamp": "ns"},
    "tdct": {"timestamps": "ns"},
    "ns10": {"time_stamp": "s"},
}
_ZERO_IS_UNSET = {("pl72", "stop_time"), ("6s4t", "stop_time"), ("answ", "stop_time"),
                  ("hs00", "last_metadata_timestamp"), ("hs01", "last_metadata_timestamp")}
_NS_PER = {"ns": 1, "ms": 1_000_000, "s": 1_000_000_000}


#: Enum fields: (schema, field) -> module.Class under streaming_data_types.fbschemas, imported on first use.
_ENUM_SOURCES: dict[tuple[str, str], str] = {
    ("answ", "action"): "action_response_answ.ActionType", ("answ", "outcome"): "action_response_answ.ActionOutcome",
    ("ep00", "type"): "epics_connection_info_ep00.EventType",
    ("fc00", "config_change"): "forwarder_config_update_fc00.UpdateType",
    ("rf5k", "config_change"): "forwarder_config_update_rf5k.UpdateType",
    ("fc00", "protocol"): "forwarder_config_update_fc00.Protocol",
    ("rf5k", "protocol"): "forwarder_config_update_rf5k.Protocol",
    ("se00", "ts_location"): "array_1d_se00.Location", ("senv", "ts_location"): "sample_environment_senv.Location",
}


@functools.cache
def _enum_table(schema: str, name: str) -> dict[int, str] | None:
    """The value -> name table of an enum field; None when it is none (or absent from this library version)."""
    source = _ENUM_SOURCES.get((schema, name))
    if source is None:
        return None
    try:
        cls = getattr(importlib.import_module(f"streaming_data_types.fbschemas.{source}"), source.rsplit(".", 1)[1])
    except (ImportError, AttributeError):  # pragma: no cover - depends on the library version
        return None
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


#: Per schema, the fields that need more than a copy (times, enums, "0 = unset"): the rest of a message's
#: plain fields go straight to the output (decode --json of a stream is mostly this loop).
_SPECIAL_FIELDS: dict[str, frozenset[str]] = {}
for _schema, _fields in _TIME_FIELDS.items():
    _SPECIAL_FIELDS[_schema] = _SPECIAL_FIELDS.get(_schema, frozenset()) | set(_fields)
for _schema, _name in (*_ENUM_SOURCES, *_ZERO_IS_UNSET):
    _SPECIAL_FIELDS[_schema] = _SPECIAL_FIELDS.get(_schema, frozenset()) | {_name}
_NONE: frozenset[str] = frozenset()
_PLAIN = frozenset({str, int, bool, type(None)})


class DecodeError(SfiError):
    """Bytes that are not a valid message of a known (or the expected) schema."""

    def __init__(self, schema: str | None, reason: str) -> None:
        self.schema = schema
        self.reason = reason
        label = f"schema '{schema}'" if schema else "message"
        super().__init__(f"{label}: {reason}")


@dataclass(frozen=True)
class Message:
    """A decoded message: its 4-character schema id and the typed value ess-streaming-data-types returns."""

    schema: str
    value: Any
    #: Embedded JSON strings that did not parse: field -> parser error.
    json_errors: dict[str, str] = field(default_factory=dict)
    #: Embedded JSON strings that did parse: field -> parsed value.
    json_values: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return SCHEMA_NAMES.get(self.schema, self.schema)

    def to_jsonable(self, *, full: bool = False) -> dict[str, Any]:
        return to_jsonable(self, full=full)


def schema_of(buf: bytes) -> str:
    """The schema id at bytes 4..8, or ``DecodeError`` when there is none."""
    if len(buf) < 8:
        raise DecodeError(None, f"too short: {len(buf)} bytes, a flatbuffer message has at least 8")
    raw = bytes(buf[4:8])
    try:
        schema = raw.decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError(None, f"no schema id at bytes 4..8 (found {raw!r})") from None
    if not schema.isprintable():
        raise DecodeError(None, f"no schema id at bytes 4..8 (found {raw!r})")
    return schema


def decode(buf: bytes | bytearray | memoryview, expect: str | None = None, *,
           json_fields: Collection[str] | None = None) -> Message:
    """Decode one message; ``expect`` names the only schema the caller accepts.

    ``json_fields`` limits which embedded JSON strings are parsed (None: all): ``list-status`` needs an
    x5f2's status but not a run start's nexus_structure, parsed for nothing 5,000 times in a catch-up.
    """
    data = bytes(buf)
    schema = schema_of(data)
    if expect is not None and schema != expect:
        raise DecodeError(schema, f"expected a '{expect}' ({SCHEMA_NAMES.get(expect, expect)}) message")
    # The run-control schemas without numpy or the flatbuffers package; None (odd bytes) -> the library.
    value: Any = run_control.read(schema, data) if schema in run_control.SCHEMAS else None
    if value is None:
        own = fbschemas.deserialiser(schema)
        if own is not None:
            try:
                value = own(data)
            except fbschemas.CorruptMessage as exc:
                raise DecodeError(schema, f"corrupt body ({exc})"[:300]) from None
        else:
            value = _library_decode(schema, data)
    errors: dict[str, str] = {}
    parsed: dict[str, Any] = {}
    for name in _JSON_FIELDS.get(schema, ()):
        if json_fields is not None and name not in json_fields:
            continue
        text = getattr(value, name, None)
        if text is None or text == "":
            continue
        try:
            parsed[name] = json.loads(text)
        except (ValueError, RecursionError) as exc:
            errors[name] = f"not valid JSON: {exc}"[:200]
    return Message(schema, value, errors, parsed)


def _library_decode(schema: str, data: bytes) -> Any:
    """The ess-streaming-data-types deserialiser's value; its own failures told apart from corrupt bytes."""
    import streaming_data_types as sdt

    deserialiser = sdt.DESERIALISERS.get(schema)
    if deserialiser is None:
        raise DecodeError(schema, "unknown schema id (not one ess-streaming-data-types or sfi knows)")
    try:
        return deserialiser(data)
    except Exception as exc:  # flatbuffers raise anything on corrupt bodies: normalise to one error
        if is_library_failure(exc):
            raise DecodeError(schema, f"cannot decode {schema} with ess-streaming-data-types {sdt.__version__}: "
                              f"{type(exc).__name__}: {exc}"[:300]) from None
        raise DecodeError(schema, f"corrupt body ({type(exc).__name__}: {exc})"[:300]) from None


def is_library_failure(exc: BaseException) -> bool:
    """Whether a deserialiser failed by itself rather than on the bytes: a name missing from numpy (numpy 2
    removed ``np.unicode_``, ``np.string_``, ...) or from the library, or a missing import. Bytes cannot
    cause these; calling them "corrupt" would send an operator after the wrong culprit."""
    if isinstance(exc, (ImportError, NameError)):
        return True
    if isinstance(exc, AttributeError):
        owner = getattr(exc, "obj", None)
        module = getattr(owner, "__name__", "") if isinstance(owner, ModuleType) else ""
        return module.split(".")[0] in ("numpy", "streaming_data_types", "flatbuffers")
    return False


def to_jsonable(message: Message, *, full: bool = False) -> dict[str, Any]:
    """Plain data for ``--json`` output and for records: ``{"schema": id, <fields>...}``."""
    out: dict[str, Any] = {"schema": message.schema}
    value = message.value
    if hasattr(value, "_asdict"):
        items = value._asdict().items()
    elif isinstance(value, dict):
        items = value.items()
    elif isinstance(value, str):  # the 'json' schema returns the string itself
        items = [("json", value)]
        try:
            items = [("json", json.loads(value))]
        except ValueError:
            out["json_errors"] = {"json": "not valid JSON"}
    else:
        items = _object_fields(value)
    special = _SPECIAL_FIELDS.get(message.schema, _NONE)
    parsed = message.json_values
    for name, item in items:
        # Most fields are plain text or integers: written as they are, without the per-field checks.
        if type(item) in _PLAIN and name not in special and name not in parsed:
            out[name] = item
        else:
            out[name] = _field_value(message, name, item, full)
    if message.json_errors:
        out["json_errors"] = dict(message.json_errors)
    return out


def _field_value(message: Message, name: str, item: Any, full: bool) -> Any:
    import numpy as np
    schema = message.schema
    if name in message.json_values:
        return message.json_values[name]
    unset = (schema, name) in _ZERO_IS_UNSET
    if isinstance(item, dt.datetime):
        ms = round(item.timestamp() * 1000)
        return None if unset and (ms == 0 or ms >= NO_STOP_TIME_MS) else iso_datetime(item)
    unit = _TIME_FIELDS.get(schema, {}).get(name)
    if unit:
        if isinstance(item, np.ndarray) and item.dtype.kind in "iuf":
            return _time_array(item, unit, full)
        if isinstance(item, (list, tuple)) and all(_is_number(v) for v in item):
            return [_iso(v, unit) for v in item]
        if _is_number(item):
            return None if item == 0 and unset else _iso(item, unit)
    names = _enum_table(schema, name)
    if names is not None and isinstance(item, (int, np.integer)):
        return names.get(int(item), int(item))
    if isinstance(item, list) and names is None:
        return [_nested(schema, v, full) for v in item]
    return jsonable(item, full=full)


def _nested(schema: str, item: Any, full: bool) -> Any:
    """A list entry (fc00/rf5k stream, da00 variable, ...): its enum fields by name too."""
    record = jsonable(item, full=full)
    if isinstance(record, dict):
        for key, value in record.items():
            names = _enum_table(schema, key)
            if names is not None and isinstance(value, int):
                record[key] = names.get(value, value)
    return record


def _is_number(value: Any) -> bool:
    import numpy as np
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _iso(value: Any, unit: str) -> str:
    import numpy as np
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return str(float(value))
        return iso_from_ns(ns_from_float(float(value), _NS_PER[unit]))  # exact to the digits sent
    return iso_from_ns(int(value) * _NS_PER[unit])


def _time_array(arr: np.ndarray, unit: str, full: bool) -> Any:
    import numpy as np
    if full or (arr.size <= ARRAY_PREVIEW and arr.ndim <= 1):
        if arr.ndim <= 1:
            return [_iso(v, unit) for v in arr.tolist()]
        return np.vectorize(lambda v: _iso(v, unit), otypes=[object])(arr).tolist() if arr.size else []
    first = [_iso(v, unit) for v in arr.reshape(-1)[:ARRAY_PREVIEW].tolist()]
    return {"dtype": str(arr.dtype), "shape": list(arr.shape), "first": first}


def _object_fields(value: Any) -> list[tuple[str, Any]]:
    """Fields of a raw flatbuffer table object (a few deserialisers return those)."""
    out = []
    for attr in dir(value):
        if attr.startswith("_") or not attr[0].isupper() or attr.endswith(("Length", "AsNumpy", "IsNone")):
            continue
        if attr in ("Init", "GetRootAs") or attr.startswith("GetRootAs"):
            continue
        method = getattr(value, attr)
        try:
            result = method()
        except TypeError:
            continue
        out.append((_snake(attr), result))
    return out


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name))


def jsonable(value: Any, *, full: bool = False) -> Any:
    """Any value a deserialiser returns, as JSON-ready data."""
    if value is None or isinstance(value, (bool, str)):
        return value
    import numpy as np
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else str(number)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return _array(value, full)
    if isinstance(value, dt.datetime):
        return iso_datetime(value)
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(raw).decode("ascii")}
    if hasattr(value, "_asdict"):
        return {k: jsonable(v, full=full) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {str(k): jsonable(v, full=full) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, full=full) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # da00 Variable
        return {f.name: jsonable(getattr(value, f.name), full=full) for f in dataclasses.fields(value)}
    if hasattr(value, "__dict__") and not isinstance(value, type):  # ad00/ADAr Attribute and the like
        return {k: jsonable(v, full=full) for k, v in vars(value).items() if not k.startswith("_")}
    return str(value)


def _array(arr: np.ndarray, full: bool) -> Any:
    import numpy as np
    if full or (arr.size <= ARRAY_PREVIEW and arr.ndim <= 1):
        if arr.dtype.kind in "iub" or (arr.dtype.kind == "f" and bool(np.isfinite(arr).all())):
            return arr.tolist()  # already plain ints, bools and finite floats: no per-value pass
        return jsonable(arr.tolist(), full=full)
    first = arr.reshape(-1)[:ARRAY_PREVIEW].tolist()
    return {"dtype": str(arr.dtype), "shape": list(arr.shape), "first": jsonable(first)}
