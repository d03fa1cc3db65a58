"""Where a mapped value can come from, and how a candidate value is turned into the wanted type.

A source is written ``kind:argument`` (``nexus:/entry/title``, ``metadata:proposal.id``, ``file:dir``);
a field lists several and the first one that yields a usable value wins. Every resolved value
carries the source it came from, so ``--explain`` can show it and an operator can fix a profile
without reading code.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import Config, SecretStr
from ..nexus.reader import LazySnapshot, NexusSnapshot

KINDS = ("nexus", "run", "metadata", "wrdn", "config", "file", "value")
TYPES = ("str", "int", "float", "bool", "time", "list")
_GLOB_CHARS = re.compile(r"[*?\[]")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass
class Context:
    """Everything a profile may read for one file."""

    snapshot: NexusSnapshot | LazySnapshot
    config: Config
    files: dict[str, Any]
    run: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    wrdn: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Found:
    """A value with the source that gave it and, for NeXus values, the ``units`` attribute."""

    value: Any
    source: str
    unit: str | None = None


@dataclass(frozen=True)
class SourceSpec:
    """One parsed source of a field: ``kind:arg`` plus an optional regex whose group 1 (or 0) is kept."""

    kind: str
    arg: str
    regex: re.Pattern[str] | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.arg}" + (f" =~ /{self.regex.pattern}/" if self.regex else "")


def parse_source(item: Any, where: str) -> SourceSpec:
    """A source from a profile (``"kind:arg"`` or ``{source = "kind:arg", regex = "..."}``)."""
    regex = None
    if isinstance(item, Mapping):
        unknown = set(item) - {"source", "regex"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: source, regex)")
        if "regex" in item:
            try:
                regex = re.compile(str(item["regex"]))
            except re.error as exc:
                raise ValueError(f"{where}: bad regex: {exc}") from None
        item = item.get("source")
    if not isinstance(item, str) or ":" not in item:
        raise ValueError(f"{where}: a source must look like 'kind:argument' (kinds: {', '.join(KINDS)}), not {item!r}")
    kind, arg = item.split(":", 1)
    if kind not in KINDS:
        raise ValueError(f"{where}: unknown source kind '{kind}' (kinds: {', '.join(KINDS)})")
    if kind == "nexus" and not arg.startswith("/"):
        raise ValueError(f"{where}: NeXus paths are absolute, e.g. nexus:/entry/title (got '{arg}')")
    if kind == "file" and arg not in FILE_FACTS:
        raise ValueError(f"{where}: unknown file fact '{arg}' (known: {', '.join(FILE_FACTS)})")
    return SourceSpec(kind, arg, regex)


FILE_FACTS = ("path", "name", "stem", "dir", "size", "mtime", "writer_path")


def resolve(spec: SourceSpec, ctx: Context) -> list[Found]:
    """Every candidate value of one source (a NeXus glob can give several), empties dropped."""
    found = _raw(spec, ctx)
    out: list[Found] = []
    for item in found:
        value = item.value
        if spec.regex is not None:
            if not isinstance(value, (str, int, float)):
                continue
            match = spec.regex.search(str(value))
            if not match:
                continue
            value = match.group(1) if match.groups() else match.group(0)
        if _empty(value):
            continue
        out.append(Found(value, spec.label if spec.regex else item.source, item.unit))
    return out


def _raw(spec: SourceSpec, ctx: Context) -> list[Found]:
    kind, arg = spec.kind, spec.arg
    if kind == "value":
        return [Found(arg, f"value:{arg}")]
    if kind == "nexus":
        paths = ctx.snapshot.glob(arg.split("@")[0]) if _GLOB_CHARS.search(arg.split("@")[0]) else [arg.split("@")[0]]
        attr = arg.partition("@")[2]
        out = []
        for path in paths:
            value = ctx.snapshot.value(f"{path}@{attr}" if attr else path)
            node = ctx.snapshot.get(path)
            unit = node.units if node is not None and not attr else None
            out.append(Found(value, f"nexus:{path}{'@' + attr if attr else ''}", unit))
        return out
    if kind == "run":
        return [Found(ctx.run.get(arg), f"run:{arg}")]
    if kind == "metadata":
        return [Found(_dig(ctx.metadata, arg), f"metadata:{arg}")]
    if kind == "wrdn":
        return [Found(_dig(ctx.wrdn, arg), f"wrdn:{arg}")]
    if kind == "file":
        return [Found(ctx.files.get(arg), f"file:{arg}")]
    if kind == "config":
        return [Found(config_value(ctx.config, arg), f"config:{arg}")]
    return []


def config_value(cfg: Config, dotted: str) -> Any:
    """``defaults.contactEmail`` or ``ingest.source_folder_host``; secrets are never readable."""
    table, _, key = dotted.partition(".")
    if table == "defaults":
        return cfg.defaults.get(key)
    if table == "kafka":
        return None
    section = getattr(cfg, table, None)
    if section is None or isinstance(section, (str, dict)) or not key:
        return None
    value = getattr(section, key, None)
    return None if isinstance(value, SecretStr) else value


def _dig(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if isinstance(data, Mapping):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (
        isinstance(value, (list, dict)) and not value)


def convert(value: Any, kind: str, *, timezone: str = "UTC", join: str | None = None) -> Any:
    """``value`` as ``kind``, or ``None`` when it cannot be (the next candidate is then tried)."""
    if kind == "list":
        items = value if isinstance(value, list) else [value]
        return [str(v).strip() for v in items if not _empty(v)] or None
    if isinstance(value, list):
        if join is not None and kind == "str":
            parts = [str(v).strip() for v in value if not _empty(v)]
            return join.join(parts) if parts else None
        value = next((v for v in value if not _empty(v)), None)
        if value is None:
            return None
    if kind == "str":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(value).strip() if not isinstance(value, dict) else None
    if kind == "int":
        return _to_int(value)
    if kind == "float":
        try:
            return float(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            return None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        return True if text in ("1", "true", "yes") else False if text in ("0", "false", "no") else None
    if kind == "time":
        return to_iso(value, timezone)
    return value


def _to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def to_iso(value: Any, timezone: str = "UTC") -> str | None:
    """An ISO-8601 UTC time (``...Z``) from an ISO text or ms since the epoch; naive times are in ``timezone``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if value <= 0:
            return None
        try:
            moment = _EPOCH + dt.timedelta(milliseconds=value)  # exact for integer ms, unlike value / 1000
        except (OverflowError, OSError, ValueError):
            return None
    else:
        text = str(value).strip()
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zoneinfo.ZoneInfo(timezone))
    moment = moment.astimezone(dt.timezone.utc)
    text = moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")
