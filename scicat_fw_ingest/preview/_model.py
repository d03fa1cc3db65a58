"""What a preview is made of, apart from how it is found (``_default``, ``_events``, ``_histogram``) and drawn.

Why split: reading a plot from a file needs HDF5 (and sfi's one HDF5 lock), drawing needs matplotlib
and no lock. A ``Plot`` is the plain data between the two, so the file is closed before drawing starts
and the readers can be tested without drawing anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import h5py
import numpy as np

#: Every caption starts so: how sfi recognises its own preview among a dataset's attachments (API v3 has
#: no client-chosen id, so a re-run looks for this prefix before it sends).
CAPTION_PREFIX = "Preview (sfi): "
#: Most elements a default-plot signal is read with (strided beyond): a 400×300 picture cannot show more.
MAX_SIGNAL_ELEMENTS = 1 << 20
#: Groups a search for NX_class visits at most, and how deep: the cost stays flat on files of 10^4 PVs.
MAX_GROUPS = 5000
MAX_DEPTH = 6


@dataclass
class Plot:
    """One picture's data: a line (``y`` against ``x``) or an image (``image[y, x]``), with labels and units."""

    kind: Literal["line", "image"]
    #: what the picture shows, for the caption ("counts against time_of_flight, summed over 17792 spectra")
    what: str
    #: the HDF5 path it was read from
    source: str
    x: np.ndarray
    x_label: str
    y_label: str
    y: np.ndarray | None = None
    image: np.ndarray | None = None
    #: the colour bar's label of an image
    value_label: str = ""
    title: str = ""

    @property
    def caption(self) -> str:
        return f"{CAPTION_PREFIX}{self.what} ({self.source})"


@dataclass
class NoPlot:
    """Why a kind of picture does not apply to a file (``--explain`` shows it)."""

    reason: str


class PlotSource(Protocol):
    """One kind of picture: finds its data in an open file, or says why there is none."""

    #: short name shown by ``--explain`` and in the caption's choice ("default plot", "event data" ...)
    name: str

    def find(self, h5: h5py.File) -> Plot | NoPlot: ...


# -- small helpers the readers share ---------------------------------------------------------------------
def text(value: Any) -> str:
    """An HDF5 attribute or scalar as text (bytes, numpy strings and 1-element arrays included)."""
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return ",".join(text(v) for v in value.ravel())
        value = value.ravel()[0]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


def attr(obj: h5py.HLObject, name: str) -> str:
    try:
        return text(obj.attrs[name]) if name in obj.attrs else ""
    except (OSError, TypeError, ValueError):  # an attribute of a type h5py cannot read
        return ""


def nx_class(obj: h5py.HLObject) -> str:
    return attr(obj, "NX_class")


def label(ds: h5py.Dataset, fallback: str | None = None) -> str:
    """``long_name`` or the dataset's name, with ``[units]`` when it has units."""
    name = attr(ds, "long_name") or fallback or ds.name.rsplit("/", 1)[-1]
    units = attr(ds, "units")
    return f"{name} [{units}]" if units else name


def child(group: h5py.Group, name: str) -> h5py.HLObject | None:
    """A member of ``group`` (never through an external link into another file), else None."""
    if not name or name not in group:
        return None
    if isinstance(group.get(name, getlink=True), h5py.ExternalLink):
        return None
    try:
        return group.get(name)
    except (KeyError, OSError, ValueError):
        return None


def groups_of_class(h5: h5py.File, wanted: str) -> Iterator[h5py.Group]:
    """Groups with ``NX_class == wanted``, breadth first, within ``MAX_DEPTH`` levels and ``MAX_GROUPS`` groups."""
    queue: list[tuple[h5py.Group, int]] = [(h5, 0)]
    visited = 0  # a hard link back up the tree is bounded by the depth
    while queue and visited < MAX_GROUPS:
        group, depth = queue.pop(0)
        for name in group:
            if isinstance(group.get(name, getlink=True), h5py.ExternalLink):
                continue  # never opened: it points into another file, maybe outside the data roots
            try:
                if group.get(name, getclass=True) is not h5py.Group:
                    continue
            except (KeyError, OSError, ValueError, RuntimeError):  # a dangling soft link
                continue
            sub = child(group, name)
            if not isinstance(sub, h5py.Group):
                continue
            visited += 1
            if nx_class(sub) == wanted:
                yield sub
            if depth + 1 < MAX_DEPTH:
                queue.append((sub, depth + 1))
            if visited >= MAX_GROUPS:
                break


def read_strided(ds: h5py.Dataset, budget: int = MAX_SIGNAL_ELEMENTS, *,
                 fixed: int = 0) -> tuple[np.ndarray, list[int]]:
    """The dataset (its first ``fixed`` axes at index 0) when that holds at most ``budget`` elements, else
    every k-th element per remaining axis: the read is bounded whatever the file holds.

    Returns the values and the step taken along each remaining axis (1 = all)."""
    shape = list((ds.shape or ())[fixed:])
    steps = [1] * len(shape)
    if not shape:
        return np.asarray(ds[(0,) * fixed] if fixed else ds[()]), steps
    while int(np.prod([-(-n // s) for n, s in zip(shape, steps, strict=True)])) > budget:
        axis = int(np.argmax([n / s for n, s in zip(shape, steps, strict=True)]))
        steps[axis] *= 2
    values = ds[(0,) * fixed + tuple(slice(None, None, s) for s in steps)]
    return np.asarray(values), steps
