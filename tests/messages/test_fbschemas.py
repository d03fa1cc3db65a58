"""Every schema id sfi reads itself (f142 and the 12 ids ess-streaming-data-types lacks), round-tripped.

Each message is built here with the flatbuffers builder, slot by slot as flatc lays out the upstream ``.fbs``
(ess-dmsc/streaming-data-types ``schemas/<id>_*.fbs``; f142 and is84 with the library's own generated
builders), independently of sfi's schema descriptions, and every field must come back through
``sfi decode --json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streaming_data_types.fbschemas.isis_event_info_is84 import ISISData
from streaming_data_types.fbschemas.logdata_f142 import LogData, Value

from scicat_fw_ingest.fbschemas import OWN_SCHEMAS
from scicat_fw_ingest.messages import (
    DecodeError,
    decode,
    is_library_failure,
    to_jsonable,
)

_PREPEND = {"bool": "Bool", "byte": "Int8", "ubyte": "Uint8", "short": "Int16", "ushort": "Uint16",
            "int": "Int32", "uint": "Uint32", "long": "Int64", "ulong": "Uint64", "float": "Float32",
            "double": "Float64"}
_DTYPE = {"byte": np.int8, "ubyte": np.uint8, "short": np.int16, "ushort": np.uint16, "int": np.int32,
          "uint": np.uint32, "long": np.int64, "ulong": np.uint64, "float": np.float32, "double": np.float64}


def builder() -> flatbuffers.Builder:
    b = flatbuffers.Builder(256)
    b.ForceDefaults(True)  # zeros too, so that "absent" and "0" are both exercised where a test wants
    return b


def table(b: flatbuffers.Builder, fields: list[tuple[int, str, Any]]) -> int:
    """A table from (slot, kind, value); kind is a scalar type or 'offset' (string/vector/table made before)."""
    b.StartObject(max(slot for slot, _, _ in fields) + 1 if fields else 0)
    for slot, kind, value in fields:
        if kind == "offset":
            b.PrependUOffsetTRelativeSlot(slot, value, 0)
        else:
            getattr(b, f"Prepend{_PREPEND[kind]}Slot")(slot, value, 0)
    return b.EndObject()


def numbers(b: flatbuffers.Builder, kind: str, values: list[Any]) -> int:
    return b.CreateNumpyVector(np.array(values, dtype=_DTYPE[kind]))


def offsets(b: flatbuffers.Builder, items: list[int]) -> int:
    b.StartVector(4, len(items), 4)
    for item in reversed(items):
        b.PrependUOffsetTRelative(item)
    return b.EndVector()


def strings(b: flatbuffers.Builder, texts: list[str]) -> int:
    return offsets(b, [b.CreateString(t) for t in texts])


def finish(b: flatbuffers.Builder, root: int, schema: str) -> bytes:
    b.Finish(root, file_identifier=schema.encode())
    return bytes(b.Output())


# -- one builder per schema: (bytes, the JSON sfi must print) ---------------------------------------------------
def amo0() -> tuple[bytes, dict]:
    b = builder()
    name, tof, det = b.CreateString("amor"), numbers(b, "uint", [5, 4000000000]), numbers(b, "uint", [1, 2])
    root = table(b, [(0, "offset", name), (1, "ulong", 2**64 - 1), (2, "ulong", 1732456789_123456789),
                     (3, "offset", tof), (4, "offset", det)])
    return finish(b, root, "amo0"), {"source_name": "amor", "message_id": 2**64 - 1,
                                     "pulse_time": "2024-11-24T13:59:49.123456789Z",
                                     "time_of_flight": [5, 4000000000], "detector_id": [1, 2]}


def ar51() -> tuple[bytes, dict]:
    b = builder()
    name, raw = b.CreateString("loki"), numbers(b, "ubyte", [0, 255, 7])
    root = table(b, [(0, "offset", name), (1, "long", -3), (2, "offset", raw)])
    return finish(b, root, "ar51"), {"source_name": "loki", "message_id": -3, "raw_data": [0, 255, 7]}


def ba57() -> tuple[bytes, dict]:
    b = builder()
    inst = b.CreateString("MARI")
    start = table(b, [(0, "ulong", 1732456789_000000001), (1, "int", 42), (2, "offset", inst), (3, "int", 2)])
    root = table(b, [(0, "ubyte", 1), (1, "offset", start)])  # union InfoTypes: 1 = RunStart
    return finish(b, root, "ba57"), {"info_type": {"type": "RunStart", "start_time": "2024-11-24T13:59:49.000000001Z",
                                                   "run_number": 42, "inst_name": "MARI", "n_periods": 2}}


def ba57_stop() -> tuple[bytes, dict]:
    b = builder()
    stop = table(b, [(0, "ulong", 1732456790_500000000)])
    root = table(b, [(0, "ubyte", 2), (1, "offset", stop)])
    return finish(b, root, "ba57"), {"info_type": {"type": "RunStop", "stop_time": "2024-11-24T13:59:50.500Z"}}


def df12() -> tuple[bytes, dict]:
    b = builder()
    spec, det = numbers(b, "int", [1, 1, -2]), numbers(b, "int", [10, 11, 12])
    root = table(b, [(0, "offset", spec), (1, "offset", det), (2, "int", 3)])
    return finish(b, root, "df12"), {"spectrum": [1, 1, -2], "detector_id": [10, 11, 12], "n_spectra": 3}


def dtdb() -> tuple[bytes, dict]:
    b = builder()
    amp, area, bkg = numbers(b, "uint", [9]), numbers(b, "uint", [99]), numbers(b, "uint", [1])
    thr, peak = numbers(b, "ulong", [1732456789_000000007]), numbers(b, "ulong", [1732456789_000001000])
    root = table(b, [(0, "offset", amp), (1, "offset", area), (2, "offset", bkg), (3, "offset", thr),
                     (4, "offset", peak)])
    return finish(b, root, "dtdb"), {"amplitude": [9], "peak_area": [99], "background": [1],
                                     "threshold_time": ["2024-11-24T13:59:49.000000007Z"],
                                     "peak_time": ["2024-11-24T13:59:49.000001Z"]}


def f140() -> tuple[bytes, dict]:
    # union F: pvByte=1 pvShort pvInt pvLong pvUByte pvUShort pvUInt pvULong pvFloat pvDouble=10 pvString=11
    # pvByte_a=12 ... pvDouble_a=21 pvString_a=22 Obj=23 Obj_a=24
    b = builder()
    text = b.CreateString("on")
    member_string = table(b, [(0, "offset", text)])
    key = b.CreateString("state")
    objm = table(b, [(0, "offset", key), (1, "ubyte", 11), (2, "offset", member_string)])
    key2 = b.CreateString("levels")
    arr = numbers(b, "double", [0.5, -1.25])
    member_array = table(b, [(0, "offset", arr)])
    objm2 = table(b, [(0, "offset", key2), (1, "ubyte", 21), (2, "offset", member_array)])
    obj = table(b, [(0, "offset", offsets(b, [objm, objm2]))])
    name = b.CreateString("SE:PV")
    root = table(b, [(0, "offset", name), (1, "ubyte", 23), (2, "offset", obj)])
    return finish(b, root, "f140"), {"n": "SE:PV", "v": {"type": "Obj", "ms": [
        {"k": "state", "v": {"type": "pvString", "v": "on"}},
        {"k": "levels", "v": {"type": "pvDouble_a", "v": [0.5, -1.25]}}]}}


def f141() -> tuple[bytes, dict]:
    # union PV: NTScalarByte=1 UByte Short UShort Int UInt Long ULong Float Double=10, arrays 11..20
    b = builder()
    arr = numbers(b, "ushort", [1, 65535])
    member = table(b, [(0, "offset", arr)])
    name = b.CreateString("CHOP:speed")
    b.StartObject(4)
    b.PrependUOffsetTRelativeSlot(0, name, 0)
    b.PrependUint8Slot(1, 14, 0)  # NTScalarArrayUShort
    b.PrependUOffsetTRelativeSlot(2, member, 0)
    b.Prep(8, 16)  # struct timeStamp_t { secondsPastEpoch: ulong; nanoseconds: int; } (16 bytes, 4 padding)
    b.Pad(4)
    b.PrependInt32(250_000_001)
    b.PrependUint64(1732456789)
    b.PrependStructSlot(3, b.Offset(), 0)
    root = b.EndObject()
    return finish(b, root, "f141"), {"name": "CHOP:speed", "pv": {"type": "NTScalarArrayUShort", "value": [1, 65535]},
                                     "timestamp": "2024-11-24T13:59:49.250000001Z"}


def f143() -> tuple[bytes, dict]:
    # union Value: Byte=1 Short Int Long UByte UShort UInt ULong Float Double String=11 Obj=12 ArrayByte=13 ...
    # ArrayString=23 ArrayObj=24; union forwarder_internal: fwdinfo_1_t=1
    b = builder()
    texts = strings(b, ["a", "b"])
    member = table(b, [(0, "offset", texts)])
    fwd = table(b, [(0, "ulong", 1), (1, "ulong", 2), (2, "ulong", 3), (3, "ulong", 4), (4, "uint", 5),
                    (5, "ulong", 6)])
    name = b.CreateString("struct:pv")
    root = table(b, [(0, "offset", name), (1, "ubyte", 23), (2, "offset", member), (3, "ulong", 1732456789_000000000),
                     (4, "ubyte", 1), (5, "offset", fwd), (6, "ulong", 5_000_000_000)])
    return finish(b, root, "f143"), {
        "name": "struct:pv", "value": {"type": "ArrayString", "value": ["a", "b"]},
        "timestamp": "2024-11-24T13:59:49.000Z",
        "fwdinfo": {"type": "fwdinfo_1_t", "seq_data": 1, "seq_fwd": 2, "ts_data": 3, "ts_fwd": 4, "fwdix": 5,
                    "teamid": 6},
        "expires_after": 5_000_000_000}


def fwdi() -> tuple[bytes, dict]:
    b = builder()
    root = table(b, [(0, "ulong", 10), (1, "ulong", 20), (2, "ulong", 30), (3, "ulong", 40), (4, "uint", 50),
                     (5, "ulong", 2**63)])
    return finish(b, root, "fwdi"), {"seq_data": 10, "seq_fwd": 20, "ts_data": 30, "ts_fwd": 40, "fwdix": 50,
                                     "teamid": 2**63}


def is84() -> tuple[bytes, dict]:
    b = builder()
    ISISData.ISISDataStart(b)
    ISISData.ISISDataAddPeriodNumber(b, 3)
    ISISData.ISISDataAddRunState(b, 1)
    ISISData.ISISDataAddProtonCharge(b, 0.5)
    root = ISISData.ISISDataEnd(b)
    return finish(b, root, "is84"), {"period_number": 3, "run_state": "RUNNING", "proton_charge": 0.5}


def mo01() -> tuple[bytes, dict]:
    # union DataField: GEMHist=1 GEMTrack=2
    b = builder()
    p1 = table(b, [(0, "uint", 7), (1, "ushort", 8), (2, "ushort", 9)])
    p2 = table(b, [(0, "uint", 1), (1, "ushort", 2), (2, "ushort", 3)])
    xs, ys = offsets(b, [p1, p2]), offsets(b, [])
    track = table(b, [(0, "ulong", 123), (1, "offset", xs), (2, "offset", ys), (3, "double", 1.5), (4, "double", -2.0)])
    name = b.CreateString("nmx")
    root = table(b, [(0, "offset", name), (1, "ubyte", 2), (2, "offset", track)])
    return finish(b, root, "mo01"), {"source_name": "nmx", "data": {
        "type": "GEMTrack", "time": 123,
        "xtrack": [{"time": 7, "strip": 8, "adc": 9}, {"time": 1, "strip": 2, "adc": 3}],
        "ytrack": [], "xpos": 1.5, "ypos": -2.0}}


def ns11() -> tuple[bytes, dict]:
    # union Value: Byte=1 Short Int Long UByte UShort UInt ULong Float Double String=11 Dict=12 ArrayByte=13 ...
    # ArrayLong=16 ... ArrayString=23; enum ArrayType: ListType TupleType SetType
    b = builder()
    k_text = b.CreateString("x")
    key_member = table(b, [(0, "offset", k_text)])
    arr = numbers(b, "long", [-1, 2**40])
    value_member = table(b, [(0, "offset", arr), (1, "byte", 1)])
    mapping = table(b, [(0, "ubyte", 11), (1, "offset", key_member), (2, "ubyte", 16), (3, "offset", value_member)])
    dct = table(b, [(0, "offset", offsets(b, [mapping]))])
    key = b.CreateString("nicos/slit/value")
    root = table(b, [(0, "offset", key), (1, "double", 1732456789.125), (2, "double", 3600.0), (3, "bool", True),
                     (4, "ubyte", 12), (5, "offset", dct)])
    return finish(b, root, "ns11"), {"key": "nicos/slit/value", "time": "2024-11-24T13:59:49.125Z", "ttl": 3600.0,
                                     "expired": True, "value": {"type": "Dict", "value": [
                                         {"k": {"type": "String", "value": "x"},
                                          "v": {"type": "ArrayLong", "value": [-1, 2**40],
                                                "array_type": "TupleType"}}]}}


def f142(kind: str, value: Any) -> tuple[bytes, dict]:
    """f142 with the library's generated builders (its serialiser fails under numpy 2 for every value)."""
    b = builder()
    member_name = kind
    if kind == "String":
        inner = b.CreateString(value)
    elif kind == "ArrayString":
        inner = strings(b, value)
    elif kind.startswith("Array"):
        inner = numbers(b, kind[5:].lower(), value)
    else:
        inner = None
    b.StartObject(1)
    if inner is not None:
        b.PrependUOffsetTRelativeSlot(0, inner, 0)
    else:
        getattr(b, f"Prepend{_PREPEND[kind.lower()]}Slot")(0, value, 0)
    member = b.EndObject()
    source = b.CreateString("SE:temp")
    LogData.LogDataStart(b)
    LogData.LogDataAddSourceName(b, source)
    LogData.LogDataAddValueType(b, getattr(Value.Value, member_name))
    LogData.LogDataAddValue(b, member)
    LogData.LogDataAddTimestamp(b, 1732456789_123000000)
    LogData.LogDataAddStatus(b, 4)
    LogData.LogDataAddSeverity(b, 0)
    root = LogData.LogDataEnd(b)
    return finish(b, root, "f142"), {"value": value, "value_type": member_name, "source_name": "SE:temp",
                                     "timestamp_unix_ns": "2024-11-24T13:59:49.123Z", "alarm_status": "HIGH",
                                     "alarm_severity": "MINOR"}


