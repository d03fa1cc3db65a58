"""Secrets and their masking: ``SecretStr``, which librdkafka keys are secret, and URLs without their passwords.

Why apart from the config loader: the log filter, the SciCat client and error messages need the masking rules
without the loading and precedence machinery, and one module holding every "what is a secret and how it prints"
rule keeps those in step. ``scicat_fw_ingest.config`` re-exports every name here.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

MASK = "***"

#: librdkafka property names whose values are secrets (matched as substrings).
_SECRET_KAFKA_KEYS = ("password", "secret", "sasl.oauthbearer.config", "ssl.key.pem", "ssl_key", "token")


class SecretStr:
    """A string that prints as ``***``; call ``get_secret_value()`` where the real value is needed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"SecretStr('{MASK}')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def is_secret_kafka_key(key: str) -> bool:
    """Whether a librdkafka property holds a secret (``sasl.password``, ``ssl.key.pem``, ...): never shown."""
    return any(part in key.lower() for part in _SECRET_KAFKA_KEYS)


def masked_value(value: Any) -> Any:
    """A configuration value as it may be shown: ``SecretStr`` as ``***``, URL passwords masked, lists item by item."""
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, str):
        return mask_url_credentials(value)
    if isinstance(value, list):
        return [masked_value(v) for v in value]
    return value


_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/\s@:]*):([^/\s@]*)@")


def mask_url_credentials(text: str) -> str:
    """``https://user:secret@host`` -> ``https://user:***@host`` wherever a URL appears in ``text``."""
    return _URL_USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}:{MASK}@", text)


def masked_url(url: str) -> str:
    """The URL without any user:password@ part, query or fragment; host and port kept as written.

    Why from ``netloc``: ``hostname``/``port`` lower-case the host, drop IPv6 brackets and raise on a
    bad port, and an error about a URL must show the URL the operator wrote, minus its secrets.
    """
    split = urlsplit(url)
    if not split.scheme or not split.netloc:  # "user:pw@host/x" parses as scheme "user": keep no part before "@"
        return url.split("?")[0].split("#")[0].rpartition("@")[2]
    return f"{split.scheme}://{split.netloc.rpartition('@')[2]}{split.path}"
