"""A preview picture of a NeXus file: what SciCat shows as the dataset's thumbnail (``sfi preview``).

What it shows, first that applies (each kind one ``PlotSource``): the file's NeXus default plot
(``_default``), else event data (``_events``: a spectrum from a bounded sample), else ISIS histogram data
(``_histogram``: the summed spectrum); else none, with the reason of each kind (``--explain``). Reading
holds sfi's HDF5 lock only while arrays are read; drawing (``_draw``, matplotlib) happens after the file is
closed. The cost is bounded by the sizes in each module, not by the file.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

import h5py

from ..errors import SfiError
from ..nexus.reader import HDF5_LOCK, NexusError, check_signature
from ._default import DefaultPlot
from ._events import EventData
from ._histogram import IsisHistogram
from ._model import CAPTION_PREFIX, NoPlot, Plot, PlotSource

#: The kinds of picture, in the order they are tried.
SOURCES: tuple[PlotSource, ...] = (DefaultPlot(), EventData(), IsisHistogram())


class PreviewError(SfiError):
    """The file could not be read or drawn for a preview (never fails a dataset: a warning)."""


@dataclass
class Preview:
    """A drawn preview: the PNG, the caption SciCat shows, the kind and the HDF5 path it came from."""

    png: bytes
    caption: str
    kind: str
    source: str

    @property
    def data_uri(self) -> str:
        return data_uri(self.png)


@dataclass
class NoPreview:
    """No picture applies: one reason per kind tried."""

    reasons: list[tuple[str, str]]

    @property
    def reason(self) -> str:
        return "; ".join(f"{kind}: {why}" for kind, why in self.reasons)


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...``: the form SciCat's attachment ``thumbnail`` holds."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def find_plot(path: str | os.PathLike[str]) -> tuple[str, Plot] | NoPreview:
    """(kind, plot) of the first kind that applies to the file, else why none does; ``PreviewError`` when
    the file cannot be read."""
    reasons: list[tuple[str, str]] = []
    try:
        check_signature(os.fspath(path))
    except NexusError as exc:
        raise PreviewError(str(exc)) from None
    except FileNotFoundError:
        raise PreviewError(f"{os.fspath(path)}: file not found") from None
    try:
        with HDF5_LOCK, h5py.File(path, "r") as h5:
            for source in SOURCES:
                found = source.find(h5)
                if isinstance(found, Plot):
                    return source.name, found
                reasons.append((source.name, found.reason))
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PreviewError(f"{os.fspath(path)}: cannot read a preview: {first[:200]}") from None
    return NoPreview(reasons)


def make_preview(path: str | os.PathLike[str]) -> Preview | NoPreview:
    """The file's preview drawn as PNG, else why there is none; ``PreviewError`` when reading or drawing fails."""
    found = find_plot(path)
    if isinstance(found, NoPreview):
        return found
    return draw(path, *found)


def draw(path: str | os.PathLike[str], kind: str, plot: Plot) -> Preview:
    """``find_plot``'s plot drawn as PNG; ``PreviewError`` naming ``path`` when drawing fails."""
    from ._draw import render

    try:
        png = render(plot)
    except (ValueError, TypeError, OverflowError, MemoryError, RuntimeError) as exc:
        raise PreviewError(f"{os.fspath(path)}: cannot draw the {kind}: {str(exc)[:200]}") from None
    return Preview(png, plot.caption[:500], kind, plot.source)


__all__ = ["CAPTION_PREFIX", "SOURCES", "NoPlot", "NoPreview", "Plot", "PlotSource", "Preview", "PreviewError",
           "data_uri", "draw", "find_plot", "make_preview"]