_F142_VALUES = [("Byte", -5), ("UByte", 250), ("Short", -300), ("UShort", 65000), ("Int", -70000), ("UInt", 2**32 - 1),
                ("Long", -(2**62)), ("ULong", 2**64 - 1), ("Float", 0.25), ("Double", 273.15), ("String", "Zürich"),
                ("ArrayByte", [-1, 1]), ("ArrayUByte", [255]), ("ArrayShort", [-2]), ("ArrayUShort", [2]),
                ("ArrayInt", [1, 2, 3]), ("ArrayUInt", [4]), ("ArrayLong", [2**40]), ("ArrayULong", [2**64 - 1]),
                ("ArrayFloat", [0.5]), ("ArrayDouble", [1.5, -2.5]), ("ArrayString", ["a", "bc"])]

CASES: dict[str, Any] = {
    "amo0": amo0, "ar51": ar51, "ba57": ba57, "ba57-stop": ba57_stop, "df12": df12, "dtdb": dtdb, "f140": f140,
    "f141": f141, "f143": f143, "fwdi": fwdi, "is84": is84, "mo01": mo01, "ns11": ns11,
    **{f"f142-{kind}": (lambda kind=kind, value=value: f142(kind, value)) for kind, value in _F142_VALUES},
}


def test_every_own_schema_id_has_a_case() -> None:
    assert {name.split("-")[0] for name in CASES} == set(OWN_SCHEMAS)


