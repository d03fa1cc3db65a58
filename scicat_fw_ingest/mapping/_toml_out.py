"""Write a profile as TOML text (the standard library reads TOML but does not write it).

Only what profiles hold: strings, numbers, booleans, lists and one inline table per field.
"""

from __future__ import annotations

import json
import re
from typing import Any


def profile_toml(head: dict[str, Any], fields: dict[str, dict[str, Any]], scientific: dict[str, dict[str, Any]],
                 comments: list[str]) -> str:
    """``[profile]``, ``[fields]`` and ``[scientific]`` tables, each field an inline table, comments on top."""
    lines = [f"# {line}" for line in comments]
    lines += ["", "[profile]"]
    lines += [f"{key} = {_value(value)}" for key, value in head.items()]
    for title, table in (("fields", fields), ("scientific", scientific)):
        lines += ["", f"[{title}]"]
        for key, spec in table.items():
            lines.append(f"{_key(key)} = {{ " + ", ".join(f"{k} = {_value(v)}" for k, v in spec.items()) + " }")
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value: Any) -> str:
    """TOML for a value; JSON's string escapes are valid TOML basic-string escapes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)
