"""Make a dataset payload valid for the backend before it leaves, and say what was changed.

Why: a ``""`` key in scientificMetadata crashes the 4.5.0 backend process (5.1.0 stores it), and
``runNumber``/``proposalId`` must be strings (a number is a 400 for every file). Run-start metadata
comes from the file writer's JSON, so these arrive at run time; dropping or converting them here, with
a warning naming the file, keeps one bad run start from taking SciCat down or failing a whole run.
"""

from __future__ import annotations

from typing import Any

#: fields the backend wants as strings; a number from a profile or run start is sent as its text
STRING_FIELDS = ("runNumber", "proposalId", "sampleId", "instrumentId")


def sanitize_dataset(dataset: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of ``dataset`` the backend accepts, and one warning per change (naming the source folder)."""
    out = dict(dataset)
    warnings: list[str] = []
    where = f"dataset {out.get('pid') or out.get('sourceFolder') or '(no pid)'}"
    meta = out.get("scientificMetadata")
    if isinstance(meta, dict):
        dropped: list[str] = []
        out["scientificMetadata"] = _drop_empty_keys(meta, "", dropped)
        for key in dropped:
            warnings.append(f"{where}: scientificMetadata key {key!r} dropped: an empty key crashes SciCat 4.5.0")
    for name in STRING_FIELDS:
        value = out.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return out, warnings


def _drop_empty_keys(value: dict[str, Any], prefix: str, dropped: list[str]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, item in value.items():
        if key == "":
            dropped.append(prefix + str(key))
            continue
        clean[key] = _drop_empty_keys(item, f"{prefix}{key}.", dropped) if isinstance(item, dict) else item
    return clean
