"""Parse the times real NeXus files contain into aware UTC datetimes.

Why a parser of our own: files from different writers spell times differently — kafka-to-nexus
``2024-10-28T09:18:14.376Z``, SuperMuSR ``2024-11-27 21:49:41.125433859 UTC`` (nanoseconds, a zone
word), ILL ``18-Sep-21 22:04:08`` (day-month-year with a month name), ISIS DAE naive UK local times,
NXlog times as numbers with a ``units`` attribute. ``datetime.fromisoformat`` knows only the first.
A text that is present but matches none of these is reported (``TimeParseError``), never guessed.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

#: Seconds per unit for epoch numbers; a number without a unit is ms since the epoch (run-start messages).
EPOCH_UNITS: dict[str, float] = {
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "ms": 1e-3, "msec": 1e-3, "millisecond": 1e-3, "milliseconds": 1e-3,
    "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "usec": 1e-6, "microsecond": 1e-6, "microseconds": 1e-6,
    "ns": 1e-9, "nsec": 1e-9, "nanosecond": 1e-9, "nanoseconds": 1e-9,
}
_NS_PER_UNIT: dict[str, int] = {k: round(v * 1e9) for k, v in EPOCH_UNITS.items()}

# date, T or space, time with optional fraction (any number of digits), optional zone
_ISO = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})(?:[T ](?P<time>\d{2}:\d{2}(?::\d{2})?)(?:[.,](?P<frac>\d+))?)?"
    r"\s*(?P<zone>Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?$", re.IGNORECASE)
# day-month-year with a month name: 18-Sep-21 22:04:08, 18-Sep-2021 22:04, 28 April 2009 10:47:44.5
_DMY = re.compile(
    r"^(?P<day>\d{1,2})[- /](?P<month>[A-Za-z]{3,9})\.?[- /](?P<year>\d{2}|\d{4})"
    r"(?:[T ,]+(?P<time>\d{1,2}:\d{2}(?::\d{2})?)(?:[.,](?P<frac>\d+))?)?"
    r"\s*(?P<zone>Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?$")
# month-name-day-year (ctime-like): Tue Sep 18 22:04:08 2021, Sep 18 2021 22:04:08
_MDY = re.compile(
    r"^(?:[A-Za-z]{3,9},?\s+)?(?P<month>[A-Za-z]{3,9})\s+(?P<day>\d{1,2}),?\s+"
    r"(?:(?P<time1>\d{1,2}:\d{2}(?::\d{2})?)\s+(?P<year1>\d{4})"
    r"|(?P<year2>\d{4})(?:\s+(?P<time2>\d{1,2}:\d{2}(?::\d{2})?))?)"
    r"\s*(?P<zone>Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?$")
_MONTHS = {name: i + 1 for i, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}


class TimeParseError(ValueError):
    """A time value is present but in no form sfi knows; the message says why."""


def parse_time(value: object, timezone: str = "UTC", unit: str | None = None) -> dt.datetime | None:
    """An aware UTC datetime for ``value``; ``None`` when there is nothing (empty, zero, negative epoch).

    Texts: ISO-8601 (``T`` or space, fractions to ns, ``Z``/``UTC``/offsets), day-month-year and
    month-day-year with month names. Naive times are in ``timezone``. Numbers: since the epoch in
    ``unit`` (s, ms, us, ns ...), ms without one. Raises ``TimeParseError`` for anything else.
    """
    if value is None or isinstance(value, bool):
        if isinstance(value, bool):
            raise TimeParseError(f"{value!r} is a boolean, not a time")
        return None
    if isinstance(value, (int, float)):
        return _from_epoch(value, unit)
    text = str(value).strip()
    if not text:
        return None
    if re.fullmatch(r"[+-]?\d+(\.\d+)?", text):
        return _from_epoch(float(text) if "." in text else int(text), unit)
    moment = _parse_text(text, timezone)
    if moment is None:
        raise TimeParseError(f"{text!r} is not a time sfi can read (ISO-8601, '18-Sep-21 22:04:08', epoch number)")
    return moment.astimezone(dt.UTC)


def is_naive(value: object) -> bool:
    """Whether ``value`` is a text time written without a zone (so the configured or assumed zone applies).

    Numbers since the epoch are absolute; texts with ``Z``, ``UTC``/``GMT`` or an offset carry their zone.
    """
    if value is None or isinstance(value, (bool, int, float)):
        return False
    text = str(value).strip()
    if not text or re.fullmatch(r"[+-]?\d+(\.\d+)?", text):
        return False
    for pattern in (_ISO, _DMY, _MDY):
        match = pattern.match(text)
        if match:
            return not match["zone"]
    return False


def format_utc(moment: dt.datetime) -> str:
    """``2024-11-27T21:49:41.125Z``: milliseconds when there are any, as SciCat stores them."""
    moment = moment.astimezone(dt.UTC)
    text = moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def _from_epoch(value: int | float, unit: str | None) -> dt.datetime | None:
    unit_key = (unit or "ms").strip()
    if unit_key not in EPOCH_UNITS and unit_key.lower() in EPOCH_UNITS:
        unit_key = unit_key.lower()
    if unit_key not in EPOCH_UNITS:
        raise TimeParseError(f"{value!r} with unit {unit!r}: not a time unit (known: s, ms, us, ns)")
    if value <= 0:
        return None
    try:
        if isinstance(value, int):  # integer arithmetic: exact for ns since the epoch
            micro = value * _NS_PER_UNIT[unit_key] // 1000
            return _EPOCH + dt.timedelta(microseconds=micro)
        return _EPOCH + dt.timedelta(seconds=value * EPOCH_UNITS[unit_key])
    except (OverflowError, ValueError):
        raise TimeParseError(f"{value!r} {unit_key} since the epoch is out of range") from None


def _parse_text(text: str, timezone: str) -> dt.datetime | None:
    match = _ISO.match(text)
    if match:
        year, month, day = (int(p) for p in match["date"].split("-"))
        return _build(year, month, day, match["time"], match["frac"], match["zone"], timezone)
    match = _DMY.match(text)
    if match:
        named = _month(match["month"])
        if named is None:
            return None
        year = int(match["year"])
        year = year + (2000 if year < 70 else 1900) if len(match["year"]) == 2 else year
        return _build(year, named, int(match["day"]), match["time"], match["frac"], match["zone"], timezone)
    match = _MDY.match(text)
    if match:
        named = _month(match["month"])
        if named is None:
            return None
        year = int(match["year1"] or match["year2"])
        return _build(year, named, int(match["day"]), match["time1"] or match["time2"], None, match["zone"],
                      timezone)
    return None


def _month(name: str) -> int | None:
    return _MONTHS.get(name[:3].lower())


def _build(year: int, month: int, day: int, clock: str | None, frac: str | None, zone: str | None,
           timezone: str) -> dt.datetime | None:
    hour = minute = second = 0
    if clock:
        parts = [int(p) for p in clock.split(":")]
        hour, minute = parts[0], parts[1]
        second = parts[2] if len(parts) > 2 else 0
    micro = int((frac or "0")[:6].ljust(6, "0"))  # nanoseconds are truncated to SciCat's precision
    try:
        moment = dt.datetime(year, month, day, hour, minute, second, micro)
    except ValueError:
        return None
    return moment.replace(tzinfo=_zone(zone, timezone))


def _zone(zone: str | None, timezone: str) -> dt.tzinfo:
    if not zone:
        return zoneinfo.ZoneInfo(timezone)
    if zone.upper() in ("Z", "UTC", "GMT"):
        return dt.UTC
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