def test_every_field_round_trips_through_sfi_decode_json(tmp_path: Path, sfi) -> None:
    paths, wanted = [], []
    for name, build in CASES.items():
        data, expected = build()
        path = tmp_path / f"{name}.bin"
        path.write_bytes(data)
        paths.append(str(path))
        wanted.append({"schema": name.split("-")[0], **expected})
    run = sfi("decode", "--json", *paths)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    got = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(got) == len(wanted)
    for name, record, want in zip(CASES, got, wanted, strict=True):
        assert record == want, name


def test_readable_output_of_an_own_schema(tmp_path: Path, sfi) -> None:
    path = tmp_path / "f142.bin"
    path.write_bytes(f142("Double", 273.15)[0])
    run = sfi("decode", str(path))
    assert run.returncode == 0, run.stderr
    assert "273.15" in run.stdout and "SE:temp" in run.stdout and "2024-11-24T13:59:49.123Z" in run.stdout


@pytest.mark.parametrize("name", ["f141", "ns11", "mo01", "f142-ArrayDouble", "f143"])
def test_truncated_bodies_are_corrupt_not_crashes(name: str) -> None:
    data, _ = CASES[name]()
    for cut in range(8, len(data), 3):
        try:
            decode(data[:cut])
        except DecodeError as exc:
            assert "corrupt body" in str(exc)


