"""Mapping profiles: TOML files that say how one NeXus layout becomes a SciCat dataset.

Why data files: adding an instrument must mean adding a file, not code. Profiles come from the user
directories in ``[ingest] profile_dirs`` (searched first, in order) and from the built-in ones shipped
in ``scicat_fw_ingest/profiles``. A profile may ``extends`` another and override single fields.
Every mistake in a profile is reported with the file and the key, once, at load time.
"""

from __future__ import annotations

import fnmatch
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import SfiError
from .sources import TYPES, SourceSpec, parse_source

#: Dataset fields a profile may fill, with their SciCat (v3) JSON type.
DATASET_FIELDS: dict[str, str] = {
    "pid": "str", "owner": "str", "ownerGroup": "str", "ownerEmail": "str", "orcidOfOwner": "str",
    "contactEmail": "str", "accessGroups": "list", "instrumentGroup": "str", "sourceFolder": "str",
    "sourceFolderHost": "str", "creationTime": "time", "principalInvestigator": "str",
    "creationLocation": "str", "datasetName": "str", "description": "str", "keywords": "list",
    "startTime": "time", "endTime": "time", "dataFormat": "str", "sampleId": "str", "instrumentId": "str",
    "proposalId": "str", "runNumber": "str", "license": "str", "sharedWith": "list", "isPublished": "bool",
}
#: Fields the real backend rejects a raw dataset without.
REQUIRED = ("owner", "ownerGroup", "contactEmail", "sourceFolder", "creationTime", "principalInvestigator",
            "creationLocation")
#: Fields sfi sets itself: ``type`` is always raw; sizes travel in the datablock (the server adds them).
RESERVED = ("type", "size", "packedSize", "numberOfFiles", "scientificMetadata")

_PROFILE_KEYS = {"name", "description", "extends", "requires", "requires_any", "entry", "entry_names", "instruments",
                 "paths", "priority", "timezone", "scientific_include", "instrument", "sample", "harvest",
                 "harvest_include", "harvest_exclude", "harvest_max_keys", "harvest_max_bytes", "harvest_emails",
                 "ingest_empty"}
_SPEC_KEYS = {"from", "type", "join", "format", "unit", "default", "sum", "human_name", "type_name"}
#: Default caps of the generic harvest (docs/mapping.md "Generic harvest").
HARVEST_MAX_KEYS = 1000
HARVEST_MAX_BYTES = 256 * 1024


class ProfileError(SfiError):
    """A profile file is unusable (names the file and the key), or none fits a file."""

    exit_code = 2


@dataclass(frozen=True)
class FieldSpec:
    """How to fill one field: sources in order, then conversion and formatting."""

    sources: tuple[SourceSpec, ...]
    type: str = "str"
    join: str | None = None
    format: str | None = None
    unit: str | None = None
    default: Any = None
    sum: bool = False
    human_name: str | None = None
    #: ``[scientific]`` only: stored as the entry's ``type`` (scicat-ingestor schemas put one in every entry).
    type_name: str | None = None


@dataclass
class Profile:
    name: str
    origin: str
    description: str = ""
    requires: list[str] = field(default_factory=list)
    requires_any: list[str] = field(default_factory=list)
    #: NeXus class of the entry group (``{entry}`` in paths): a root group of this class, optionally
    #: restricted to ``entry_names`` globs; the first (by name) where the requirements hold.
    entry: str | None = None
    entry_names: list[str] = field(default_factory=list)
    instruments: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    priority: int = 0
    #: Zone of times written without one; ``None``: ``[ingest] timezone``, else UTC assumed (and said so).
    timezone: str | None = None
    scientific_include: list[str] = field(default_factory=list)
    #: Ingest a file whose entry gives none of the values the profile reads from it (an empty NXentry):
    #: off by default, since such a dataset describes nothing but a file name.
    ingest_empty: bool = False
    instrument: FieldSpec | None = None
    sample: FieldSpec | None = None
    fields: dict[str, FieldSpec] = field(default_factory=dict)
    scientific: dict[str, FieldSpec] = field(default_factory=dict)
    #: Generic harvest of the entry's NeXus groups into scientificMetadata (``harvest.py``).
    harvest: bool = False
    harvest_include: list[str] = field(default_factory=list)
    harvest_exclude: list[str] = field(default_factory=list)
    harvest_max_keys: int = HARVEST_MAX_KEYS
    harvest_max_bytes: int = HARVEST_MAX_BYTES
    harvest_emails: bool = False


def _raw_builtin() -> dict[str, tuple[str, dict[str, Any]]]:
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    folder = resources.files("scicat_fw_ingest") / "profiles"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            out[entry.name[:-5]] = (f"built-in profile {entry.name}", _parse_toml(entry.read_bytes(), entry.name))
    return out


