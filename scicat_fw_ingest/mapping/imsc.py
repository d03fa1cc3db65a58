"""Convert scicat-ingestor metadata schemas (``*.imsc.yml``) into sfi TOML profiles.

Why convert rather than read them directly: a facility moving from scicat-ingestor gets a profile it
can read, diff and keep editing in one format, and every construct that has no sfi equivalent is
reported once, at conversion, instead of being silently ignored on every file. The mapping:
NXS variables become ``nexus:`` sources, SC lookups of ``proposals/<id>`` and ``instruments?filter``
become ``scicat:proposal.<field>`` and ``scicat:instrument.pid``, VALUE templates and operators
become field options (``format``, ``join``, ``sum``, ``default``). Known upstream mistakes
(``field: :pi_lastname``, ``value: instrument_id`` without ``<>``, a ``location`` field) are reported
and, where the intent is plain, corrected.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ._imsc_variables import Converter, Src
from ._toml_out import profile_toml
from .profile import DATASET_FIELDS, RESERVED, ProfileError, build_profile

_TYPES = {"date": "time", "datetime": "time", "integer": "int", "int": "int", "float": "float", "string": "str",
          "email": "str", "link": "str", "string[]": "list", "integer[]": "list", "float[]": "list",
          "boolean": "bool", "bool": "bool"}


class SchemaError(ProfileError):
    """A schema file that is no scicat-ingestor schema at all (not YAML, no ``schema`` table)."""


@dataclass
class Conversion:
    """One converted schema: the profile's name, its TOML text and the lines that could not be converted."""

    name: str
    toml: str
    notes: list[str] = field(default_factory=list)


def read_schema(path: Path) -> dict[str, Any]:
    """The YAML of one ``*.imsc.yml`` file (PyYAML's safe loader), as a mapping."""
    import yaml  # only `sfi profile import` needs it

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise SchemaError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("schema"), dict):
        raise SchemaError(f"{path}: not a scicat-ingestor metadata schema (no 'schema' table)")
    return data


