"""The variables of a scicat-ingestor schema (``variables:``) resolved into sfi sources and field options.

Kept apart from `imsc` (which walks the ``schema:`` table and writes the profile) because resolving is the part with
its own rules: NXS paths, SciCat lookups of one record, VALUE templates and operators, built-in variables, and the
upstream mistakes corrected on the way; every construct without an sfi equivalent is noted, never silently dropped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote

_VAR = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>")
#: scicat-ingestor built-in variables and their sfi sources (``None``: no equivalent).
_BUILTINS: dict[str, str | None] = {"data_file_path": "file:path", "data_file_name": "file:name",
                                    "now": "file:mtime", "ingestor_run_id": None,
                                    "ingestor_files_directory": None, "ingestor_metadata_schema_id": None}


@dataclass(frozen=True)
class Src:
    """What a variable becomes: sfi sources plus field options, or a whole SciCat record (for getitem)."""

    sources: tuple[str, ...] = ()
    format: str | None = None
    join: str | None = None
    sum: bool = False
    default: Any = None
    multi: bool = False
    record: str | None = None  # "proposal" | "instrument" | "sample": the whole record (SC field '')


class Converter:
    """One schema's variables, resolved on demand (cached; self-references noted), and the notes made on the way."""

    def __init__(self, data: dict[str, Any], where: str) -> None:
        self.data = data
        self.where = where
        self.variables: dict[str, Any] = data.get("variables") or {}
        self.notes: list[str] = []
        self.instrument_keys: list[tuple[str, ...]] = []
        self.sample_keys: list[tuple[str, ...]] = []
        self.proposal_keys: set[str] = set()
        self._cache: dict[str, Src | None] = {}

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # -- variables -------------------------------------------------------------------------------
    def var(self, name: str, stack: tuple[str, ...] = ()) -> Src | None:
        if name in _BUILTINS and name not in self.variables:
            source = _BUILTINS[name]
            if name == "now":
                self.note("<now> (the ingestion time) becomes file:mtime, when the file was last written: "
                          "the same on every run, so re-ingesting gives the same dataset")
            if source is None:
                self.note(f"<{name}>: scicat-ingestor built-in with no sfi equivalent: left out")
                return None
            return Src((source,))
        if name in stack:
            self.note(f"variables.{name}: refers to itself (upstream mistake): left out")
            return None
        if name in self._cache:
            return self._cache[name]
        spec = self.variables.get(name)
        if not isinstance(spec, dict):
            self.note(f"<{name}>: no such variable: left out")
            self._cache[name] = None
            return None
        result = self._variable(name, spec, (*stack, name))
        self._cache[name] = result
        return result

    def _variable(self, name: str, spec: dict[str, Any], stack: tuple[str, ...]) -> Src | None:
        source = str(spec.get("source", "")).upper()
        multi = str(spec.get("value_type", "")).endswith("[]")
        if source == "NXS":
            path = str(spec.get("path", ""))
            if not path:
                self.note(f"variables.{name}: NXS without a path: left out")
                return None
            if not path.startswith("/"):
                self.note(f"variables.{name}: path '{path}' is not absolute (upstream mistake): read as /{path}")
                path = "/" + path
            return Src((f"nexus:{path}",), multi=multi)
        if source == "SC":
            return self._scicat(name, spec, stack)
        if source == "VALUE":
            return self._value(name, spec, stack, multi)
        self.note(f"variables.{name}: unknown source '{spec.get('source')}': left out")
        return None

    def _scicat(self, name: str, spec: dict[str, Any], stack: tuple[str, ...]) -> Src | None:
        url = unquote(str(spec.get("url", ""))).strip().lstrip("/")
        wanted = spec.get("field", "")
        wanted = "" if wanted is None else str(wanted)
        if wanted.startswith(":"):
            self.note(f"variables.{name}: field '{wanted}' (upstream mistake): read as '{wanted.lstrip(':')}'")
            wanted = wanted.lstrip(":")
        head, _, rest = url.partition("?")
        parts = head.split("/")
        record_kind = {"proposals": "proposal", "instruments": "instrument", "samples": "sample"}.get(parts[0].lower())
        if record_kind is None:
            self.note(f"variables.{name}: SciCat GET '{url}' has no sfi equivalent (scicat: knows proposals, "
                      "instruments, samples): left out")
            return None
        if record_kind == "instrument":
            key = self._instrument_key(name, rest, parts[1] if len(parts) > 1 else None, stack)
            if key is None:
                return None
            self.instrument_keys.append(key)
        elif len(parts) == 2:
            match = _VAR.fullmatch(parts[1])
            if record_kind == "proposal":
                self.proposal_keys.add(match.group(1) if match else parts[1])
            else:
                key_src = self.var(match.group(1), stack) if match else None
                if key_src is None or not key_src.sources:
                    self.note(f"variables.{name}: sample lookup '{url}' needs a sample name from the file: left out")
                    return None
                self.sample_keys.append(key_src.sources)
        else:
            self.note(f"variables.{name}: SciCat GET '{url}' is not one record: left out")
            return None
        if wanted == "":
            return Src(record=record_kind)
        return Src((scicat_source(record_kind, wanted),))

    def _instrument_key(self, name: str, query: str, path_key: str | None,
                        stack: tuple[str, ...]) -> tuple[str, ...] | None:
        """The sources of the instrument name an ``instruments?filter=`` URL selects by."""
        text = path_key or ""
        if query.startswith("filter="):
            try:
                where = json.loads(query[len("filter="):]).get("where", {})
                text = where.get("name", where.get("uniqueName", ""))
                if isinstance(text, dict):
                    text = next(iter(text.values()), "")
            except (ValueError, AttributeError):
                text = ""
        if not isinstance(text, str) or not text:
            self.note(f"variables.{name}: instrument lookup without a name filter: left out")
            return None
        match = _VAR.fullmatch(text)
        if match:
            src = self.var(match.group(1), stack)
            return src.sources if src is not None and src.sources else None
        return (f"value:{text}",)

    def _value(self, name: str, spec: dict[str, Any], stack: tuple[str, ...], multi: bool) -> Src | None:
        value = spec.get("value")
        operator = str(spec.get("operator") or "")
        if isinstance(value, list):
            if operator:
                self.note(f"variables.{name}: operator '{operator}' on a literal list: left out")
            return Src(default=[str(v) for v in value], multi=True)
        base = self.template(str(value if value is not None else ""), f"variables.{name}", stack)
        if base is None or not operator:
            return base
        if operator == "getitem":
            item = spec.get("field")
            if base.record is None:
                self.note(f"variables.{name}: getitem on something that is not a SciCat record: left out")
                return None
            if isinstance(item, int) or str(item).isdigit():
                return base  # the first element of a list of records: the record itself
            return Src((scicat_source(base.record, str(item)),))
        if operator == "join_with_space":
            # Despite its name, scicat-ingestor's operator joins with ", " (scicat_dataset._join_with_space).
            return replace(base, join=", ", multi=False)
        if operator == "sum":
            return replace(base, sum=True, multi=False)
        if operator in ("filename", "dirname") and base.sources == ("file:path",):
            return Src(("file:name" if operator == "filename" else "file:dir",))
        self.note(f"variables.{name}: operator '{operator}' has no sfi equivalent: left out")
        return None

    def template(self, text: str, where: str, stack: tuple[str, ...] = ()) -> Src | None:
        """A ``<var>`` template as sources: a literal, one variable in text (``format``), or first + last name."""
        if "<ingestor_run_id>" in text:
            self.note(f"{where}: <ingestor_run_id> (a new id on every run) is left out of '{text}', "
                      "so that re-ingesting gives the same dataset")
            text = re.sub(r"\s*[-_:/|]?\s*<ingestor_run_id>", "", text).strip()
        names = _VAR.findall(text)
        if not names:
            return Src((f"value:{text}",)) if text else None
        if re.fullmatch(r"<pi_firstname>\s+<pi_lastname>", text):
            first, last = self.var("pi_firstname", stack), self.var("pi_lastname", stack)
            if first and last and first.sources == ("scicat:proposal.pi_firstname",) \
                    and last.sources == ("scicat:proposal.pi_lastname",):
                return Src(("scicat:proposal.pi_name",))
        if len(names) > 1:
            self.note(f"{where}: '{text}' combines several variables; sfi fields take one source: left out")
            return None
        src = self.var(names[0], stack)
        if src is None:
            return None
        outer = text.replace(f"<{names[0]}>", "{value}")
        if outer == "{value}":
            return src
        if src.default is not None or src.record is not None:
            self.note(f"{where}: '{text}' formats a list or record: left out")
            return None
        inner = src.format or "{value}"
        return replace(src, format=outer.replace("{value}", inner))


def scicat_source(record: str, wanted: str) -> str:
    """The sfi source of field ``wanted`` of a SciCat record (an instrument's id is its pid)."""
    if record == "instrument" and wanted in ("id", "_id"):
        wanted = "pid"
    return f"scicat:{record}.{wanted}"
