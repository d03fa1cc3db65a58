"""ISIS histogram data: the spectrum summed over detector spectra (and periods), against time of flight.

Where: an NXdata under an NXentry (``raw_data_1/detector_1`` in ISIS raw files) with a ``counts`` dataset of
two or more dimensions whose last one is time of flight, and a ``time_of_flight`` of that length (centres) or
one more (bin edges). Bounded: at most ``MAX_COUNTS`` counts are read, in blocks of whole spectra; a larger
file is summed over evenly spaced blocks of spectra and the caption says how many of how many.
"""

from __future__ import annotations

import h5py
import numpy as np

from ._model import NoPlot, Plot, child, groups_of_class, label

MAX_COUNTS = 1 << 24
BLOCKS = 16


class IsisHistogram:
    name = "ISIS histogram"

    def find(self, h5: h5py.File) -> Plot | NoPlot:
        for entry in groups_of_class(h5, "NXentry"):
            for name in entry:
                data = child(entry, name)
                if not isinstance(data, h5py.Group):
                    continue
                counts, tof = child(data, "counts"), child(data, "time_of_flight")
                if not (isinstance(counts, h5py.Dataset) and isinstance(tof, h5py.Dataset)):
                    continue
                if len(counts.shape) < 2 or len(tof.shape) != 1 or tof.shape[0] not in (counts.shape[-1],
                                                                                          counts.shape[-1] + 1):
                    continue
                return _summed(counts, tof)
            break  # the first entry only: ISIS raw files hold one
        return NoPlot("no ISIS histogram (an NXentry's NXdata with counts[..., time_of_flight])")


def _summed(counts: h5py.Dataset, tof: h5py.Dataset) -> Plot:
    bins = counts.shape[-1]
    rows = int(np.prod(counts.shape[:-1]))
    flat_shape = counts.shape[:-1]
    total = np.zeros(bins, dtype=float)
    per_block = max(1, MAX_COUNTS // BLOCKS // max(1, bins))
    if rows * bins <= MAX_COUNTS:
        starts, size = [0], rows
    else:
        size = per_block
        starts = sorted(set(np.linspace(0, rows - size, BLOCKS).astype(np.int64).tolist()))
    used = 0
    for start in starts:
        for index in _row_slices(flat_shape, int(start), int(start) + size):
            block = np.asarray(counts[index], dtype=float).reshape(-1, bins)
            total += block.sum(axis=0)
            used += block.shape[0]
    spectra = " × ".join(f"{n:,}" for n in counts.shape[:-1])
    what = (f"counts summed over {spectra} spectra" if used == rows
            else f"counts summed over {used:,} of {rows:,} spectra (evenly spaced blocks)")
    x = np.asarray(tof[()], dtype=float)
    return Plot("line", f"{what} against time_of_flight", counts.name, x=x, x_label=label(tof),
                y_label=label(counts), y=total, title="/".join(counts.parent.name.split("/")[-2:]))


def _row_slices(lead: tuple[int, ...], start: int, stop: int) -> list[tuple[int | slice, ...]]:
    """HDF5 selections covering flat rows [start, stop) of an array whose leading shape is ``lead``."""
    if len(lead) == 1:
        return [(slice(start, stop),)]
    inner = int(np.prod(lead[1:]))
    out: list[tuple[int | slice, ...]] = []
    row = start
    while row < stop:
        outer, rest = divmod(row, inner)
        end = min(stop, (outer + 1) * inner)
        out.extend((outer, *sel) for sel in _row_slices(lead[1:], rest, rest + end - row))
        row = end
    return out