def _parse_toml(data: bytes, origin: str) -> dict[str, Any]:
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"profile {origin}: not valid TOML: {exc}") from None


def _raw_dir(folder: str) -> dict[str, tuple[str, dict[str, Any]]]:
    path = Path(folder)
    if not path.is_dir():
        raise ProfileError(f"profile directory {folder} (from [ingest] profile_dirs): not a directory")
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for file in sorted(path.glob("*.toml")):
        out[file.stem] = (f"profile file {file}", _parse_toml(file.read_bytes(), str(file)))
    return out


class ProfileSet:
    """All profiles visible with a config: user directories first, then the built-in ones."""

    def __init__(self, profile_dirs: list[str]) -> None:
        self._raw: dict[str, tuple[str, dict[str, Any]]] = {}
        self.order: list[str] = []
        for folder in profile_dirs:
            for name, item in _raw_dir(folder).items():
                if name not in self._raw:
                    self._raw[name] = item
                    self.order.append(name)
        builtin = _raw_builtin()
        # built-ins by priority (higher first), then name: isis (raw_data_*) is asked before ess
        for name, item in sorted(builtin.items(), key=lambda kv: (-int(kv[1][1].get("profile", {}).get("priority", 0)),
                                                                  kv[0])):
            key = name if name not in self._raw else f"builtin:{name}"
            self._raw[key] = item
            self.order.append(key)
        self._cache: dict[str, Profile] = {}
        for name in self.order:
            self.get(name)  # validate every profile up front: a broken one fails loudly, once

    def names(self) -> list[str]:
        return list(self.order)

    def get(self, name: str) -> Profile:
        if name in self._cache:
            return self._cache[name]
        if name not in self._raw:
            path = Path(name)
            if path.suffix == ".toml" and path.is_file():
                self._raw[name] = (f"profile file {path}", _parse_toml(path.read_bytes(), str(path)))
            else:
                raise ProfileError(f"profile '{name}': unknown (known: {', '.join(self.order)}; "
                                   "or give the path of a .toml file)")
        self._cache[name] = self._build(name, [])
        return self._cache[name]

    def _merged(self, name: str, chain: list[str]) -> tuple[str, dict[str, Any]]:
        if name in chain:
            raise ProfileError(f"{self._raw[chain[0]][0]}: 'extends' forms a loop ({' -> '.join([*chain, name])})")
        if name not in self._raw:
            raise ProfileError(f"{self._raw[chain[-1]][0]}: extends unknown profile '{name}'")
        origin, data = self._raw[name]
        parent_name = data.get("profile", {}).get("extends")
        if not parent_name:
            return origin, data
        parent_key = parent_name
        if parent_name == name or (parent_name in chain):
            parent_key = f"builtin:{parent_name}" if f"builtin:{parent_name}" in self._raw else parent_name
        _, parent = self._merged(parent_key, [*chain, name])
        merged: dict[str, Any] = {}
        for table in ("fields", "scientific"):
            merged[table] = {**parent.get(table, {}), **data.get(table, {})}
        own_profile = {k: v for k, v in data.get("profile", {}).items() if k != "extends"}
        merged["profile"] = {**parent.get("profile", {}), **own_profile}
        for key in data:
            if key not in merged:
                merged[key] = data[key]
        return origin, merged

    def _build(self, name: str, chain: list[str]) -> Profile:
        origin, data = self._merged(name, chain)
        return build_profile(name, origin, data)


