"""Logging for the long-running commands: readable lines on a terminal, JSON lines for log shippers.

Why one module: every line sfi logs — from the main process, its worker processes (records travel
over a queue to the parent, see ``worker_logging``), librdkafka or urllib3 — goes through one
formatter, so ``--log-format json`` gives JSON on every line, a control character in a file name
cannot forge a line, and no secret (configured token/password, URL password, a token a server
echoes back, URL-encoded or not) reaches the log.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import re
import sys
import threading
import time
from typing import Any
from urllib.parse import quote, quote_plus

from .config import MASK, mask_url_credentials

#: Token-shaped strings scrubbed whatever their origin: JWTs, ``access_token=...``, bearer headers.
_TOKEN_PATTERNS = (
    re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    re.compile(r"(?i)(\b(?:access_?token|token|password|secret|authorization)(?:\"|%22)?\s*(?:=|:|%3A)\s*"
               r"(?:\"|%22)?)([A-Za-z0-9_\-.~+/%]{12,})"),
    re.compile(r"(?i)(bearer(?:\s|%20|\+)+)([A-Za-z0-9_\-.~+/=%]{12,})"),
    # SciCat v3 access tokens: 64 letters and digits in mixed case (a hex checksum is lower case only)
    re.compile(r"(?<![A-Za-z0-9])(?=[A-Za-z0-9]*[A-Z])(?=[A-Za-z0-9]*[a-z])[A-Za-z0-9]{64}(?![A-Za-z0-9])"),
)
#: The longest message (and traceback) text a log line carries: a 1 MB run start named in a message must not
#: make a 1 MB log line. Longer text keeps its head, then says how long it was and its sha256 (to match it).
MAX_MESSAGE_CHARS = 3072
MAX_TRACEBACK_CHARS = 3072
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """A configured secret: removed from every log line and stored error, also in its URL-encoded forms."""
    if not value or len(value) < 4:
        return  # too short to scrub without mangling ordinary words; such a secret is no secret anyway
    with _secrets_lock:
        _secrets.update({value, quote(value, safe=""), quote_plus(value)})


def register_config_secrets(cfg: Any) -> None:
    for secret in (cfg.scicat.token, cfg.scicat.password):
        if secret is not None:
            register_secret(secret.get_secret_value())
    from .config import is_secret_kafka_key

    for key, value in cfg.kafka.items():
        if is_secret_kafka_key(key):
            register_secret(str(value))


def scrub(text: str) -> str:
    """``text`` without secrets: configured ones, URL passwords and token-like strings become ``***``."""
    with _secrets_lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    text = mask_url_credentials(text)
    text = _TOKEN_PATTERNS[0].sub(MASK, text)
    text = _TOKEN_PATTERNS[1].sub(lambda m: m.group(1) + MASK, text)
    text = _TOKEN_PATTERNS[2].sub(lambda m: m.group(1) + MASK, text)
    return _TOKEN_PATTERNS[3].sub(MASK, text)


def escape_controls(text: str) -> str:
    """Control characters as visible escapes: a newline in a file name cannot start a forged log line."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


def bounded(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was and its sha256 when cut."""
    if len(text) <= limit:
        return text
    import hashlib

    digest = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]
    return f"{text[:limit]}… [cut: {len(text)} chars, sha256 {digest}]"


def safe_message(record: logging.LogRecord) -> str:
    try:
        message = record.getMessage()
    except Exception as exc:  # a bad format string must not lose the line
        message = f"{record.msg!r} (unformattable: {exc})"
    return bounded(escape_controls(scrub(message)))


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": safe_message(record),
        }
        if record.processName and record.processName != "MainProcess":
            entry["process"] = record.processName  # a worker process (its record came over the log queue)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = bounded(scrub(record.exc_text), MAX_TRACEBACK_CHARS)
        return json.dumps(entry, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        record.message = safe_message(record)
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:  # a traceback keeps its lines (indented: no line of it looks like a log line)
            shown = bounded(scrub(record.exc_text), MAX_TRACEBACK_CHARS)
            line += "\n" + "\n".join("    " + part for part in shown.splitlines())
        return line


def level_from_flags(verbose: int = 0, quiet: int = 0, level: str | None = None) -> int:
    """``--log-level`` wins; else INFO, one step down per ``-v`` and up per ``-q``."""
    if level:
        value = logging.getLevelName(level.upper())
        if not isinstance(value, int):
            from .errors import ConfigError

            raise ConfigError(f"--log-level {level}: must be one of debug, info, warning, error, critical")
        return value
    return max(logging.DEBUG, min(logging.CRITICAL, logging.INFO + 10 * (quiet - verbose)))


def setup_logging(fmt: str = "text", level: int = logging.INFO) -> None:
    """One stderr handler on the root logger: sfi's loggers at ``level``, libraries at WARNING (or ``level``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.WARNING))
    sfi = logging.getLogger("sfi")
    sfi.handlers[:] = []
    sfi.setLevel(level)
    sfi.propagate = True
    logging.captureWarnings(True)  # warnings.warn (urllib3, h5py) become log records in the same format


def sfi_level() -> int:
    return logging.getLogger("sfi").getEffectiveLevel()


def worker_logging(queue: Any, level: int) -> None:
    """In a worker process: every record goes to the parent over ``queue`` (formatted there, like its own)."""
    handler = logging.handlers.QueueHandler(queue)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.WARNING))
    logging.getLogger("sfi").setLevel(level)
    logging.captureWarnings(True)


class ParentLogListener:
    """The parent's end of the worker log queue: hands each record to the parent's own handlers."""

    def __init__(self, queue: Any) -> None:
        self._listener = logging.handlers.QueueListener(queue, _ToLogger(), respect_handler_level=False)
        self._listener.start()

    def stop(self) -> None:
        self._listener.stop()


class _ToLogger(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)
