"""ISIS templates: the static raw layout as a JSON data file, its placeholders, and filling them.

Why a separate module: the template is data an instrument scientist edits; loading, checking and
filling it is independent of how the ICP's structure is merged in (``isis``). Placeholders are
``$NAME`` (the whole string: replaced by a typed value, or a list spliced in) or ``${NAME}`` (inside
text); an unknown value removes the list element that holds it, so a missing value is left out of
the file rather than written empty.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError

SCALAR_PLACEHOLDERS = (
    "INSTRUMENT", "RUN_NUMBER", "TITLE", "EXPERIMENT_IDENTIFIER", "RUN_NAME", "JOB_ID", "FILENAME",
    "EVENTS_TOPIC", "SAMPLE_ENV_TOPIC", "RUNLOG_TOPIC", "MONITOR_TOPIC",
)
SPLICE_PLACEHOLDERS = ("SAMPLE_ENV", "RUNLOG", "MONITORS")

BUILTIN_TEMPLATE = "isis_default.json"

_TOKEN = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Z][A-Z0-9_]*[A-Z0-9]|[A-Z])")
_WHOLE = re.compile(r"\$\{?([A-Z][A-Z0-9_]*)\}?")
_DROP = object()


def load_template(instrument: str, template_dir: str | Path | None = None) -> tuple[dict[str, Any], str]:
    """The template for ``instrument`` and where it came from.

    ``<template_dir>/<INSTRUMENT>.json``, else ``<template_dir>/default.json``, else the built-in.
    """
    if template_dir is not None:
        folder = Path(template_dir)
        if not folder.is_dir():
            raise ConfigError(f"[isis] template_dir {folder}: not a directory")
        for candidate in (folder / f"{instrument}.json", folder / "default.json"):
            if candidate.is_file():
                return parse_template(_read_text(candidate), str(candidate)), str(candidate)
    text = resources.files("scicat_fw_ingest").joinpath("templates", BUILTIN_TEMPLATE).read_text("utf-8")
    return parse_template(text, f"built-in {BUILTIN_TEMPLATE}"), f"built-in {BUILTIN_TEMPLATE}"


def _read_text(path: Path) -> str:
    try:
        return path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"template {path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None


def parse_template(text: str, source: str) -> dict[str, Any]:
    """A template from its JSON text, checked: an object, only known placeholders, splices in lists."""
    try:
        template = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"template {source}: not valid JSON: {exc}") from None
    if not isinstance(template, dict):
        raise ConfigError(f"template {source}: must be a JSON object with 'children', not {type(template).__name__}")
    _check_placeholders(template, source, in_list=False)
    return template


def _check_placeholders(node: Any, source: str, *, in_list: bool) -> None:
    if isinstance(node, dict):
        for value in node.values():
            _check_placeholders(value, source, in_list=False)
    elif isinstance(node, list):
        for item in node:
            _check_placeholders(item, source, in_list=True)
    elif isinstance(node, str):
        whole = _WHOLE.fullmatch(node)
        if whole and whole.group(1) in SPLICE_PLACEHOLDERS:
            if not in_list:
                raise ConfigError(f"template {source}: '{node}' may only be an element of a list")
            return
        for match in _TOKEN.finditer(node):
            name = match.group(1) or match.group(2)
            if name is None:
                continue
            if name in SPLICE_PLACEHOLDERS:
                raise ConfigError(f"template {source}: '{node}': ${name} may only be a whole element of a list")
            if name not in SCALAR_PLACEHOLDERS:
                known = ", ".join(SCALAR_PLACEHOLDERS + SPLICE_PLACEHOLDERS)
                raise ConfigError(f"template {source}: unknown placeholder ${name} in '{node}' (known: {known})")


def fill_template(template: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A filled copy of ``template``: scalars substituted, splices expanded, unknown values dropped."""
    filled = _fill(copy.deepcopy(dict(template)), values)
    if filled is _DROP:
        return {}
    return filled  # type: ignore[no-any-return]


def _fill(node: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            result = _fill(value, values)
            if result is _DROP:
                return _DROP
            out[key] = result
        return out
    if isinstance(node, list):
        items: list[Any] = []
        for item in node:
            whole = _WHOLE.fullmatch(item) if isinstance(item, str) else None
            if whole and whole.group(1) in SPLICE_PLACEHOLDERS:
                items.extend(copy.deepcopy(values.get(whole.group(1)) or []))
                continue
            result = _fill(item, values)
            if result is not _DROP:
                items.append(result)
        return items
    if isinstance(node, str) and "$" in node:
        whole = _WHOLE.fullmatch(node)
        if whole and whole.group(1) in values and node in (f"${whole.group(1)}", f"${{{whole.group(1)}}}"):
            value = values[whole.group(1)]
            return _DROP if value is None else value
        missing = False

        def replace(match: re.Match[str]) -> str:
            nonlocal missing
            name = match.group(1) or match.group(2)
            if name is None:
                return "$"
            value = values.get(name)
            if value is None:
                missing = True
                return ""
            return str(value)

        text = _TOKEN.sub(replace, node)
        return _DROP if missing else text
    return node
