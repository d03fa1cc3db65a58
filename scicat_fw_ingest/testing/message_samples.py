"""One valid message per schema the file writer's world uses, with the JSON ``sfi decode`` must print for it.

Why in the package: the decoding tests, ``sfi decode``'s tests and the decode benchmarks all start from the same
bytes, and a facility checking its own decoder (or a peer's) can use them as a known-good corpus. Built with
ess-streaming-data-types' own serialisers, so they are what a real producer sends.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
from streaming_data_types import (
    serialise_6s4t,
    serialise_answ,
    serialise_ev44,
    serialise_f144,
    serialise_pl72,
    serialise_wrdn,
    serialise_x5f2,
)
from streaming_data_types.fbschemas.action_response_answ.ActionOutcome import ActionOutcome
from streaming_data_types.fbschemas.action_response_answ.ActionType import ActionType

START_MS = 1_730_000_000_123
STOP_MS = START_MS + 60_000
STRUCTURE = {"children": [{"type": "group", "name": "entry", "children": [],
                           "attributes": [{"name": "NX_class", "values": "NXentry"}]}]}


def sample_messages() -> dict[str, tuple[bytes, dict[str, Any]]]:
    """Each schema's bytes and the JSON that must come out of them."""
    stop_dt = datetime.fromtimestamp(STOP_MS / 1000, tz=UTC)
    return {
        "pl72": (
            serialise_pl72("job-1", "/data/f.nxs", START_MS, STOP_MS, run_name="r1",
                           nexus_structure=json.dumps(STRUCTURE), service_id="w1", instrument_name="DREAM",
                           broker="b:9092", metadata='{"proposal_id": "2024001"}', control_topic="ctl"),
            {"job_id": "job-1", "filename": "/data/f.nxs", "start_time": "2024-10-27T03:33:20.123Z",
             "stop_time": "2024-10-27T03:34:20.123Z", "nexus_structure": STRUCTURE, "service_id": "w1",
             "broker": "b:9092", "run_name": "r1", "instrument_name": "DREAM",
             "metadata": {"proposal_id": "2024001"}, "detector_spectrum_map": None, "control_topic": "ctl"},
        ),
        "6s4t": (
            serialise_6s4t("job-1", "r1", "w1", "cmd-1", STOP_MS),
            {"stop_time": "2024-10-27T03:34:20.123Z", "run_name": "r1", "job_id": "job-1", "service_id": "w1",
             "command_id": "cmd-1"},
        ),
        "answ": (
            serialise_answ("w1", "job-1", "cmd-1", ActionType.SetStopTime, ActionOutcome.Failure, "late", 400,
                           stop_dt),
            {"service_id": "w1", "job_id": "job-1", "command_id": "cmd-1", "action": "SetStopTime",
             "outcome": "Failure", "message": "late", "status_code": 400,
             "stop_time": "2024-10-27T03:34:20.123Z"},
        ),
        "x5f2": (
            serialise_x5f2("kafka-to-nexus", "6.1", "w1", "host1", 77, 2000,
                           '{"state": "writing", "job_id": "job-1"}'),
            {"software_name": "kafka-to-nexus", "software_version": "6.1", "service_id": "w1",
             "host_name": "host1", "process_id": 77, "update_interval": 2000,
             "status_json": {"state": "writing", "job_id": "job-1"}},
        ),
        "wrdn": (
            serialise_wrdn("w1", "job-1", True, "/out/data/f.nxs", '{"proposal_id": "2024001"}', "disk full"),
            {"service_id": "w1", "job_id": "job-1", "error_encountered": True, "file_name": "/out/data/f.nxs",
             "metadata": {"proposal_id": "2024001"}, "message": "disk full"},
        ),
        "f144": (
            serialise_f144("temp:PV", 21.5, 1_730_000_000_000_000_001),
            {"source_name": "temp:PV", "value": 21.5, "timestamp_unix_ns": "2024-10-27T03:33:20.000000001Z"},
        ),
        "ev44": (
            serialise_ev44("det", 7, np.array([1_000, 2_000]), np.array([0, 3]), np.arange(5, dtype=np.int32),
                           np.arange(10, 15, dtype=np.int32)),
            {"source_name": "det", "message_id": 7,
             "reference_time": ["1970-01-01T00:00:00.000001Z", "1970-01-01T00:00:00.000002Z"],
             "reference_time_index": [0, 3],
             "time_of_flight": [0, 1, 2, 3, 4], "pixel_id": [10, 11, 12, 13, 14]},
        ),
    }


