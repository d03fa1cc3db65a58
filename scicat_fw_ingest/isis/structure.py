"""ISIS run-start enrichment: the ICP's streamed structure + the static ISIS raw layout -> one pl72.

At ISIS the instrument control program (ICP) publishes a run start whose nexus_structure holds only
the streamed parts of the file. The file writer needs the whole ISIS raw layout (``raw_data_1`` with
instrument, source, selog, runlog, monitors and the root fields), so this step merges a static
TEMPLATE (a JSON data file, overridable per instrument) with what the ICP sent and serialises the
result as a new pl72 whose nexus_structure is JSON (the script it replaces sent Python's ``str(dict)``).

The merge rule, in short (docs/forward-runinfo.md has it whole): nodes are matched by name
(groups, datasets, links) or by (module, topic, source) (streams); groups in both are merged
recursively with the ICP's attributes winning; any other node in both is the ICP's; ICP nodes
without a counterpart are appended; blocks generated from config lose whole to an ICP group of the
same name; the ICP's ``raw_data_1/events`` becomes ``detector_1_events``. Template placeholders are
``$NAME`` (whole string, typed value) or ``${NAME}`` (inside text); an unknown value removes the
list element that holds it, so a missing experiment identifier is left out, not written empty.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streaming_data_types import serialise_pl72
from streaming_data_types.run_start_pl72 import RunStartInfo

from ..errors import SfiError
from ._template import fill_template

#: The metadata keys read for the root fields, in order of preference.
RUN_NUMBER_KEYS = ("run_number", "runNumber")
TITLE_KEYS = ("title",)
EXPERIMENT_ID_KEYS = ("experiment_identifier", "rb_number", "rbNumber", "proposal_id")

EVENT_MODULES = frozenset({"ev42", "ev43", "ev44"})
ENTRY_NAME = "raw_data_1"
DETECTOR_EVENTS = "detector_1_events"

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")
_GENERATED = "__sfi_generated__"


class EnrichError(SfiError):
    """A run start that cannot be enriched (its nexus_structure is not a JSON object)."""


@dataclass(frozen=True)
class RootFields:
    """The ``raw_data_1`` root fields taken from the run start; ``None`` = not known (node left out)."""

    run_number: int | None
    title: str | None
    experiment_identifier: str | None


# --- building blocks ---------------------------------------------------------------------------

def _group(name: str, nx_class: str, children: list[Any]) -> dict[str, Any]:
    return {"type": "group", "name": name, "children": children,
            "attributes": [{"name": "NX_class", "dtype": "string", "values": nx_class}]}


def _generated(group: dict[str, Any]) -> dict[str, Any]:
    """Marks a block sfi made up from config, so that an ICP group of the same name replaces it whole."""
    return {**group, _GENERATED: True}


def _strip_marks(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_marks(v) for k, v in node.items() if k != _GENERATED}
    if isinstance(node, list):
        return [_strip_marks(item) for item in node]
    return node


def _split_block(entry: str) -> tuple[str, str]:
    """``"Name=PV"`` -> (Name, PV); ``"PV:PATH:Name"`` -> (Name, PV:PATH:Name)."""
    name, sep, source = entry.partition("=")
    if sep:
        return _UNSAFE_NAME.sub("_", name.strip()) or "block", source.strip()
    source = entry.strip()
    return _UNSAFE_NAME.sub("_", source.rsplit(":", 1)[-1]) or "block", source


def sample_env_groups(blocks: Sequence[str], topic: str) -> list[dict[str, Any]]:
    """``selog/<block>`` (IXseblock) with ``value_log`` (NXlog) holding one f144 stream per block."""
    out = []
    for name, source in _unique_blocks(blocks):
        stream = {"module": "f144", "config": {"topic": topic, "source": source, "dtype": "double"}}
        out.append(_generated(_group(name, "IXseblock", [_group("value_log", "NXlog", [stream])])))
    return out


def runlog_groups(blocks: Sequence[str], topic: str) -> list[dict[str, Any]]:
    """``runlog/<name>`` (NXlog) with one f144 stream each."""
    return [_generated(_group(name, "NXlog", [{"module": "f144", "config": {"topic": topic, "source": source,
                                                                             "dtype": "double"}}]))
            for name, source in _unique_blocks(blocks)]


def monitor_groups(monitors: Sequence[str], topic: str) -> list[dict[str, Any]]:
    """``monitor_N`` (NXmonitor) with the monitor's histogram as a da00 stream.

    Not hs01: kafka-to-nexus has no hs01 writer module, and a job naming a module it lacks is
    rejected whole (answ 500, no file), which would lose every ISIS run with monitors configured.
    """
    return [_generated(_group(name, "NXmonitor", [{"module": "da00", "config": {"topic": topic, "source": source}}]))
            for name, source in _unique_blocks(monitors)]


def _unique_blocks(entries: Sequence[str]) -> list[tuple[str, str]]:
    seen: set[str] = set()
    out = []
    for entry in entries:
        if not entry.strip():
            continue
        name, source = _split_block(entry)
        if name not in seen:
            seen.add(name)
            out.append((name, source))
    return out


def root_fields(run_name: str, filename: str, metadata: Mapping[str, Any] | None) -> RootFields:
    """run_number, title and experiment_identifier from the metadata, else from run name / filename."""
    meta = metadata or {}
    run_number = _as_int(_first(meta, RUN_NUMBER_KEYS))
    if run_number is None:
        for text in (run_name, Path(filename).stem):
            match = re.search(r"(\d+)$", text or "")
            if match:
                run_number = int(match.group(1))
                break
    title = _first(meta, TITLE_KEYS)
    if title is None and run_name and not run_name.isdigit():
        title = run_name
    experiment = _first(meta, EXPERIMENT_ID_KEYS)
    return RootFields(run_number, None if title is None else str(title),
                      None if experiment is None else str(experiment))


def _first(meta: Mapping[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        value = meta.get(key)
        if value not in (None, ""):
            return value
    return None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


# --- merging the ICP's structure ---------------------------------------------------------------

def _key(node: Any) -> tuple[Any, ...]:
    if not isinstance(node, dict):
        return ("value", json.dumps(node, sort_keys=True))
    if node.get("type") == "group" or (node.get("name") and "module" not in node and node.get("type") != "stream"):
        return ("name", node.get("name"))
    config: dict[str, Any] = node["config"] if isinstance(node.get("config"), dict) else {}
    module = node.get("module")
    if module in ("dataset", "link"):
        return ("name", config.get("name"))
    if node.get("type") == "stream" and isinstance(node.get("stream"), dict):
        stream = node["stream"]
        return ("stream", stream.get("writer_module"), stream.get("topic"), stream.get("source"))
    if module and ("topic" in config or "source" in config):
        return ("stream", module, config.get("topic"), config.get("source"))
    if module:
        return ("module", module)
    return ("value", json.dumps(node, sort_keys=True))


def _is_group(node: Any) -> bool:
    return isinstance(node, dict) and node.get("type") == "group"


def merge_children(template_children: list[Any], icp_children: list[Any]) -> list[Any]:
    """The template's children with the ICP's merged in (see the module docstring for the rule)."""
    merged = list(template_children)
    index = {_key(node): i for i, node in enumerate(merged)}
    for node in icp_children:
        i = index.pop(_key(node), None)  # popped: a second ICP node with the same key is kept too
        if i is None:
            merged.append(node)
        else:
            mergeable = _is_group(merged[i]) and _is_group(node) and not merged[i].get(_GENERATED)
            merged[i] = merge_group(merged[i], node) if mergeable else node
    return merged


def merge_group(template_group: dict[str, Any], icp_group: dict[str, Any]) -> dict[str, Any]:
    """One group from both: children merged, attributes united (ICP wins), other keys from the ICP."""
    out = {**template_group, **{k: v for k, v in icp_group.items() if k not in ("children", "attributes")}}
    out["children"] = merge_children(_list(template_group.get("children")), _list(icp_group.get("children")))
    attributes = {_attr_name(a): a for a in _list(template_group.get("attributes"))}
    attributes.update({_attr_name(a): a for a in _list(icp_group.get("attributes"))})
    if attributes:
        out["attributes"] = list(attributes.values())
    return out


def _attr_name(attribute: Any) -> str:
    return str(attribute.get("name")) if isinstance(attribute, dict) else json.dumps(attribute, sort_keys=True)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _normalise_icp_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """The ICP's ``events`` group renamed ``detector_1_events``; loose event modules moved into it."""
    children = []
    loose_events = []
    for node in _list(entry.get("children")):
        if isinstance(node, dict) and node.get("module") in EVENT_MODULES:
            loose_events.append(node)
        elif _is_group(node) and node.get("name") == "events":
            renamed = {**node, "name": DETECTOR_EVENTS}
            renamed["attributes"] = [a for a in _list(node.get("attributes")) if _attr_name(a) != "NX_class"]
            renamed["attributes"].append({"name": "NX_class", "dtype": "string", "values": "NXevent_data"})
            children.append(renamed)
        else:
            children.append(node)
    if loose_events:
        children.append(_group(DETECTOR_EVENTS, "NXevent_data", loose_events))
    return {**entry, "children": children}