def profile_name(path: Path) -> str:
    name = path.name
    for suffix in (".imsc.yml", ".imsc.yaml", ".yml", ".yaml", ".example"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "imported"


def convert_schema(data: dict[str, Any], name: str, origin: str) -> Conversion:
    """The sfi profile for one parsed schema; raises ``ProfileError`` only if the result would not load."""
    conv = Converter(data, origin)
    fields: dict[str, dict[str, Any]] = {}
    scientific: dict[str, dict[str, Any]] = {}
    pid_prefix: str | None = None
    for key, entry in (data.get("schema") or {}).items():
        if not isinstance(entry, dict):
            conv.note(f"schema.{key}: not a table: left out")
            continue
        machine = str(entry.get("machine_name") or key)
        kind = str(entry.get("field_type", "high_level"))
        raw_value = entry.get("value")
        if isinstance(raw_value, str) and raw_value in conv.variables and "<" not in raw_value:
            conv.note(f"schema.{key}: value '{raw_value}' names a variable without <...> (upstream mistake): "
                      f"read as <{raw_value}>")
            raw_value = f"<{raw_value}>"
        if kind == "high_level":
            if machine == "type":
                if str(raw_value) != "raw":
                    conv.note(f"schema.{key}: type '{raw_value}': sfi ingests raw datasets only")
                continue
            if machine == "sourceFolder":
                conv.note(f"schema.{key}: sourceFolder is set by sfi (the file's directory after [ingest] path_map)")
                continue
            if machine in RESERVED:
                conv.note(f"schema.{key}: {machine} is set by sfi itself: left out")
                continue
            if machine not in DATASET_FIELDS:
                conv.note(f"schema.{key}: '{machine}' is not a SciCat dataset field (upstream mistake?): left out")
                continue
        elif kind != "scientific_metadata":
            conv.note(f"schema.{key}: field_type '{kind}' unknown: left out")
            continue
        src = (Src(default=[str(v) for v in raw_value], multi=True) if isinstance(raw_value, list)
               else conv.template(str(raw_value if raw_value is not None else ""), f"schema.{key}"))
        if src is None or (not src.sources and src.default is None):
            if src is not None and src.record is not None:
                conv.note(f"schema.{key}: a whole SciCat record is no field value: left out")
            continue
        if machine == "pid" and kind == "high_level" and src.format and src.format.endswith("{value}") \
                and src.format.count("{value}") == 1:
            pid_prefix = src.format[: -len("{value}")]
            src = replace(src, format=None)
        table: dict[str, Any] = {}
        if src.sources:
            table["from"] = list(src.sources)
        if src.default is not None:
            table["default"] = src.default
        for option in ("format", "join"):
            if getattr(src, option):
                table[option] = getattr(src, option)
        if src.sum:
            table["sum"] = True
        wanted = _TYPES.get(str(entry.get("type", "")).lower())
        if kind == "high_level":
            if DATASET_FIELDS[machine] == "list" and "from" in table:
                table["type"] = "list"
            if machine in fields:
                conv.note(f"schema.{key}: {machine} is set twice: the first one is kept")
                continue
            fields[machine] = table
        else:
            if wanted and wanted != "str":
                table["type"] = wanted
            if entry.get("type"):
                table["type_name"] = str(entry["type"])  # scicat-ingestor stores it in each entry
            if entry.get("unit"):
                table["unit"] = str(entry["unit"])
            if entry.get("human_name"):
                table["human_name"] = str(entry["human_name"])
            scientific[machine] = table
    _proposal_key(conv, fields)
    head = _head(conv, data, name, origin, fields)
    if pid_prefix:
        conv.note(f"pid: the prefix '{pid_prefix}' goes to the config: [ingest] pid_prefix = \"{pid_prefix}\" "
                  "(sfi prefixes every pid it makes)")
    text = profile_toml(head, fields, scientific,
                        [f"Converted by `sfi profile import` from {origin}."] + [f"note: {n}" for n in conv.notes])
    try:
        build_profile(name, f"profile converted from {origin}", tomllib.loads(text))
    except (ProfileError, tomllib.TOMLDecodeError) as exc:  # a converter bug: never write a broken profile
        raise ProfileError(f"{origin}: the converted profile does not load: {exc}") from None
    return Conversion(name, text, conv.notes)


def _proposal_key(conv: Converter, fields: dict[str, dict[str, Any]]) -> None:
    """scicat:proposal lookups are keyed on the profile's proposalId: make sure it is the schema's key."""
    for key in sorted(conv.proposal_keys):
        src = conv.var(key)
        if src is None or not src.sources:
            continue
        if "proposalId" not in fields:
            fields["proposalId"] = {"from": list(src.sources)}
            conv.note(f"proposalId added from <{key}>: sfi looks proposals up by the dataset's proposalId")
        elif fields["proposalId"].get("from") != list(src.sources):
            conv.note(f"proposals/<{key}>: sfi looks proposals up by the dataset's proposalId, not by <{key}>")


def _head(conv: Converter, data: dict[str, Any], name: str, origin: str,
          fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    head: dict[str, Any] = {"name": name,
                            "description": f"converted from scicat-ingestor schema '{data.get('name', name)}'"}
    paths = _selector(data.get("selector", "*"), conv)
    if paths is not None:
        if paths:
            head["paths"] = paths
    else:
        head["paths"] = ["<selector not converted: use --profile>"]
    roots = {s.split(":", 1)[1].split("/")[1] for table in fields.values() for s in table.get("from", [])
             if s.startswith("nexus:/") and s.count("/") >= 2}
    if len(roots) == 1:
        head["requires"] = ["/" + roots.pop()]
    if conv.instrument_keys:
        keys = conv.instrument_keys[0]
        if any(k != keys for k in conv.instrument_keys):
            conv.note("several instrument lookups with different names: the first one is used")
        head["instrument"] = list(keys)
    if conv.sample_keys:
        head["sample"] = list(conv.sample_keys[0])
    if data.get("order") is not None:
        conv.note(f"order {data['order']}: sfi tries profile files in the order of their names, ahead of the "
                  "built-in ones; rename the file to change it")
    for key in sorted(set(data) - {"id", "name", "instrument", "order", "selector", "variables", "schema"}):
        conv.note(f"{key}: no sfi equivalent: left out")
    return head


def _selector(selector: Any, conv: Converter) -> list[str] | None:
    """Path globs for a ``filename:`` selector (``[]``: any file), ``None`` when it cannot be expressed."""
    if selector in ("*", None, ""):
        return []
    if isinstance(selector, str):
        kind, _, arg = selector.partition(":")
        how, _, text = arg.partition(":")
        if kind == "filename" and how in ("starts_with", "contains", "ends_with") and text:
            return [{"starts_with": f"{text}*", "contains": f"*{text}*", "ends_with": f"*{text}"}[how]]
    if isinstance(selector, dict) and list(selector) == ["or"] and isinstance(selector["or"], list):
        out: list[str] = []
        for item in selector["or"]:
            globs = _selector(item, conv)
            if not globs:
                break
            out += globs
        else:
            return out
    conv.note(f"selector {json.dumps(selector)}: not expressible as path globs; the profile is used only with "
              "--profile")
    return None
