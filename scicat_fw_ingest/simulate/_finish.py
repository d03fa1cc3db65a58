"""How the simulated writer finishes a file after its wrdn, like kafka-to-nexus does.

Why: kafka-to-nexus publishes the wrdn from ``Master::setToIdle`` and only then finishes the file: the
stream controller's destructor writes the last buffered stream messages and the start/stop-time
metadata, the file's destructor closes it and (since eed2958d, May 2025) chmods it 0440. A reader
that trusts the wrdn alone — with HDF5 file locking off or on another host — reads an unfinished
file. ``finish_late`` reproduces that window for tests and demos; ``seal`` is the final chmod of a
file finished before its wrdn.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

__all__ = ["FINAL_MODE", "LateFinish", "finish_late", "parse_late", "seal"]

#: What kafka-to-nexus (>= eed2958d) leaves a closed file as: read-only for owner and group.
FINAL_MODE = 0o440
#: Seconds between the writes of the late period (each one flushed, so other readers see the file change).
STEP = 0.1


class LateFinish:
    """``--finish-late``: seconds the writer keeps writing after its wrdn, one value or a range drawn per file."""

    def __init__(self, low: float, high: float) -> None:
        if not 0 <= low <= high:
            raise ValueError(f"finish-late {low:g}-{high:g}: need 0 <= low <= high seconds")
        self.low, self.high = low, high

    def draw(self, rng: random.Random) -> float:
        return self.low if self.low == self.high else rng.uniform(self.low, self.high)

    def __str__(self) -> str:
        return f"{self.low:g} s" if self.low == self.high else f"{self.low:g}-{self.high:g} s"


def parse_late(text: str) -> LateFinish:
    """``"1.5"`` or ``"0.5-3"`` (seconds); ``ValueError`` with the reason otherwise."""
    low, sep, high = text.strip().partition("-")
    try:
        a = float(low)
        b = float(high) if sep else a
    except ValueError:
        raise ValueError(f"'{text}': expected SECONDS or LOW-HIGH seconds, e.g. 2 or 0.5-3") from None
    return LateFinish(a, b)


def seal(path: str | Path) -> None:
    """The writer's last act on a closed file: no write bit for anyone (the signal sfi trusts without locks)."""
    os.chmod(path, FINAL_MODE)


def finish_late(path: str | Path, seconds: float, *, final_chmod: bool = True) -> int:
    """Keep writing ``path`` for ``seconds`` after its wrdn, then close it and (``final_chmod``) seal it.

    Each step appends one sample to every NXlog (``time`` and ``value`` together, the stream messages a
    writer still had buffered) — or, in a file without logs, rewrites the root's ``file_time`` — and
    flushes, so size/mtime move on disk as they do under the real writer. Returns the steps written.
    """
    import h5py

    end = time.monotonic() + max(0.0, seconds)
    steps = 0
    with h5py.File(path, "r+") as f:
        logs = _logs(f)
        while True:
            _write_step(f, logs)
            f.flush()
            steps += 1
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(STEP, remaining))
    if final_chmod:
        seal(path)
    return steps


def _logs(f: Any) -> list[tuple[Any, Any]]:
    """(time, value) dataset pairs of the NXlog groups that can grow along their first axis."""
    import h5py

    found: list[tuple[Any, Any]] = []

    def visit(_name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group) and _text(obj.attrs.get("NX_class")) == "NXlog":
            t, v = obj.get("time"), obj.get("value")
            if isinstance(t, h5py.Dataset) and isinstance(v, h5py.Dataset) and t.maxshape and v.maxshape \
                    and t.maxshape[0] is None and v.maxshape[0] is None and t.shape[0] == v.shape[0]:
                found.append((t, v))

    f.visititems(visit)
    return found


def _write_step(f: Any, logs: list[tuple[Any, Any]]) -> None:
    if not logs:
        from .._time import iso_from_ns

        f.attrs["file_time"] = iso_from_ns(time.time_ns())
        return
    now_ns = time.time_ns()
    for t, v in logs:
        n = t.shape[0]
        t.resize(n + 1, axis=0)
        v.resize(n + 1, axis=0)
        t[n] = now_ns if t.dtype.kind in "iu" else now_ns / 1e9
        v[n] = v[n - 1] if n else 0


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None
