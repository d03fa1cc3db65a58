"""``scicat:`` sources: values a profile takes from SciCat records (proposal, instrument, sample).

Why: facilities keep the principal investigator, the contact email and the owning group in the
SciCat proposal, and the instrument's pid in its Instrument record — not in the NeXus file. This is
what scicat-ingestor does with its SC variables. The client only needs ``get_json(path, params)``
(``None`` on 404); answers, including "not found", are cached for ``ttl`` seconds so a run asks once
per proposal, while a long-running ``listen`` still sees a proposal created later.

Why ``cache_only``: a profile is applied while the process's HDF5 lock is held (the file is open), and
a SciCat GET there would stall every other file of the process for as long as SciCat takes. Inside
``cache_only`` a value not in the cache raises ``LookupNeeded``; the ingest core fetches it with the
lock released and applies the profile again (once per proposal, instrument and sample per ``ttl``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from ..errors import SfiError
from ._paths import dig  # one dotted-path reader for file metadata and SciCat answers

log = logging.getLogger("sfi.mapping")

#: How long an answer (or "not found") is reused, seconds.
CACHE_SECONDS = 600.0
#: SciCat answers a lookup may be refused with (the account may not read proposals): fall back, warn once.
_REFUSED = (401, 403)
_REFUSED_ANSWER = object()


class LookupNeeded(Exception):
    """A ``scicat:`` record not cached while ``cache_only``: fetch it (``ScicatLookup.fetch``), then map again."""

    def __init__(self, record: str, key: str) -> None:
        super().__init__(f"scicat:{record} '{key}' is not cached")
        self.record, self.key = record, key


class ScicatLookup:
    """Cached lookups through ``client.get_json``; ``field`` returns the value and the request that supplied it."""

    def __init__(self, client: Any, *, ttl: float = CACHE_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._get_json = client.get_json
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, Any, str]] = {}
        self._refused: set[str] = set()
        self.refusal: str | None = None  # the status of the last refused request, for the file's warnings
        self._instruments: tuple[float, Any] | None = None  # the whole (short) list, fetched once per ttl
        self.requests = 0  # answers fetched (not served from the cache): for tests and metrics
        self._thread = threading.local()  # cache_only is per thread: listen's workers share one lookup

    @contextmanager
    def cache_only(self) -> Iterator[None]:
        """Answer from the cache only; a miss raises ``LookupNeeded`` (no request while a lock is held)."""
        self._thread.cache_only = True
        try:
            yield
        finally:
            self._thread.cache_only = False

    def fetch(self, record: str, key: str) -> None:
        """Ask SciCat for ``record`` ``key`` now (outside ``cache_only``), into the cache."""
        self._record(record, key)

    @classmethod
    def for_sink(cls, sink: Any) -> ScicatLookup | None:
        """A lookup through ``sink`` when it can answer GETs (SciCat), else ``None`` (local catalogue)."""
        return cls(sink) if callable(getattr(sink, "get_json", None)) else None

    def field(self, record: str, name: str, key: str | None) -> tuple[Any, str, str | None]:
        """``name`` of the ``record`` keyed by ``key``: (value, "GET path", None), or (None, "", problem)
        when absent; ``problem`` says why when SciCat refused to answer (it is then a warning)."""
        if not key:
            return None, "", None
        data, request = self._record(record, key)
        if data is None:
            return None, "", request if request.startswith("refused") else None
        if record == "proposal" and name == "pi_name":
            parts = [str(data.get(k) or "").strip() for k in ("pi_firstname", "pi_lastname")]
            value: Any = " ".join(p for p in parts if p) or None
        else:
            value = dig(data, name)
        return value, request, None

    def _record(self, record: str, key: str) -> tuple[dict[str, Any] | None, str]:
        cache_key = (record, key if record != "instrument" else key.lower())
        hit = self._cache.get(cache_key)
        now = self._clock()
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1], hit[2]
        if getattr(self._thread, "cache_only", False):
            raise LookupNeeded(record, key)
        fetch = {"proposal": self._proposal, "instrument": self._instrument, "sample": self._sample}[record]
        data, request = fetch(key)
        self._cache[cache_key] = (now, data, request)
        return data, request

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        self.requests += 1
        try:
            return self._get_json(path, params)
        except SfiError as exc:
            status = getattr(exc, "status", None)
            if status not in _REFUSED:
                raise
            kind = path.split("/")[0]
            self.refusal = str(status)
            if kind not in self._refused:
                self._refused.add(kind)
                log.warning("SciCat refused the lookup GET %s (%s): profiles fall back to the file's values", path,
                            status)
            return _REFUSED_ANSWER

    def _proposal(self, proposal_id: str) -> tuple[dict[str, Any] | None, str]:
        path = f"Proposals/{quote(proposal_id, safe='')}"
        data = self._get(path)
        if data is _REFUSED_ANSWER:
            return None, f"refused: GET {path} answered {self.refusal}: proposal fields fall back"
        return (data if isinstance(data, dict) else None), f"GET {path}"

    def _instrument(self, name: str) -> tuple[dict[str, Any] | None, str]:
        """By name, case-insensitive: instruments are few, so all are listed once and matched here."""
        if self._instruments is None or self._clock() - self._instruments[0] >= self._ttl:
            self._instruments = (self._clock(), self._get("Instruments", {"filter": json.dumps({"limit": 1000})}))
        data = self._instruments[1]
        if data is _REFUSED_ANSWER:
            return None, f"refused: GET Instruments answered {self.refusal}: instrumentId falls back"
        wanted = name.strip().lower()
        for item in data if isinstance(data, list) else []:
            if isinstance(item, dict) and wanted in (str(item.get("name", "")).lower(),
                                                     str(item.get("uniqueName", "")).lower()):
                return item, f"GET Instruments (name '{item.get('name')}' ~ '{name}')"
        return None, ""

    def _sample(self, key: str) -> tuple[dict[str, Any] | None, str]:
        path = f"Samples/{quote(key, safe='')}"
        data = self._get(path)
        if data is _REFUSED_ANSWER:
            return None, f"refused: GET {path} answered {self.refusal}: sample fields fall back"
        if isinstance(data, dict):
            return data, f"GET {path}"
        for name_field in ("sampleName", "description"):  # sampleName exists from backend 5 on
            params = {"filter": json.dumps({"where": {name_field: key}, "limit": 1})}
            found = self._get("Samples", params)
            if isinstance(found, list) and found and isinstance(found[0], dict):
                return found[0], f"GET Samples ({name_field} '{key}')"
        return None, ""
