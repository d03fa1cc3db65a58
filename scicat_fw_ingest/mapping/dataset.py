"""Apply a profile to one file: the SciCat raw dataset, with the origin of every value.

Why fixed rules around the profile: ``type`` is always raw, ``sourceFolder`` is always the file's
(mapped) directory, and the pid rule is global, so that whatever a profile says, one file can never
yield two datasets. Everything else comes from the profile, then from the config's ``[defaults]``
table (keyed by SciCat field names); a required field nothing supplies is an error naming the key
that would supply it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..errors import SfiError
from ._pid import pid_candidate
from ._times import is_naive
from .harvest import harvest
from .profile import (
    DATASET_FIELDS,
    REQUIRED,
    FieldSpec,
    Profile,
    ProfileError,
    ProfileSet,
    known_zone,
    locate,
    matches,
)
from .sources import Context, Found, _raw, conversion_problem, convert, resolve

#: scientificMetadata key noting the zone assumed for times written without one.
ASSUMED_ZONE_KEY = "sfi_assumed_timezone"

log = logging.getLogger("sfi.mapping")


class MappingError(SfiError):
    """A file's metadata cannot make a valid dataset (a required field has no value)."""


@dataclass
class Mapped:
    """The dataset payload and, per field, where its value came from."""

    profile: str
    dataset: dict[str, Any]
    origins: list[tuple[str, Any, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    #: Values present in the file but unusable (e.g. a time in no known form): never silent.
    warnings: list[str] = field(default_factory=list)
    #: Why this profile was chosen (the evidence found in the file), for --explain.
    reason: str = ""


def check_defaults(defaults: dict[str, Any]) -> None:
    """A ``[defaults]`` key that is no dataset field is a typo: fail before any file is touched."""
    for key in defaults:
        if key not in DATASET_FIELDS or key in ("pid", "sourceFolder"):
            known = ", ".join(sorted(k for k in DATASET_FIELDS if k not in ("pid", "sourceFolder")))
            raise ProfileError(f"config [defaults] {key}: not a SciCat dataset field a default can fill "
                               f"(known: {known})")


def check_timezone(zone: str | None) -> None:
    """``[ingest] timezone`` must be a zone zoneinfo knows: fail before any file is touched."""
    if zone is not None and not known_zone(zone):
        raise ProfileError(f"config [ingest] timezone: '{zone}' is not a known time zone "
                           "(an IANA name such as 'Europe/Paris', or 'UTC')")


def pick_profile(profiles: ProfileSet, ctx: Context, *, explicit: str | None) -> Profile:
    """The named profile (which must fit), else the first in search order that fits the file.

    Sets ``ctx.entry`` to the picked profile's entry group (``{entry}`` in its paths) and
    ``ctx.profile_reason`` to the evidence that made it fit.
    """
    path = str(ctx.files.get("path", ""))
    if explicit:
        profile = profiles.get(explicit)
        fits, ctx.entry, reason = locate(profile, ctx.snapshot, ctx.run)
        if not fits:
            raise MappingError(f"{path}: profile '{profile.name}' needs {_needs(profile)}, which the file lacks")
        ctx.profile_reason = f"named by --profile or [ingest] profile ({profile.origin}); {reason}"
        return profile
    tried: list[str] = []
    for name in profiles.names():
        if name.startswith("builtin:"):
            continue  # a user profile of the same name replaces the built-in one
        profile = profiles.get(name)
        fits, ctx.entry, reason = locate(profile, ctx.snapshot, ctx.run)
        if fits and matches(profile, path=path, instrument=_instrument(profile, ctx)):
            skipped = f" (did not fit: {', '.join(t.split(' (')[0] for t in tried)})" if tried else ""
            extra = [f"path matches {'/'.join(profile.paths)}"] if profile.paths else []
            extra += [f"instrument matches {'/'.join(profile.instruments)}"] if profile.instruments else []
            ctx.profile_reason = (f"first profile that fits ({profile.origin}): "
                                  + "; ".join([reason, *extra]) + skipped)
            return profile
        tried.append(f"{profile.name} (needs {_needs(profile)}"
                     + (f", instrument {'/'.join(profile.instruments)}" if profile.instruments else "")
                     + (f", path {'/'.join(profile.paths)}" if profile.paths else "") + ")")
    ctx.entry = None
    raise MappingError(f"{path}: no mapping profile fits this file (tried: {'; '.join(tried)}); "
                       "it lacks the expected NeXus groups, or pass --profile")


def _needs(profile: Profile) -> str:
    parts = []
    if profile.entry:
        parts.append(f"a root {profile.entry} group" + (f" named {'/'.join(profile.entry_names)}"
                                                        if profile.entry_names else ""))
    parts += profile.requires
    if profile.requires_any:
        parts.append("one of " + " | ".join(profile.requires_any))
    return ", ".join(parts) or "nothing"


def _instrument(profile: Profile, ctx: Context) -> str | None:
    if ctx.run.get("instrument_name"):
        return str(ctx.run["instrument_name"])
    spec = profile.instrument or profile.fields.get("instrumentId")
    if spec is None:
        return None
    value, _, _ = evaluate(spec, ctx, timezone=zone_of(profile, ctx))
    return str(value) if value is not None else None


def zone_of(profile: Profile, ctx: Context) -> str:
    """The zone of times written without one: the profile's, else ``[ingest] timezone``, else UTC (assumed)."""
    return profile.timezone or ctx.config.ingest.timezone or "UTC"


def _zone_origin(profile: Profile, ctx: Context) -> str | None:
    """Where the zone comes from, or ``None`` when UTC is only assumed."""
    if profile.timezone:
        return f"profile '{profile.name}' timezone"
    if ctx.config.ingest.timezone:
        return "[ingest] timezone"
    return None


def evaluate(spec: FieldSpec, ctx: Context, *, timezone: str, name: str = "") -> tuple[Any, str, str | None]:
    """The first usable value of a field: (value, origin, unit), or (None, "", None).

    A value that is present but cannot be converted is skipped (the next source is tried) and
    recorded in ``ctx.warnings`` with ``name``, so that it is never dropped silently.
    """
    for source in spec.sources:
        candidates = resolve(source, ctx)
        if not candidates:
            continue
        value, origin, unit = _combine(candidates, spec, timezone, ctx, name)
        if value is not None:
            return value, origin, spec.unit if spec.unit is not None else unit
    if spec.default is not None:
        value = spec.default if spec.type in ("auto", None) else convert(spec.default, spec.type, timezone=timezone)
        return value, "profile default", spec.unit
    return None, "", None


def _combine(candidates: list[Found], spec: FieldSpec, timezone: str, ctx: Context,
             name: str) -> tuple[Any, str, str | None]:
    if spec.sum:
        numbers = [v for c in candidates for v in (c.value if isinstance(c.value, list) else [c.value])]
        if numbers and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
            origin = candidates[0].source if len(candidates) == 1 else \
                f"sum of {candidates[0].source} (+{len(candidates) - 1})"
            return _format(sum(numbers), spec), origin, candidates[0].unit
        ctx.warn(f"{candidates[0].source} gave {numbers!r}, not numbers to sum", name)
        return None, "", None
    if spec.type == "list" or (spec.join is not None and len(candidates) > 1):
        values = [c.value for c in candidates]
        flat = [v for item in values for v in (item if isinstance(item, list) else [item])]
        kind = spec.type if spec.type != "auto" else ("str" if spec.join is not None else "list")
        value = convert(flat, kind, timezone=timezone, join=spec.join)
        origin = candidates[0].source if len(candidates) == 1 else f"{candidates[0].source} (+{len(candidates) - 1})"
        return _format(value, spec), origin, candidates[0].unit
    for cand in candidates:
        if spec.type == "auto":
            value = cand.value
            if spec.join is not None and isinstance(value, list):  # join wherever it is given
                value = convert(value, "str", join=spec.join)
        else:
            value = convert(cand.value, spec.type, timezone=timezone, join=spec.join, unit=cand.unit)
        if value is not None:
            if spec.type == "time" and is_naive(cand.value if not isinstance(cand.value, list) else
                                                next(iter(cand.value), None)):
                ctx.naive_times.append(name or cand.source)
            return _format(value, spec), cand.source, cand.unit
        problem = conversion_problem(cand.value, spec.type, timezone=timezone, unit=cand.unit)
        ctx.warn(f"{cand.source}: {problem}", name)
    return None, "", None


def _format(value: Any, spec: FieldSpec) -> Any:
    if spec.format is None or value is None:
        return value
    if isinstance(value, list):
        return [spec.format.replace("{value}", str(v)) for v in value]
    return spec.format.replace("{value}", str(value))


def map_dataset(profile: Profile, ctx: Context) -> Mapped:
    """The dataset for ``ctx`` under ``profile``; ``missing`` lists required fields nothing supplied."""
    cfg = ctx.config
    ctx.problems = {}  # only this profile's values count (not those read while choosing a profile)
    ctx.naive_times = []
    zone = zone_of(profile, ctx)
    out = Mapped(profile.name, {}, reason=ctx.profile_reason)
    ds = out.dataset

    _lookup_keys(profile, ctx)
    pid, pid_origin = _pid(profile, ctx)
    ds["pid"] = pid
    out.origins.append(("pid", pid, pid_origin))
    ds["type"] = "raw"
    out.origins.append(("type", "raw", "rule: always raw"))
    ds["sourceFolder"] = ctx.files["dir"]
    out.origins.append(("sourceFolder", ds["sourceFolder"], "file:dir (after [ingest] path_map)"))

    for name, kind in DATASET_FIELDS.items():
        if name in ("pid", "sourceFolder"):
            continue
        spec = profile.fields.get(name)
        value, origin = None, ""
        if spec is not None:
            value, origin, _ = evaluate(spec, ctx, timezone=zone, name=name)
        if value is None and name == "sourceFolderHost" and cfg.ingest.source_folder_host:
            value, origin = cfg.ingest.source_folder_host, "config:ingest.source_folder_host"
        if value is None and name in cfg.defaults:
            value = convert(cfg.defaults[name], kind, timezone=zone)
            origin = f"config [defaults] {name}"
        if value is None:
            if name in REQUIRED:
                out.missing.append(name)
                out.origins.append((name, None, f"MISSING: set [defaults] {name} in the config"))
            continue
        ds[name] = value
        out.origins.append((name, value, origin))

    scientific: dict[str, Any] = {}
    for key, spec in profile.scientific.items():
        value, origin, unit = evaluate(spec, ctx, timezone=zone, name=f"scientificMetadata.{key}")
        if value is None:
            continue
        scientific[key] = {"value": value, "unit": unit or ""}
        if spec.human_name:
            scientific[key]["human_name"] = spec.human_name
        if spec.type_name:
            scientific[key]["type"] = spec.type_name
        out.origins.append((f"scientificMetadata.{key}", value, origin + (f" [{unit}]" if unit else "")))
    for include in profile.scientific_include:
        data = ctx.metadata if include == "metadata" else ctx.wrdn
        for key, value in data.items():
            if key not in scientific and value not in (None, "", [], {}):
                scientific[key] = {"value": value, "unit": ""}
                out.origins.append((f"scientificMetadata.{key}", value, f"{include}:{key}"))
    _harvest(profile, ctx, scientific, out)
    _note_zone(profile, ctx, zone, scientific, out)
    ds["scientificMetadata"] = scientific
    if ctx.entry and not profile.ingest_empty:
        _require_entry_content(profile, ctx, out)
    if ctx.entry:
        out.origins.insert(0, ("(entry)", ctx.entry, f"first root {profile.entry} group that fits the profile"))
    for warning in ctx.warnings:
        out.warnings.append(warning)
        out.origins.append(("(warning)", warning, "logged as a warning (sfi.mapping)"))
        log.warning("%s: %s", ctx.files.get("path", "?"), warning)
    return out


def _note_zone(profile: Profile, ctx: Context, zone: str, scientific: dict[str, Any], out: Mapped) -> None:
    """Say which zone naive times were read in: assumed UTC is a warning and a scientificMetadata note."""
    fields = list(dict.fromkeys(f for f in ctx.naive_times if f))
    if not fields:
        return
    origin = _zone_origin(profile, ctx)
    if origin is not None:
        out.origins.append(("(timezone)", zone, f"{origin}: times without a zone ({', '.join(fields)})"))
        return
    scientific[ASSUMED_ZONE_KEY] = {"value": "UTC", "unit": ""}
    out.origins.append((f"scientificMetadata.{ASSUMED_ZONE_KEY}", "UTC", "rule: no zone configured"))
    ctx.warn(f"times without a zone ({', '.join(fields)}) taken as UTC: no zone configured (set [ingest] timezone "
             f"or the profile's timezone, e.g. \"Europe/Paris\")")


def _harvest(profile: Profile, ctx: Context, scientific: dict[str, Any], out: Mapped) -> None:
    if not profile.harvest:
        return
    budget = max(0, profile.harvest_max_keys)
    result = harvest(ctx.snapshot, ctx.entry, include=profile.harvest_include, exclude=profile.harvest_exclude,
                     taken=set(scientific), max_keys=budget, max_bytes=profile.harvest_max_bytes,
                     emails=profile.harvest_emails)
    for item in result.kept:
        scientific[item.key] = item.entry
        out.origins.append((f"scientificMetadata.{item.key}", item.entry.get("value"),
                            item.origin))
    for note in result.notes:
        ctx.warn(note)


def _require_entry_content(profile: Profile, ctx: Context, out: Mapped) -> None:
    """Refuse a file whose entry gave none of the values the profile reads from it.

    Why: an HDF5 file holding only an empty NXentry would otherwise become a dataset made of defaults,
    the run's metadata and the file name — a record of nothing. ``[profile] ingest_empty = true`` lets a
    profile accept such files (a facility whose files carry no metadata by design).
    """
    inside = f"nexus:{(ctx.entry or '').rstrip('/')}/"
    if any(str(origin).startswith(inside) for _, _, origin in out.origins):
        return
    raise MappingError(f"{ctx.files.get('path', '?')}: entry {ctx.entry} holds nothing profile '{profile.name}' "
                       "reads (no title, times, identifiers, sample or instrument): not ingested; set "
                       "[profile] ingest_empty = true in a profile that should ingest such files")


def _lookup_keys(profile: Profile, ctx: Context) -> None:
    """What ``scicat:`` sources look up: the file's proposal id, instrument name and sample."""
    if ctx.lookup is None:
        return
    ctx.keys = {}  # keys come from the file, never from lookups themselves
    for record, spec in (("proposal", profile.fields.get("proposalId")), ("instrument", profile.instrument),
                         ("sample", profile.sample)):
        if spec is not None:
            value, _, _ = evaluate(spec, ctx, timezone=zone_of(profile, ctx))
            ctx.keys[record] = None if value is None else str(value)


def _pid(profile: Profile, ctx: Context) -> tuple[str, str]:
    """The pid: the profile's sources in order, then the job id, then uuid5 of the path.

    Why every candidate is checked whole: a source holding an array, a number where text is meant,
    an empty string or a non-UUID where the name promises one (``*uuid*``) must not become a pid —
    converted, ``[1, 2, 3]`` would give ``"1"`` and collide with every such file. A malformed value is
    skipped with a warning (the dataset's ``(warning)`` rows and the log), and the next source is tried.
    """
    prefix = ctx.config.ingest.pid_prefix
    with_prefix = " with [ingest] pid_prefix" if prefix else ""
    spec = profile.fields.get("pid")
    if spec is not None:
        for source in spec.sources:
            found = resolve(source, ctx)
            if not found and source.regex is None and any(c.value is not None for c in _raw(source, ctx)):
                ctx.warn(f"{source.label}: empty, not a pid; the next pid source is used", "pid")
            for cand in found:
                ident, problem = pid_candidate(cand.value, expect_uuid="uuid" in cand.source.lower())
                if ident is not None:
                    return f"{prefix}{_format(ident, spec)}", cand.source + with_prefix
                ctx.warn(f"{cand.source}: {problem}, not a pid; the next pid source is used", "pid")
    job_id = ctx.run.get("job_id")
    if job_id:
        ident, problem = pid_candidate(job_id, expect_uuid=False)
        if ident is not None:
            return f"{prefix}{ident}", "run:job_id" + with_prefix
        ctx.warn(f"run:job_id: {problem}, not a pid; the next pid source is used", "pid")
    if spec is not None and spec.default is not None:
        return f"{prefix}{spec.default}", "profile default" + with_prefix
    local = str(ctx.files["path"])
    return f"{prefix}{uuid.uuid5(uuid.NAMESPACE_URL, local)}", "rule: uuid5 of the local file path"


def require_complete(mapped: Mapped, path: str) -> None:
    if mapped.missing:
        keys = ", ".join(mapped.missing)
        raise MappingError(f"{path}: no value for required SciCat field(s) {keys}: profile '{mapped.profile}' "
                           f"finds none in the file or run metadata; set them in the config's [defaults] table "
                           f"(e.g. [defaults] {mapped.missing[0]} = \"...\")")
