"""Dotted-path reading of nested JSON-like data.

One reader shared by the file-metadata and wrdn sources (`sources`) and the SciCat lookups (`_lookups`), kept in its
own module so that neither has to import the other for it (they used to, in a circle).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def dig(data: Any, dotted: str) -> Any:
    """The value at ``dotted`` ("a.b.0.c": mapping keys and list indices) in ``data``, or ``None`` when absent.

    Missing keys, out-of-range indices and non-container steps all give ``None``, so a mapping candidate that is not
    there simply falls through to the next one.
    """
    for part in dotted.split("."):
        if isinstance(data, Mapping):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data