def test_a_union_member_beyond_the_schema_is_corrupt() -> None:
    data = bytearray(ba57()[0])
    b = builder()
    root = table(b, [(0, "ubyte", 9), (1, "offset", table(b, [(0, "ulong", 1)]))])
    data = bytearray(finish(b, root, "ba57"))
    with pytest.raises(DecodeError, match=r"corrupt body .*union InfoTypes has no member 9"):
        decode(bytes(data))


def test_absent_fields_read_as_the_schema_defaults() -> None:
    b = flatbuffers.Builder(64)
    b.StartObject(0)
    root = b.EndObject()
    got = to_jsonable(decode(finish(b, root, "f142")))
    # f142 defaults: status NO_CHANGE (22), severity NO_CHANGE (4); no value union
    assert got == {"schema": "f142", "value": None, "value_type": None, "source_name": "",
                   "timestamp_unix_ns": "1970-01-01T00:00:00.000Z", "alarm_status": "NO_CHANGE",
                   "alarm_severity": "NO_CHANGE"}


def _raised(action: Any) -> BaseException:
    try:
        action()
    except Exception as exc:  # the test wants the real exception object
        return exc
    raise AssertionError("no exception")


def test_a_name_missing_from_numpy_is_a_library_failure_not_corrupt_bytes() -> None:
    # what ess-streaming-data-types' f142 raises under numpy 2 (np.unicode_): the library's failure
    assert is_library_failure(_raised(lambda: np.unicode_removed_in_numpy_2))  # type: ignore[attr-defined]
    assert is_library_failure(_raised(lambda: __import__("no_such_module_of_the_library")))
    # what corrupt bytes give: a missing table (None.Bytes), a bad union index, a short buffer
    assert not is_library_failure(_raised(lambda: (None).Bytes))  # type: ignore[attr-defined]
    assert not is_library_failure(_raised(lambda: {"j": 1}["k"]))
    assert not is_library_failure(_raised(lambda: b""[4]))


