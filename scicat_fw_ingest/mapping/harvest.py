"""The generic harvest: every scalar fact of a NeXus entry as a ``scientificMetadata`` entry ``{value, unit}``.

Why: a profile names the few fields it knows, but a file from any facility carries many more facts a
scientist searches for (sample temperature, wavelength, chopper speeds, detector distance, monitor
counts), all with units. The harvest walks the entry by NeXus class, not by name, so it works on
layouts nobody wrote a profile for. It never reads an array larger than ``MAX_ARRAY`` elements: NXlog
values (sample environment) are summarised in bounded slices (``nexus.reader.summarize_dataset``),
so a log of 10^8 points costs no more memory than one of 10^4.

Keys (docs/mapping.md "Generic harvest") are the path below the entry, one segment per group, joined by
``_`` (``sample_temperature``, ``instrument_monochromator_wavelength``): the NXinstrument and NXsample
groups are called ``instrument`` and ``sample`` whatever their name (ILL ``/entry0/D22`` →
``instrument_...``), so keys are stable across instruments. ``_`` and not ``.`` because SciCat's
scientific-metadata search addresses ``scientificMetadata.<key>.value`` with MongoDB dotted paths, and a
key containing ``.`` can be stored but never found.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from typing import Any

#: Arrays with more elements than this are never copied into the dataset (their summary may be).
MAX_ARRAY = 16
#: Texts longer than this are left out (notes, embedded files): scientificMetadata is for searching.
MAX_TEXT = 2048
#: The walk stops after this many objects and below this depth (pathological files).
MAX_NODES = 20_000
MAX_DEPTH = 8
SEPARATOR = "_"

#: Groups holding bulk data, geometry or citations, not facts: never walked.
SKIPPED_CLASSES = frozenset({"NXdata", "NXevent_data", "NXcite", "NXtransformations", "NXoff_geometry",
                             "NXcylindrical_geometry", "NXgeometry", "NXshape", "NXtranslation", "NXorientation"})
#: Datasets that are plumbing, not facts.
SKIPPED_NAMES = frozenset({"depends_on", "NX_class"})
#: NXuser fields kept (names and affiliation; ``email`` only with ``harvest_emails``).
USER_FIELDS = ("name", "role", "affiliation", "orcid", "ORCID")
#: Groups whose ``value`` dataset is the group's own fact (key without ``_value``).
VALUE_CLASSES = frozenset({"NXpositioner", "NXsensor", "NXenvironment"})
#: Groups named by their class rather than their name when they are the only one of it in their parent.
CLASS_NAMED = {"NXinstrument": "instrument", "NXsample": "sample"}

#: Keep-order when caps apply: lower ranks are kept first, then walk order (groups sorted by name).
RANK_ENTRY, RANK_SAMPLE, RANK_INSTRUMENT, RANK_USER, RANK_LOG, RANK_OTHER = range(6)
RANK_NAMES = ("entry scalars", "NXsample", "NXinstrument and its components, NXmonitor", "NXuser",
              "NXlog summaries", "other groups")


@dataclass(frozen=True)
class Harvested:
    """One scientificMetadata entry found by the harvest, with where it came from."""

    key: str
    entry: dict[str, Any]
    origin: str
    rank: int
    order: int


@dataclass
class HarvestResult:
    kept: list[Harvested]
    dropped: list[Harvested]
    #: Why entries were dropped (caps), for the warning and --explain.
    notes: list[str]


def clean_key(text: str) -> str:
    """A key SciCat stores and finds: letters, digits, ``_`` and ``-``; never empty, never starting with ``$``."""
    key = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")
    return key or "unnamed"


def harvest(snapshot: Any, entry: str | None, *, include: list[str], exclude: list[str], taken: set[str],
            max_keys: int, max_bytes: int, emails: bool) -> HarvestResult:
    """Every fact under ``entry`` not already in ``taken`` (the profile's own keys win), within the caps."""
    if entry is None:
        return HarvestResult([], [], [])
    walker = _Walker(snapshot, emails)
    walker.group(entry.rstrip("/") or "/", [], RANK_ENTRY, "NXentry", 0)
    found: list[Harvested] = []
    seen = set(taken)
    for item in sorted(walker.found, key=lambda h: (h.rank, h.order)):
        if item.key in seen:
            continue
        if include and not any(fnmatch.fnmatchcase(item.key, g) for g in include):
            continue
        if any(fnmatch.fnmatchcase(item.key, g) for g in exclude):
            continue
        seen.add(item.key)
        found.append(item)
    kept: list[Harvested] = []
    dropped: list[Harvested] = []
    size = 0
    for item in found:
        cost = len(json.dumps({item.key: item.entry}, ensure_ascii=False, default=str))
        if len(kept) >= max_keys or size + cost > max_bytes:
            dropped.append(item)
            continue
        kept.append(item)
        size += cost
    notes = []
    if dropped:
        notes.append(f"harvest: {len(dropped)} of {len(found)} entries left out by the caps "
                     f"(harvest_max_keys {max_keys}, harvest_max_bytes {max_bytes}); kept first: "
                     + ", ".join(RANK_NAMES))
    if walker.truncated:
        notes.append(f"harvest: the walk stopped after {MAX_NODES} objects")
    return HarvestResult(kept, dropped, notes)


class _Walker:
    def __init__(self, snapshot: Any, emails: bool) -> None:
        self.snapshot = snapshot
        self.emails = emails
        self.found: list[Harvested] = []
        self.visited = 0
        self.truncated = False

    def add(self, segments: list[str], entry: dict[str, Any], origin: str, rank: int) -> None:
        key = SEPARATOR.join(clean_key(s) for s in segments)
        self.found.append(Harvested(key, entry, origin, rank, len(self.found)))

    def group(self, path: str, segments: list[str], rank: int, nx_class: str | None, depth: int) -> None:
        names = self.snapshot.children(path)
        kinds: dict[str, Any] = {}
        for name in names:
            self.visited += 1
            if self.visited > MAX_NODES:
                self.truncated = True
                return
            kinds[name] = self.snapshot.get(f"{path.rstrip('/')}/{name}")
        class_counts: dict[str, int] = {}
        for node in kinds.values():
            if node is not None and node.kind == "group" and node.nx_class:
                class_counts[node.nx_class] = class_counts.get(node.nx_class, 0) + 1
        for name in names:
            node = kinds[name]
            if node is None:
                continue
            child = f"{path.rstrip('/')}/{name}"
            if node.kind == "dataset":
                if nx_class == "NXuser" and not (name in USER_FIELDS or (self.emails and name == "email")):
                    continue
                self.dataset(child, node, [*segments, name], rank, nx_class)
                continue
            cls = node.nx_class
            if cls in SKIPPED_CLASSES or depth + 1 > MAX_DEPTH:
                continue
            segment = CLASS_NAMED.get(cls or "", name) if class_counts.get(cls or "", 0) == 1 else name
            child_rank = rank
            if rank in (RANK_ENTRY, RANK_OTHER):
                child_rank = {"NXsample": RANK_SAMPLE, "NXinstrument": RANK_INSTRUMENT, "NXmonitor": RANK_INSTRUMENT,
                              "NXuser": RANK_USER}.get(cls or "", RANK_OTHER)
            if cls == "NXlog":
                self.log(child, [*segments, segment])
                continue
            self.group(child, [*segments, segment], child_rank, cls, depth + 1)

    def dataset(self, path: str, node: Any, segments: list[str], rank: int, nx_class: str | None) -> None:
        if segments[-1] in SKIPPED_NAMES:
            return
        unit = node.units or ""
        value = node.value
        if value is None and nx_class == "NXmonitor" and segments[-1] in ("data", "integral"):
            summary = self.snapshot.summary(path)  # a monitor spectrum: its total counts, read in slices
            if summary is not None:
                self.add([*segments[:-1], f"{segments[-1]}_total"],
                         {"value": summary.total, "unit": unit, "count": summary.count},
                         f"harvest: total of nexus:{path} ({summary.count} elements, read in slices)", rank)
            return
        if not _fact(value):
            return
        if segments[-1] == "value" and nx_class in VALUE_CLASSES and len(segments) > 1:
            segments = segments[:-1]  # a positioner's or sensor's value is the group's fact: before_scan_delta
        self.add(segments, {"value": value, "unit": unit},
                 f"harvest: nexus:{path}" + (f" [{unit}]" if unit else ""), rank)

    def log(self, path: str, segments: list[str]) -> None:
        """An NXlog: first/last/min/max/mean/count of its ``value``, read in bounded slices."""
        value_path = f"{path}/value"
        node = self.snapshot.get(value_path)
        if node is None or node.kind != "dataset":
            return
        unit = node.units or ""
        if node.size == 1 and _fact(node.value) and not isinstance(node.value, (int, float)):
            self.add(segments, {"value": node.value, "unit": unit}, f"harvest: NXlog nexus:{value_path}",
                     RANK_LOG)
            return
        summary = self.snapshot.summary(value_path)
        if summary is None:
            return
        self.add(segments, {"value": summary.mean, "unit": unit, "first": summary.first, "last": summary.last,
                            "min": summary.minimum, "max": summary.maximum, "mean": summary.mean,
                            "count": summary.count},
                 f"harvest: NXlog nexus:{value_path} (summary of {summary.count} points, read in slices)", RANK_LOG)


def _fact(value: Any) -> bool:
    """A value worth a scientificMetadata entry: a scalar, a short text, or a tiny list of scalars."""
    if value is None or isinstance(value, dict):
        return False
    if isinstance(value, str):
        return bool(value.strip()) and len(value) <= MAX_TEXT
    if isinstance(value, list):
        return 0 < len(value) <= MAX_ARRAY and all(isinstance(v, (int, float, str)) and v is not None
                                                   and not isinstance(v, bool) for v in value)
    return isinstance(value, (int, float, bool))