def merge_icp(filled_template: dict[str, Any], icp_structure: dict[str, Any]) -> dict[str, Any]:
    """The final nexus_structure: the filled template with the ICP's structure merged in."""
    icp = dict(icp_structure)
    icp_children = []
    for node in _list(icp.get("children")):
        icp_children.append(_normalise_icp_entry(node) if _is_group(node) and node.get("name") == ENTRY_NAME
                            else node)
    out = {**filled_template, **{k: v for k, v in icp.items() if k != "children"}}
    out["children"] = merge_children(_list(filled_template.get("children")), icp_children)
    return _strip_marks(out)  # type: ignore[no-any-return]


# --- the whole step ----------------------------------------------------------------------------

def parse_icp_structure(run_start: RunStartInfo, instrument: str) -> dict[str, Any]:
    """The ICP's nexus_structure as a dict; ``EnrichError`` naming the job when it is not a JSON object."""
    text = run_start.nexus_structure or "{}"
    try:
        structure = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise EnrichError(f"run start of job {run_start.job_id!r} ({instrument}): nexus_structure is not valid "
                          f"JSON: {str(exc)[:120]}") from None
    if not isinstance(structure, dict):
        raise EnrichError(f"run start of job {run_start.job_id!r} ({instrument}): nexus_structure must be a JSON "
                          f"object, not {type(structure).__name__}")
    return structure