def build_profile(name: str, origin: str, data: dict[str, Any]) -> Profile:
    """Validate one (merged) profile table."""
    where = f"{origin}"
    unknown = set(data) - {"profile", "fields", "scientific"}
    if unknown:
        raise ProfileError(f"{where}: unknown table(s) {', '.join(sorted(unknown))} "
                           "(known: profile, fields, scientific)")
    head = data.get("profile", {})
    bad = set(head) - _PROFILE_KEYS
    if bad:
        raise ProfileError(f"{where}: [profile] unknown key(s) {', '.join(sorted(bad))} "
                           f"(known: {', '.join(sorted(_PROFILE_KEYS))})")
    tz = str(head["timezone"]) if head.get("timezone") else None
    if tz is not None and not known_zone(tz):
        raise ProfileError(f"{where}: [profile] timezone '{tz}' is not a known time zone (an IANA name such as "
                           "'Europe/Paris', or 'UTC')")
    profile = Profile(
        name=str(head.get("name", name)), origin=origin, description=str(head.get("description", "")),
        requires=_str_list(head.get("requires", []), f"{where}: [profile] requires"),
        requires_any=_str_list(head.get("requires_any", []), f"{where}: [profile] requires_any"),
        entry=str(head["entry"]) if head.get("entry") else None,
        entry_names=_str_list(head.get("entry_names", []), f"{where}: [profile] entry_names"),
        instruments=_str_list(head.get("instruments", []), f"{where}: [profile] instruments"),
        paths=_str_list(head.get("paths", []), f"{where}: [profile] paths"),
        priority=int(head.get("priority", 0)), timezone=tz,
        scientific_include=_str_list(head.get("scientific_include", []), f"{where}: [profile] scientific_include"),
        harvest=_bool(head.get("harvest", False), f"{where}: [profile] harvest"),
        harvest_include=_str_list(head.get("harvest_include", []), f"{where}: [profile] harvest_include"),
        harvest_exclude=_str_list(head.get("harvest_exclude", []), f"{where}: [profile] harvest_exclude"),
        harvest_max_keys=_count(head.get("harvest_max_keys", HARVEST_MAX_KEYS), f"{where}: [profile] harvest_max_keys"),
        harvest_max_bytes=_count(head.get("harvest_max_bytes", HARVEST_MAX_BYTES),
                                 f"{where}: [profile] harvest_max_bytes"),
        harvest_emails=_bool(head.get("harvest_emails", False), f"{where}: [profile] harvest_emails"),
    )
    for condition in (*profile.requires, *profile.requires_any):
        if condition.startswith("run:") and condition[4:] not in RUN_FACTS:
            raise ProfileError(f"{where}: [profile] requires: unknown run fact '{condition}' "
                               f"(known: {', '.join('run:' + f for f in RUN_FACTS)})")
    if "ingest_empty" in head:
        if not isinstance(head["ingest_empty"], bool):
            raise ProfileError(f"{where}: [profile] ingest_empty: true or false (got {head['ingest_empty']!r})")
        profile.ingest_empty = head["ingest_empty"]
    for inc in profile.scientific_include:
        if inc not in ("metadata", "wrdn"):
            raise ProfileError(f"{where}: [profile] scientific_include: '{inc}' (known: metadata, wrdn)")
    if profile.entry is not None and not profile.entry.startswith("NX"):
        raise ProfileError(f"{where}: [profile] entry: a NeXus class such as 'NXentry' (got '{profile.entry}')")
    for key in ("instrument", "sample"):
        if key in head:
            setattr(profile, key, _spec(head[key], "str", f"{where}: [profile] {key}"))
    if profile.entry is None and _uses_entry(data, head):
        raise ProfileError(f"{where}: uses {{entry}} in a path but sets no [profile] entry (e.g. entry = \"NXentry\")")
    for key, raw in data.get("fields", {}).items():
        if key in RESERVED:
            raise ProfileError(f"{where}: [fields] {key}: set by sfi itself, not by a profile")
        if key not in DATASET_FIELDS:
            raise ProfileError(f"{where}: [fields] {key}: not a SciCat raw dataset field "
                               f"(known: {', '.join(sorted(DATASET_FIELDS))})")
        profile.fields[key] = _spec(raw, DATASET_FIELDS[key], f"{where}: [fields] {key}")
    for key, raw in data.get("scientific", {}).items():
        profile.scientific[key] = _spec(raw, None, f"{where}: [scientific] {key}")
    return profile


def _uses_entry(data: dict[str, Any], head: dict[str, Any]) -> bool:
    return "{entry}" in repr([data.get("fields"), data.get("scientific"), head.get("requires"),
                              head.get("requires_any"), head.get("instrument"), head.get("sample")])


