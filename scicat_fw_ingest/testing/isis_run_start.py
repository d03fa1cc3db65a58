"""ISIS run starts as the ICP sends them, ways to look into the nexus_structure sfi sends on, and a topic of them.

Why in the package: the enrichment core's tests, ``sfi forward-runinfo``'s tests against the broker and the
ISIS end-to-end test build the same run starts and read the same enriched structures back.
"""

from __future__ import annotations

import json
from typing import Any

from streaming_data_types import serialise_pl72

from scicat_fw_ingest.config import Config
from scicat_fw_ingest.kafka import Position, make_producer, produce_sync, read_topic
from scicat_fw_ingest.messages import decode


def group(name: str, children: list[Any], nx_class: str | None = None) -> dict[str, Any]:
    """A nexus_structure group node, with its NX_class attribute when given."""
    attrs = [{"name": "NX_class", "values": nx_class}] if nx_class else []
    return {"type": "group", "name": name, "children": children, "attributes": attrs}


def icp_structure(inst: str = "ZOOM", blocks: tuple[str, ...] = ("Temp_1", "Field")) -> dict[str, Any]:
    """What the ICP sends: raw_data_1 with an ev44 ``events`` stream and a selog of f144 blocks."""
    selog = [group(b, [{"module": "f144", "config": {"topic": f"{inst}_sampleEnv", "source": f"IN:{inst}:{b}",
                                                       "dtype": "double"}}], "IXseblock") for b in blocks]
    events = group("events", [{"module": "ev44", "config": {"topic": f"{inst}_events", "source": f"{inst}_det"}}],
                    "NXevent_data")
    return {"children": [group("raw_data_1", [events, group("selog", selog, "IXselog")], "NXentry")]}


def run_start_bytes(structure: Any = None, *, metadata: Any = None, run_name: str = "12345",
                    filename: str = "ZOOM00012345.nxs", instrument_name: str = "",
                    job_id: str = "0f8a7b1e-1b2c-4d5e-8f90-123456789abc") -> bytes:
    text = structure if isinstance(structure, str) else json.dumps(structure or icp_structure())
    meta = metadata if isinstance(metadata, str) else json.dumps(metadata or {"title": "Sample scan",
                                                                             "experiment_identifier": "2410001"})
    return bytes(serialise_pl72(job_id=job_id, filename=filename, start_time=1_700_000_000_000,
                                stop_time=1_700_000_360_000, run_name=run_name, nexus_structure=text,
                                service_id="icp-1", instrument_name=instrument_name, broker="broker:9092",
                                metadata=meta, control_topic="ZOOM_control"))


def child(node: dict[str, Any], name: str) -> dict[str, Any]:
    item: dict[str, Any]
    for item in node.get("children", []):
        if item.get("name") == name or item.get("config", {}).get("name") == name:
            return item
    raise AssertionError(f"no child {name!r} in {[c.get('name') or c.get('config') for c in node['children']]}")


def dataset_value(node: dict[str, Any], name: str) -> Any:
    return child(node, name)["config"]["values"]


def streams(node: Any) -> list[tuple[str, str, str]]:
    """Every stream module anywhere below ``node``: (module, topic, source)."""
    out = []
    if isinstance(node, dict):
        cfg = node.get("config", {})
        if node.get("module") not in (None, "dataset", "link", "mdat"):
            out.append((node["module"], cfg.get("topic"), cfg.get("source")))
        for item in node.get("children", []):
            out += streams(item)
    return out


def produce(cfg: Config, topic: str, *values: bytes) -> None:
    producer = make_producer(cfg)
    for value in values:
        produce_sync(producer, topic, value)


def read_run_starts(cfg: Config, topic: str) -> list[Any]:
    return [decode(r.value, expect="pl72").value for r in read_topic(cfg, topic, position=Position(),
                                                                    idle_timeout=5)]
