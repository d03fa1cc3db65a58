"""The error types every command turns into one clear line (never a traceback).

An ``SfiError`` is an expected failure caused by the input or the environment: bad bytes, a bad
config file, an unreachable broker. Commands print ``str(err)`` and exit non-zero; the listener
records it and moves on. Anything else escaping a command is a bug in sfi.
"""

from __future__ import annotations


class SfiError(Exception):
    """An expected failure with a message fit for an operator."""

    exit_code: int = 1


class ConfigError(SfiError):
    """The configuration (file, environment or flags) is unusable; names the source and the key."""

    exit_code = 2


class KafkaError(SfiError):
    """The broker could not be reached or refused an operation."""
