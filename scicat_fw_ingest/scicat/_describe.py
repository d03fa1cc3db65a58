"""How a failed request reads in one line: the cause, without a token, a query or a password in it.

Split from ``_transport`` (which keeps the sending and the token) so each stays short.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from ..config import masked_url


def maybe_sent(exc: requests.RequestException) -> bool:
    """False only when the request surely never reached the server (refused, connect timeout)."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return not isinstance(reason, (NewConnectionError, ConnectTimeoutError))


def describe(exc: requests.RequestException, timeout: float, url: str) -> str:
    split = urlsplit(url)
    host = f"{split.hostname}:{split.port or (443 if split.scheme == 'https' else 80)}"
    if isinstance(exc, requests.Timeout):
        return f"no answer from {host} within {timeout:g} s"
    reason: Any = exc
    for _ in range(12):  # the chain is short; the bound only guards against a cycle
        if reason is None:
            break  # the innermost OS error reads best ("Connection refused")
        if isinstance(reason, OSError) and reason.strerror:
            return f"cannot connect to {host}: {reason.strerror}"
        nxt = getattr(reason, "reason", None) or reason.__cause__ or reason.__context__
        if nxt is None and reason.args and isinstance(reason.args[0], BaseException):
            nxt = reason.args[0]
        reason = nxt if nxt is not reason else None
    if isinstance(exc, requests.ConnectionError):
        return f"connection to {host} failed or was closed without an answer"
    return f"request to {host} failed ({type(exc).__name__})"


def server_message(resp: requests.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text.strip().replace("\n", " ")[:200]
    message = data.get("message", data) if isinstance(data, dict) else data
    if isinstance(message, list):
        return "; ".join(str(m) for m in message)
    return str(message)[:300]


def retry_after_seconds(value: str) -> float | None:
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def url_path(url: str) -> str:
    return urlsplit(url).path


def safe_url(url: str) -> str:
    """The URL as shown in errors and reprs: ``config.masked_url`` (credentials, query dropped; port kept)."""
    return masked_url(url)
