"""The snapshot model of a NeXus file: ``Node`` (one object's metadata), ``NexusSnapshot`` (every object of a file
by path, as plain Python values), ``LogSummary`` (a log's first/last/min/max/mean, read in chunks) and the path
matching (``NX...`` class segments, globs) the mapping uses on them.

Why apart from ``reader`` (opening, locking, retrying, walking HDF5): the model is what the mapping and its tests
work with, and it reads as one thing; how a file is opened while its writer may still hold it is another.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import h5py

#: Arrays with more elements than this are described (shape, dtype), not read.
MAX_ELEMENTS = 64
#: Elements read at once when a log is summarised: memory stays flat whatever the log's length.
SUMMARY_CHUNK = 1 << 18


@dataclass(frozen=True)
class Node:
    """One group or dataset: its small value (or ``None``), its attributes and its shape."""

    path: str
    kind: str  # "group" | "dataset"
    value: Any = None
    attrs: dict[str, Any] = field(default_factory=dict)
    shape: tuple[int, ...] | None = None
    dtype: str | None = None

    @property
    def units(self) -> str | None:
        units = self.attrs.get("units")
        return units if isinstance(units, str) and units else None

    @property
    def nx_class(self) -> str | None:
        value = self.attrs.get("NX_class")
        return value if isinstance(value, str) else None

    @property
    def size(self) -> int | None:
        """Number of elements, from the shape alone (an event array is never read for it)."""
        if self.shape is None:
            return None
        total = 1
        for n in self.shape:
            total *= n
        return total


@dataclass
class NexusSnapshot:
    """Every object of one file by absolute path ("/" is the root), metadata only."""

    file: str
    nodes: dict[str, Node]

    def get(self, path: str) -> Node | None:
        return self.nodes.get(_norm(path))

    def value(self, path: str) -> Any:
        """A dataset's value, or an attribute when the path ends in ``@name`` (``/entry@NX_class``)."""
        path, _, attr = path.partition("@")
        node = self.nodes.get(_norm(path or "/"))
        if node is None:
            return None
        return node.attrs.get(attr) if attr else node.value

    def glob(self, pattern: str) -> list[str]:
        """Paths matching a pattern segment by segment, sorted: a shell pattern (``/entry/user_*/name``)
        or ``{NXclass}``, any group of that NeXus class (``/{NXentry}/{NXinstrument}/name``)."""
        parts = _norm(pattern).strip("/").split("/")
        return sorted(p for p in self.nodes if p != "/" and _segments_match(p.strip("/").split("/"), parts)
                      and self._classes_match(p, parts))

    def _classes_match(self, path: str, parts: list[str]) -> bool:
        segments = path.strip("/").split("/")
        for i, part in enumerate(parts):
            wanted = nx_class_segment(part)
            if wanted is not None:
                node = self.nodes.get("/" + "/".join(segments[:i + 1]))
                if node is None or node.kind != "group" or node.nx_class != wanted:
                    return False
        return True

    def has_group(self, path: str) -> bool:
        node = self.nodes.get(_norm(path))
        return node is not None and node.kind == "group"

    def children(self, path: str) -> list[str]:
        """Names of the members of group ``path``, sorted (external links are never listed)."""
        prefix = _norm(path).rstrip("/") + "/"
        return sorted({p[len(prefix):] for p in self.nodes if p.startswith(prefix) and "/" not in p[len(prefix):]})

    def summary(self, path: str) -> LogSummary | None:
        """The summary of a numeric dataset from its copied value (arrays over the bound were never copied)."""
        node = self.nodes.get(_norm(path))
        if node is None or node.value is None:
            return None
        values = node.value if isinstance(node.value, list) else [node.value]
        return LogSummary.of(np.asarray(values)) if values else None


@dataclass(frozen=True)
class LogSummary:
    """first/last/min/max/mean/count of a numeric dataset (NaN elements are left out of min/max/mean)."""

    first: float | int
    last: float | int
    minimum: float | int
    maximum: float | int
    mean: float
    count: int
    #: Sum of the finite elements (a monitor's total counts).
    total: float | int = 0

    @classmethod
    def of(cls, values: Any) -> LogSummary | None:
        acc = _SummaryAccumulator()
        acc.add(np.asarray(values))
        return acc.result()