def known_zone(name: str) -> bool:
    """Whether ``name`` is a time zone zoneinfo knows (IANA names, ``UTC``)."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ProfileError(f"{where}: must be true or false")
    return value


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProfileError(f"{where}: must be a whole number >= 0")
    return value


def _str_list(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProfileError(f"{where}: must be a list of strings")
    return list(value)


def _spec(raw: Any, field_type: str | None, where: str) -> FieldSpec:
    if isinstance(raw, (str, list)):
        raw = {"from": raw}
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: must be a source, a list of sources or a table with 'from'")
    bad = set(raw) - _SPEC_KEYS
    if bad:
        raise ProfileError(f"{where}: unknown key(s) {', '.join(sorted(bad))} (known: {', '.join(sorted(_SPEC_KEYS))})")
    items = raw.get("from", [])
    items = items if isinstance(items, list) else [items]
    if not items and "default" not in raw:
        raise ProfileError(f"{where}: needs 'from' (one or more sources) or a 'default'")
    try:
        sources = tuple(parse_source(item, where) for item in items)
    except ValueError as exc:
        raise ProfileError(str(exc)) from None
    kind = field_type
    if "type" in raw:
        if raw["type"] not in TYPES:
            raise ProfileError(f"{where}: type '{raw['type']}' (known: {', '.join(TYPES)})")
        if field_type is not None and raw["type"] != field_type and not (field_type == "str" and raw["type"] == "time"):
            raise ProfileError(f"{where}: SciCat needs type '{field_type}' here, not '{raw['type']}'")
        kind = raw["type"]
    fmt = raw.get("format")
    if fmt is not None and (not isinstance(fmt, str) or "{value}" not in fmt):
        raise ProfileError(f"{where}: format must be a string containing {{value}}")
    for key in ("human_name", "type_name"):
        if key in raw and field_type is not None:
            raise ProfileError(f"{where}: {key} is for [scientific] entries only")
    return FieldSpec(sources=sources, type=kind or "auto", join=raw.get("join"), format=fmt,
                     unit=raw.get("unit"), default=raw.get("default"), sum=bool(raw.get("sum", False)),
                     human_name=str(raw["human_name"]) if raw.get("human_name") else None,
                     type_name=str(raw["type_name"]) if raw.get("type_name") else None)


#: ``run:<fact>`` conditions a profile may require (``sfi listen`` knows them from the run start).
RUN_FACTS = ("job_id", "run_name", "instrument_name", "service_id", "filename", "start_time", "stop_time")


def locate(profile: Profile, snapshot: Any, run: dict[str, Any] | None = None) -> tuple[bool, str | None, str]:
    """Whether the file has what ``profile`` requires, its entry group (``{entry}``), and why it fits.

    With ``entry`` set, the entry is the first root group of that NeXus class (sorted by name, within
    ``entry_names`` if given) for which ``requires`` (all) and ``requires_any`` (one) hold. A condition
    is a path (``{entry}/entry_identifier_uuid``), a path with a value glob (``/@creator=kafka-to-nexus*``)
    or a run fact (``run:job_id``: the file came with a run start). The reason names what was found.
    """
    candidates: list[str | None] = [None]
    if profile.entry is not None:
        candidates = [p for p in snapshot.glob("/{" + profile.entry + "}")
                      if not profile.entry_names
                      or any(fnmatch.fnmatchcase(p.strip("/"), n) for n in profile.entry_names)]
        # an entry the requirements name literally ("/entry") comes before the others
        named = [r for r in (*profile.requires, *profile.requires_any)
                 if not r.startswith("{entry}") and not r.startswith("run:")]
        # then /entry, the name NeXus and kafka-to-nexus give the entry by default
        candidates.sort(key=lambda p: (not any(r.split("=")[0] == p or r.startswith(f"{p}/") for r in named),
                                       p != "/entry"))
    facts = run or {}
    for entry in candidates:
        if all(_holds(p, entry, snapshot, facts) for p in profile.requires):
            found = [p for p in profile.requires_any if _holds(p, entry, snapshot, facts)]
            if profile.requires_any and not found:
                continue
            shown = [_shown(p, entry) for p in (*profile.requires, *found[:1])]
            where = f"root {profile.entry} group {entry}" if entry else ""
            reason = " and ".join(shown) if shown else (where or "requires nothing")
            if shown and where:
                reason = f"{where}: {reason}"
            return True, entry, reason
    return False, None, ""


def _shown(condition: str, entry: str | None) -> str:
    path = condition.replace("{entry}", entry.rstrip("/")) if entry else condition
    if path.startswith("run:"):
        return f"{path} (the file came with a run start)"
    base, eq, pattern = path.partition("=")
    return f"{base} matches '{pattern}'" if eq else f"{base} present"


def _holds(condition: str, entry: str | None, snapshot: Any, run: dict[str, Any]) -> bool:
    if condition.startswith("run:"):
        return bool(run.get(condition[4:]))
    if "{entry}" in condition:
        if entry is None:
            return False
        condition = condition.replace("{entry}", entry.rstrip("/"))
    path, eq, pattern = condition.partition("=")
    if not eq:
        base = path.partition("@")[0]
        if "@" in path:
            return snapshot.value(path) is not None
        return snapshot.get(base) is not None
    value = snapshot.value(path)
    return isinstance(value, str) and fnmatch.fnmatchcase(value, pattern)


def matches(profile: Profile, *, path: str, instrument: str | None) -> bool:
    """Whether ``profile``'s path and instrument patterns match (the NeXus content is ``locate``'s)."""
    if profile.paths and not any(fnmatch.fnmatch(path, p) for p in profile.paths):
        return False
    if not profile.instruments:
        return True
    return instrument is not None and instrument != "" and any(
        fnmatch.fnmatch(instrument.lower(), p.lower()) for p in profile.instruments)
