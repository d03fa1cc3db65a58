"""Event data (NXevent_data): a time-of-flight spectrum, else counts per detector pixel, from a bounded sample.

Why a sample: an ESS file holds up to billions of events; a 400×300 spectrum looks the same from a million
of them. ``MAX_EVENTS`` events are read in ``BLOCKS`` blocks spread evenly over the whole run (not only its
start: a run's first seconds can be a beam-off period), so time and memory stay flat whatever the size of
the file. The bank with the most events is shown; the caption says how many of how many were used.
"""

from __future__ import annotations

import h5py
import numpy as np

from ._model import NoPlot, Plot, attr, child, groups_of_class

#: events read at most, in ``BLOCKS`` evenly spaced contiguous blocks
MAX_EVENTS = 1 << 17
BLOCKS = 8
#: bins of the spectrum (fewer for under 10^4 events); pixel ids beyond this many distinct ones are
#: grouped into as many bins
BINS = 200
MAX_PIXEL_BINS = 4096


class EventData:
    name = "event data"

    def find(self, h5: h5py.File) -> Plot | NoPlot:
        best: tuple[int, h5py.Group, h5py.Dataset] | None = None
        banks = 0
        for group in groups_of_class(h5, "NXevent_data"):
            banks += 1
            for field in ("event_time_offset", "event_id"):
                ds = child(group, field)
                if isinstance(ds, h5py.Dataset) and len(ds.shape) == 1 and np.issubdtype(ds.dtype, np.number):
                    if best is None or ds.shape[0] > best[0]:
                        best = (ds.shape[0], group, ds)
                    break
        if banks == 0:
            return NoPlot("no NXevent_data group")
        if best is None or best[0] == 0:
            return NoPlot(f"{banks} NXevent_data group(s), none with events")
        total, group, ds = best
        sample = sample_events(ds)
        used = f"{sample.size:,} of {total:,} events" if sample.size < total else f"{total:,} events"
        bank = f" in {banks} banks" if banks > 1 else ""
        name = ds.name.rsplit("/", 1)[-1]
        if name == "event_time_offset":
            units = attr(ds, "units")
            bins = int(min(BINS, max(10, 2 * np.sqrt(sample.size))))  # a few events: fewer, fuller bins
            counts, edges = np.histogram(sample.astype(float), bins=bins)
            return Plot("line", f"time-of-flight spectrum of {used} (largest bank{bank})", group.name,
                        x=edges, x_label=f"event_time_offset [{units}]" if units else "event_time_offset",
                        y_label="events per bin", y=counts.astype(float), title="/".join(group.name.split("/")[-2:]))
        low, high = int(sample.min()), int(sample.max())
        if high - low < MAX_PIXEL_BINS:
            counts = np.bincount(sample.astype(np.int64) - low, minlength=high - low + 1)
            edges = np.arange(low, high + 2, dtype=float) - 0.5
        else:
            counts, edges = np.histogram(sample.astype(float), bins=MAX_PIXEL_BINS)
        return Plot("line", f"counts per detector pixel of {used} (largest bank{bank})", group.name, x=edges,
                    x_label="event_id (pixel)", y_label="events", y=counts.astype(float),
                    title="/".join(group.name.split("/")[-2:]))


def sample_events(ds: h5py.Dataset, budget: int = MAX_EVENTS, blocks: int = BLOCKS) -> np.ndarray:
    """At most ``budget`` values of a 1-D dataset: all of them, or ``blocks`` evenly spaced slices."""
    total = int(ds.shape[0])
    if total <= budget:
        return np.asarray(ds[()])
    size = budget // blocks
    starts = np.linspace(0, total - size, blocks).astype(np.int64)
    return np.concatenate([np.asarray(ds[int(s):int(s) + size]) for s in starts])