_BUILT = {name: build()[0] for name, build in CASES.items()}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(_BUILT)), st.integers(0, 400), st.binary(min_size=1, max_size=8),
       st.integers(8, 400))
def test_no_corruption_of_an_own_schema_raises_anything_but_decode_error(name: str, at: int, junk: bytes,
                                                                       cut: int) -> None:
    """Overwritten or truncated bodies of every own schema: decoded and rendered, or one DecodeError."""
    data = _BUILT[name]
    for candidate in (data[:at] + junk + data[at + len(junk):], data[:cut]):
        try:
            message = decode(candidate)
        except DecodeError:
            continue
        json.dumps(to_jsonable(message))


def test_tables_shared_by_offsets_cannot_blow_up_the_decoder() -> None:
    """f143 ArrayObj -> Obj -> ObjM -> ArrayObj ...: each level a vector of 2 offsets to the same next table
    (2^36 table reads if followed naively, within the depth limit); stopped as corrupt at once."""
    b = builder()
    inner = table(b, [])
    for _ in range(18):
        objm = table(b, [(1, "ubyte", 24), (2, "offset", inner)])  # ObjM { k, v: ArrayObj }
        obj = table(b, [(0, "offset", offsets(b, [objm, objm]))])  # Obj { value: [ObjM] }
        inner = table(b, [(0, "offset", offsets(b, [obj, obj]))])  # ArrayObj { value: [Obj] }
    root = table(b, [(1, "ubyte", 24), (2, "offset", inner)])
    with pytest.raises(DecodeError, match="more tables than a buffer"):
        decode(finish(b, root, "f143"))
