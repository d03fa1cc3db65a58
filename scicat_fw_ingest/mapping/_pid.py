"""Whether a value from a pid source is a well-formed identifier (``mapping.dataset`` picks the pid's source).

Why apart: the rule is pure and self-contained (text, length, shape, UUID when promised), and the dataset
assembly reads better without it.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

#: The longest pid sfi accepts from a source: SciCat puts pids in URLs, and a longer value is a blob,
#: not an identifier.
PID_MAX_LENGTH = 200
_PID_SHAPE = re.compile(r"[^\s\x00-\x1f\x7f]+")


def pid_candidate(value: Any, *, expect_uuid: bool) -> tuple[str | None, str]:
    """``(identifier, "")`` when ``value`` is a well-formed identifier, else ``(None, why not)``.

    Well-formed: text (or a whole integer), one token of printable characters, 1..PID_MAX_LENGTH long;
    a UUID in any form ``uuid.UUID`` reads when ``expect_uuid``. A one-element array holding such a
    value counts (writers store strings that way); any other array is refused whole.
    """
    if isinstance(value, list):
        if len(value) != 1:
            return None, f"an array of {len(value)} values ({_clip(value)})"
        value = value[0]
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return None, "bytes that are not UTF-8 text"
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None, f"a {type(value).__name__} ({_clip(value)})"
    text = str(value).strip()
    if not text:
        return None, "empty"
    if len(text) > PID_MAX_LENGTH:
        return None, f"{len(text)} characters long (at most {PID_MAX_LENGTH})"
    if not _PID_SHAPE.fullmatch(text):
        return None, f"{_clip(text)} holds spaces or control characters"
    if expect_uuid:
        try:
            uuid.UUID(text)
        except ValueError:
            return None, f"{_clip(text)} is not a UUID"
    return text, ""


def _clip(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = ["PID_MAX_LENGTH", "pid_candidate"]