class _SummaryAccumulator:
    """Running first/last/min/max/sum/count over chunks, so that no chunk outlives its step."""

    def __init__(self) -> None:
        self.first: Any = None
        self.last: Any = None
        self.minimum: Any = None
        self.maximum: Any = None
        self.total: float | int = 0
        self.count = 0
        self.finite = 0

    def add(self, chunk: Any) -> None:
        flat = np.asarray(chunk).reshape(-1)
        if flat.size == 0 or flat.dtype.kind not in "iuf":
            return
        if self.first is None:
            self.first = flat[0].item()
        self.last = flat[-1].item()
        self.count += int(flat.size)
        good = flat
        if flat.dtype.kind == "f" and not np.isfinite(flat).all():
            good = flat[np.isfinite(flat)]  # a copy only when a chunk holds NaN/inf
        if good.size == 0:
            return
        low, high = good.min().item(), good.max().item()
        self.minimum = low if self.minimum is None else min(self.minimum, low)
        self.maximum = high if self.maximum is None else max(self.maximum, high)
        self.total += good.sum(dtype=np.float64).item() if good.dtype.kind == "f" else int(good.sum(dtype=np.int64))
        self.finite += int(good.size)

    def result(self) -> LogSummary | None:
        if self.count == 0 or self.finite == 0:
            return None
        return LogSummary(first=plain(self.first), last=plain(self.last), minimum=self.minimum, maximum=self.maximum,
                          mean=float(self.total) / self.finite, count=self.count, total=self.total)


def summarize_dataset(ds: h5py.Dataset, chunk: int = SUMMARY_CHUNK) -> LogSummary | None:
    """first/last/min/max/mean/count of a numeric dataset, read ``chunk`` elements of the first axis at a time.

    Why in slices: a sample-environment log can hold 10^8 points; reading it whole would cost gigabytes.
    The step follows the dataset's HDF5 chunking when it has one, so every chunk is decompressed once.
    """
    if ds.dtype.kind not in "iuf" or ds.shape is None:
        return None
    if ds.shape == ():
        return LogSummary.of(np.asarray(ds[()]))
    rows = int(ds.shape[0])
    per_row = int(np.prod(ds.shape[1:])) if len(ds.shape) > 1 else 1
    step = max(1, chunk // max(1, per_row))
    if ds.chunks:
        step = max(ds.chunks[0], step - step % ds.chunks[0])
    acc = _SummaryAccumulator()
    for start in range(0, rows, step):
        acc.add(ds[start:start + step])
    return acc.result()


def _norm(path: str) -> str:
    path = "/" + path.strip("/")
    return path


def _segments_match(segments: list[str], patterns: list[str]) -> bool:
    return len(segments) == len(patterns) and all(
        nx_class_segment(p) is not None or fnmatch.fnmatchcase(s, p) for s, p in zip(segments, patterns, strict=True))


def nx_class_segment(part: str) -> str | None:
    """``NXentry`` for a path segment ``{NXentry}`` (any group of that class), else ``None``."""
    if len(part) > 2 and part[0] == "{" and part[-1] == "}" and part[1:3] == "NX":
        return part[1:-1]
    return None


def fnmatch_has_magic(part: str) -> bool:
    return any(c in part for c in "*?[")


def plain(raw: Any) -> Any:
    """NumPy/bytes values as JSON-ready Python: one-element arrays become scalars, bytes become text."""
    if isinstance(raw, np.ndarray):
        if raw.size == 1:
            return plain(raw.reshape(()).item() if raw.dtype.kind not in "SOU" else raw.reshape(-1)[0])
        return [plain(v) for v in raw.reshape(-1).tolist()] if raw.dtype.kind not in "SO" else \
            [plain(v) for v in raw.reshape(-1)]
    if isinstance(raw, (bytes, np.bytes_)):
        return bytes(raw).decode("utf-8", "replace").rstrip("\x00")
    if isinstance(raw, np.generic):
        return plain(raw.item())
    if isinstance(raw, float) and (raw != raw or raw in (float("inf"), float("-inf"))):
        return None  # NaN/inf are not JSON
    return raw
