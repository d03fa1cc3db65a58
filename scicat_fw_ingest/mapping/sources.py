"""Where a mapped value can come from, and how a candidate value is turned into the wanted type.

A source is written ``kind:argument`` (``nexus:/entry/title``, ``metadata:proposal.id``, ``file:dir``);
a field lists several and the first one that yields a usable value wins. Every resolved value
carries the source it came from, so ``--explain`` can show it and an operator can fix a profile
without reading code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import Config, SecretStr
from ..nexus.reader import LazySnapshot, NexusSnapshot
from ._paths import dig
from ._times import TimeParseError, format_utc, parse_time

if TYPE_CHECKING:
    from ._lookups import ScicatLookup

KINDS = ("nexus", "run", "metadata", "wrdn", "config", "file", "value", "scicat")
#: ``nexus:PATH#fact``: facts of a dataset read from its shape, never from its data.
SHAPE_FACTS = ("size", "len", "shape")
TYPES = ("str", "int", "float", "bool", "time", "list")
_GLOB_CHARS = re.compile(r"[*?\[{]")


@dataclass
class Context:
    """Everything a profile may read for one file."""

    snapshot: NexusSnapshot | LazySnapshot
    config: Config
    files: dict[str, Any]
    run: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    wrdn: dict[str, Any] = field(default_factory=dict)
    #: SciCat lookups (``scicat:`` sources); ``None`` when there is no SciCat to ask.
    lookup: ScicatLookup | None = None
    #: The profile's entry group (``{entry}`` in NeXus paths), set when a profile is picked.
    entry: str | None = None
    #: What ``scicat:`` lookups are keyed on: proposal id, instrument name, sample id/name.
    keys: dict[str, Any] = field(default_factory=dict)
    #: Values present but unusable (an unparseable time ...) and the fields that skipped them.
    problems: dict[str, list[str]] = field(default_factory=dict)
    #: Fields whose time was written without a zone (read in the profile's or the assumed zone).
    naive_times: list[str] = field(default_factory=list)
    #: Why the profile was chosen (set by ``pick_profile``).
    profile_reason: str = ""

    def warn(self, problem: str, where: str = "") -> None:
        fields = self.problems.setdefault(problem, [])
        if where and where not in fields:
            fields.append(where)

    @property
    def warnings(self) -> list[str]:
        """One line per unusable value, naming the fields that skipped it: shown by --explain and logged."""
        return [f"{problem} (for {', '.join(fields)}); skipped" if fields else problem
                for problem, fields in self.problems.items()]


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
    if kind == "nexus":
        if not (arg.startswith("/") or arg.startswith("{entry}")):
            raise ValueError(f"{where}: NeXus paths are absolute, e.g. nexus:/entry/title or "
                             f"nexus:{{entry}}/title (got '{arg}')")
        fact = arg.partition("#")[2]
        if "#" in arg and fact not in SHAPE_FACTS:
            known = ", ".join("#" + f for f in SHAPE_FACTS)
            raise ValueError(f"{where}: unknown shape fact '#{fact}' (known: {known})")
    if kind == "scicat":
        what, _, name = arg.partition(".")
        if what not in SCICAT_RECORDS or not name:
            raise ValueError(f"{where}: a SciCat lookup is 'scicat:proposal.<field>', 'scicat:instrument.<field>' "
                             f"or 'scicat:sample.<field>' (got '{arg}')")
    if kind == "file" and arg not in FILE_FACTS:
        raise ValueError(f"{where}: unknown file fact '{arg}' (known: {', '.join(FILE_FACTS)})")
    return SourceSpec(kind, arg, regex)


FILE_FACTS = ("path", "name", "stem", "dir", "size", "mtime", "writer_path")
SCICAT_RECORDS = ("proposal", "instrument", "sample")


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
        return _nexus(arg, ctx)
    if kind == "scicat":
        if ctx.lookup is None:
            return []
        record, _, name = arg.partition(".")
        value, request, problem = ctx.lookup.field(record, name, ctx.keys.get(record))
        if problem:
            ctx.warn(f"scicat:{arg}: SciCat {problem}")
        return [Found(value, f"scicat:{arg} ({request})")] if request else []
    if kind == "run":
        return [Found(ctx.run.get(arg), f"run:{arg}")]
    if kind == "metadata":
        return [Found(dig(ctx.metadata, arg), f"metadata:{arg}")]
    if kind == "wrdn":
        return [Found(dig(ctx.wrdn, arg), f"wrdn:{arg}")]
    if kind == "file":
        return [Found(ctx.files.get(arg), f"file:{arg}")]
    if kind == "config":
        return [Found(config_value(ctx.config, arg), f"config:{arg}")]
    return []


def _nexus(arg: str, ctx: Context) -> list[Found]:
    """``/path``, ``/path@attr``, ``/path#size``; ``{entry}`` is the profile's entry, ``{NXclass}`` a class."""
    arg, _, fact = arg.partition("#")
    if arg.startswith("{entry}"):
        if ctx.entry is None:
            return []
        arg = ctx.entry.rstrip("/") + arg[len("{entry}"):]
    base, _, attr = arg.partition("@")
    paths = ctx.snapshot.glob(base) if _GLOB_CHARS.search(base) else [base]
    out = []
    for path in paths:
        node = ctx.snapshot.get(path)
        label = f"nexus:{path}{'@' + attr if attr else ''}"
        if fact:
            if node is None or node.shape is None:
                continue
            shape = list(node.shape)
            value: Any = shape if fact == "shape" else (shape[0] if shape else 1) if fact == "len" else node.size
            out.append(Found(value, f"{label}#{fact}"))
            continue
        value = ctx.snapshot.value(f"{path}@{attr}" if attr else path)
        unit = node.units if node is not None and not attr else None
        out.append(Found(value, label, unit))
    return out


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


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (
        isinstance(value, (list, dict)) and not value)


def convert(value: Any, kind: str, *, timezone: str = "UTC", join: str | None = None, unit: str | None = None) -> Any:
    """``value`` as ``kind``, or ``None`` when it cannot be (the next candidate is then tried)."""
    if kind == "list":
        items = value if isinstance(value, list) else [value]
        return [str(v).strip() for v in items if not _empty(v)] or None
    if isinstance(value, list):
        if join is not None and kind in ("str", "auto"):
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
        return to_iso(value, timezone, unit)
    return value


def conversion_problem(value: Any, kind: str, *, timezone: str = "UTC", unit: str | None = None) -> str:
    """Why ``value`` is no ``kind`` (for the warning shown when a present value is unusable)."""
    if kind == "time":
        try:
            parse_time(value if not isinstance(value, list) else next(iter(value), None), timezone, unit)
        except TimeParseError as exc:
            return str(exc)
        return f"{value!r} is not a time"
    return f"{value!r} is not a valid {kind}"


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


def to_iso(value: Any, timezone: str = "UTC", unit: str | None = None) -> str | None:
    """An ISO-8601 UTC time (``...Z``) from any time form ``_times.parse_time`` reads, else ``None``.

    Numbers are since the epoch in ``unit`` (ms without one); naive times are in ``timezone``.
    """
    try:
        moment = parse_time(value, timezone, unit)
    except TimeParseError:
        return None
    return format_utc(moment) if moment is not None else None
