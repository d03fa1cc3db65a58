"""ISO-8601 UTC text for the times in messages, files and snapshots: one form everywhere.

Always millisecond digits (``2026-11-21T13:44:38.466Z``); micro- or nanosecond digits only where
the value has them, so nothing is lost and a column of times lines up.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@lru_cache(maxsize=4096)
def _second(seconds: int) -> str | None:
    """'2026-11-21T13:44:38' for whole seconds since the epoch, cached: the times of a stream of messages
    share their seconds, and strftime is most of the cost of a time (decode --json of event data)."""
    try:
        return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return None


def iso_from_ns(ns: int) -> str:
    """ISO-8601 UTC, always with milliseconds; with micro- or nanoseconds only where the value has them."""
    seconds, rest = divmod(int(ns), 1_000_000_000)
    base = _second(seconds)
    if base is None:
        return str(ns)
    frac = f"{rest:09d}"
    digits = 3 if rest % 1_000_000 == 0 else 6 if rest % 1_000 == 0 else 9
    return f"{base}.{frac[:digits]}Z"


def ns_from_float(value: float, ns_per_unit: int) -> int:
    """A time in floating seconds (or ms) as integer ns, exact to the digits the number was written with.

    Why: ``1732456789.125 * 1e9`` is ``1732456789124999936`` in float arithmetic. The shortest text that
    reads back as the same double (``repr``) is the number the sender meant; decimal arithmetic on it
    loses nothing (ns10 1732456789.125 s -> ...49.125Z)."""
    from decimal import Decimal

    return int((Decimal(repr(float(value))) * ns_per_unit).to_integral_value())


def iso_from_seconds(value: float) -> str:
    """A time in (floating) seconds since the epoch, exact to its digits: ``iso_from_ns(ns_from_float(...))``."""
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    return iso_from_ns(ns_from_float(value, 1_000_000_000))


def iso_datetime(value: dt.datetime) -> str:
    """A datetime as ``iso_from_ns`` writes times (naive ones are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    delta = value - _EPOCH
    return iso_from_ns((delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000)


def iso_from_ms(ms: int | None) -> str | None:
    """Run-control times (ms since epoch); ``0``/``None`` means not set."""
    if not ms:
        return None
    return iso_from_ns(int(ms) * 1_000_000)


def iso_ms(ms: int) -> str:
    """ISO-8601 UTC with exactly milliseconds, the form kafka-to-nexus writes for mdat times."""
    seconds, rest = divmod(int(ms), 1000)
    stamp = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{rest:03d}Z"