def parse_metadata(run_start: RunStartInfo) -> dict[str, Any] | None:
    """The metadata as a dict, or ``None`` when it is absent, not JSON or not an object (kept verbatim)."""
    try:
        value = json.loads(run_start.metadata) if run_start.metadata else None
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def build_structure(run_start: RunStartInfo, instrument: str, template: Mapping[str, Any], *,
                    sample_env_blocks: Sequence[str] = (), runlog_blocks: Sequence[str] = (),
                    monitors: Sequence[str] = ()) -> dict[str, Any]:
    """The enriched nexus_structure for one ICP run start (a ``RunStartInfo``)."""
    icp = parse_icp_structure(run_start, instrument)
    fields = root_fields(run_start.run_name, run_start.filename, parse_metadata(run_start))
    values: dict[str, Any] = {
        "INSTRUMENT": instrument, "RUN_NUMBER": fields.run_number, "TITLE": fields.title,
        "EXPERIMENT_IDENTIFIER": fields.experiment_identifier, "RUN_NAME": run_start.run_name or None,
        "JOB_ID": run_start.job_id, "FILENAME": run_start.filename,
        "EVENTS_TOPIC": f"{instrument}_events", "SAMPLE_ENV_TOPIC": f"{instrument}_sampleEnv",
        "RUNLOG_TOPIC": f"{instrument}_runLog", "MONITOR_TOPIC": f"{instrument}_monitorHistograms",
    }
    values["SAMPLE_ENV"] = sample_env_groups(sample_env_blocks, values["SAMPLE_ENV_TOPIC"])
    values["RUNLOG"] = runlog_groups(runlog_blocks, values["RUNLOG_TOPIC"])
    values["MONITORS"] = monitor_groups(monitors, values["MONITOR_TOPIC"])
    return merge_icp(fill_template(template, values), icp)


def serialise_enriched(run_start: RunStartInfo, instrument: str, structure: Mapping[str, Any]) -> bytes:
    """The new pl72: every field of the ICP's run start kept, nexus_structure replaced (as JSON)."""
    payload: bytes = serialise_pl72(  # streaming_data_types is untyped
        job_id=run_start.job_id, filename=run_start.filename, start_time=run_start.start_time,
        stop_time=run_start.stop_time, run_name=run_start.run_name,
        nexus_structure=json.dumps(structure, ensure_ascii=False), service_id=run_start.service_id,
        instrument_name=run_start.instrument_name or instrument, broker=run_start.broker,
        metadata=run_start.metadata, detector_spectrum_map=run_start.detector_spectrum_map,
        control_topic=run_start.control_topic,
    )
    return payload


def enrich_run_start(run_start: RunStartInfo, instrument: str, template: Mapping[str, Any], *,
                     sample_env_blocks: Sequence[str] = (), runlog_blocks: Sequence[str] = (),
                     monitors: Sequence[str] = ()) -> bytes:
    """The enriched pl72 bytes for one ICP run start (``RunStartInfo``) seen on ``<instrument>_runInfo``."""
    structure = build_structure(run_start, instrument, template, sample_env_blocks=sample_env_blocks,
                                runlog_blocks=runlog_blocks, monitors=monitors)
    return serialise_enriched(run_start, instrument, structure)


def instrument_from_topic(topic: str) -> str:
    """``ZOOM_runInfo`` -> ``ZOOM`` (a topic without the suffix is its own instrument name)."""
    return topic.removesuffix("_runInfo") or topic