SAMPLES = sample_messages()


# -- every other schema the library knows: lossless, times ISO, enums by name -------------------

NS = 1_730_000_000_123_456_789
NS_ISO = "2024-10-27T03:33:20.123456789Z"


def other_schemas() -> dict[str, bytes]:
    import streaming_data_types as sdt
    from streaming_data_types import (
        alarm_al00,
        area_detector_ADAr,
        area_detector_ad00,
        dataarray_da00,
        epics_connection_ep01,
        forwarder_config_update_fc00,
    )
    from streaming_data_types.fbschemas.array_1d_se00.Location import Location
    from streaming_data_types.fbschemas.epics_connection_info_ep00.EventType import EventType
    from streaming_data_types.fbschemas.forwarder_config_update_fc00.Protocol import Protocol
    from streaming_data_types.fbschemas.forwarder_config_update_fc00.UpdateType import UpdateType

    image = np.arange(6, dtype=np.uint16).reshape(2, 3)
    stamp = datetime.fromtimestamp(1_730_000_000.123, tz=UTC)
    hist = {"source": "h", "timestamp": NS, "current_shape": [2], "data": np.array([3, 4]),
            "dim_metadata": [{"length": 2, "unit": "ns", "label": "tof", "bin_boundaries": np.array([0, 1, 2])}]}
    return {
        "da00": sdt.serialise_da00("mon", NS, [
            dataarray_da00.Variable(name="counts", data=np.arange(20, dtype=np.int32), axes=["tof"], unit="counts",
                                    label="Counts", source="mon1"),
            dataarray_da00.Variable(name="tof", data=np.linspace(0.0, 20.0, 21), axes=["tof"], unit="us")]),
        "ad00": sdt.serialise_ad00("cam", 3, NS, image, [area_detector_ad00.Attribute("gain", "the gain", "ep", 2.5)]),
        "ADAr": sdt.serialise_ADAr("cam", 3, stamp, image, [area_detector_ADAr.Attribute("gain", "g", "ep", 2.5)]),
        "al00": sdt.serialise_al00("pv", NS, alarm_al00.Severity.MAJOR, "too hot"),
        "ep00": sdt.serialise_ep00(NS, EventType.CONNECTED, "pv", "fwd"),
        "ep01": sdt.serialise_ep01(NS, epics_connection_ep01.ConnectionInfo.CONNECTED, "pv", "fwd"),
        "ev42": sdt.serialise_ev42("det", 1, NS, np.array([5, 6]), np.array([1, 2])),
        "ev43": sdt.serialise_ev43("det", 1, np.array([NS, NS]), np.array([0, 1]), np.array([5, 6]), np.array([1, 2])),
        "an44": sdt.serialise_an44("det", 1, np.array([NS]), np.array([0]), np.array([5, 6]), np.array([1, 2]),
                                   np.array([1, 1])),
        "fc00": sdt.serialise_fc00(UpdateType.ADD, [forwarder_config_update_fc00.StreamInfo("pv", "f144", "t",
                                                                                            Protocol.PVA, 0)]),
        "hs00": sdt.serialise_hs00(hist),
        "hs01": sdt.serialise_hs01(hist),
        "ns10": sdt.serialise_ns10("k", "v", 1_730_000_000.5, 3.0, False),
        "se00": sdt.serialise_se00("n", 1, NS, 10, 5, np.array([1, 2]), Location.Start, np.array([NS, NS + 10])),
        "senv": sdt.serialise_senv("n", 1, stamp, 10, 5, np.array([1, 2]), 2, np.array([NS, NS + 10])),
        "tdct": sdt.serialise_tdct("chopper", np.array([NS, NS + 1000]), 4),
    }
