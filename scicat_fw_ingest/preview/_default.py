"""The NeXus default plot: the ``default`` attribute chain from the file down to an NXdata, its signal
against its axes (NeXus "find the plottable data", 2014 rules, with the older ``signal=1``/``axes="a,b"``
dataset attributes still found inside the NXdata the chain names).

A 1-D signal is a line, 2-D an image; more dimensions are shown as the image of the last two at the first
index of the others (the caption says so). A signal larger than ``MAX_SIGNAL_ELEMENTS`` is read strided.
"""

from __future__ import annotations

import h5py
import numpy as np

from ._model import NoPlot, Plot, attr, child, label, nx_class, read_strided, text


class DefaultPlot:
    name = "default plot"

    def find(self, h5: h5py.File) -> Plot | NoPlot:
        data = _follow_default(h5)
        if isinstance(data, NoPlot):
            return data
        return _plot_of(data)


def _follow_default(h5: h5py.File) -> h5py.Group | NoPlot:
    group: h5py.Group = h5
    named = False
    if not attr(h5, "default"):  # NeXus: without the file's own @default, the first NXentry (by name) with one
        for name in sorted(h5):
            entry = child(h5, name)
            if isinstance(entry, h5py.Group) and nx_class(entry) == "NXentry" and attr(entry, "default"):
                group = entry
                break
    for _ in range(8):  # file → entry → (subentry | instrument | detector ...) → data
        if nx_class(group) == "NXdata":
            return group if named else NoPlot("an NXdata but no `default` attribute leads to it")
        target = attr(group, "default")
        if not target:
            if group.name == "/":
                return NoPlot("neither the file nor an NXentry has a `default` attribute")
            return NoPlot(f"{group.name} has no `default` attribute" if not named
                          else f"the `default` chain stops at {group.name} (no `default` attribute)")
        nxt = child(group, target)
        if not isinstance(nxt, h5py.Group):
            return NoPlot(f"{group.name}@default names '{target}', which is not a group there")
        group, named = nxt, True
    return NoPlot("the `default` chain is longer than 8 groups")


def _signal(data: h5py.Group) -> h5py.Dataset | None:
    found = child(data, attr(data, "signal"))
    if isinstance(found, h5py.Dataset):
        return found
    for name in data:  # NeXus before 2014: signal=1 on the dataset
        member = child(data, name)
        if isinstance(member, h5py.Dataset) and attr(member, "signal") == "1":
            return member
    return None


def _axes(data: h5py.Group, signal: h5py.Dataset) -> list[h5py.Dataset | None]:
    """One axis dataset (or None: the index) per dimension of ``signal``."""
    rank = len(signal.shape)
    names = [text(a) for a in np.atleast_1d(data.attrs["axes"])] if "axes" in data.attrs else []
    if len(names) == 1 and ("," in names[0] or ":" in names[0]):
        names = names[0].replace(":", ",").split(",")
    if not names and attr(signal, "axes"):  # before 2014: axes="a,b" on the signal
        names = attr(signal, "axes").replace(":", ",").split(",")
    axes: list[h5py.Dataset | None] = [None] * rank
    for i, name in enumerate(names[:rank]):
        member = child(data, name.strip()) if name.strip() not in ("", ".") else None
        if isinstance(member, h5py.Dataset):
            index = attr(data, f"{name.strip()}_indices")
            position = int(index.split(",")[0]) if index.strip().lstrip("-").isdigit() else i
            if 0 <= position < rank:
                axes[position] = member
    for name in data:  # before 2014: axis=k (1-based), primary=1
        member = child(data, name)
        if isinstance(member, h5py.Dataset) and attr(member, "axis").isdigit():
            position = int(attr(member, "axis")) - 1
            if 0 <= position < rank and axes[position] is None and attr(member, "primary") in ("", "1"):
                axes[position] = member
    return axes


def _coordinates(axis: h5py.Dataset | None, length: int, step: int) -> tuple[np.ndarray, str]:
    """(values, label) of one axis: points, or bin edges (one more) when the file has edges and nothing was
    skipped; the index when the axis is absent or does not fit the signal."""
    if axis is not None and len(axis.shape) == 1 and axis.shape[0] in (length, length + 1) \
            and np.issubdtype(axis.dtype, np.number):
        values = np.asarray(axis[::step], dtype=float)
        points = -(-length // step)
        return (values if step == 1 else values[:points]), label(axis)
    return np.arange(0, length, step, dtype=float), "index"


def _plot_of(data: h5py.Group) -> Plot | NoPlot:
    signal = _signal(data)
    if signal is None:
        return NoPlot(f"{data.name}: NXdata without a signal")
    if not np.issubdtype(signal.dtype, np.number):
        return NoPlot(f"{signal.name}: the signal is not numeric ({signal.dtype})")
    shape = signal.shape or ()
    if not shape or int(np.prod(shape)) == 0:
        return NoPlot(f"{signal.name}: the signal is empty or a scalar")
    axes = _axes(data, signal)
    note = ""
    lead = max(0, len(shape) - 2)
    if lead:
        note = f", first index of the leading {lead} dimension(s)"
        axes, shape = axes[lead:], shape[lead:]
    values, steps = read_strided(signal, fixed=lead)
    if any(s > 1 for s in steps):
        note += f", every {'×'.join(str(s) for s in steps)}-th point"
    title = attr(data, "title") or attr(signal, "long_name") or ""
    if len(shape) == 1:
        x, x_label = _coordinates(axes[0], shape[0], steps[0])
        y = values.astype(float)
        return Plot("line", f"{label(signal)} against {x_label}{note}", signal.name, x=x, x_label=x_label,
                    y_label=label(signal), y=y, title=title)
    x, x_label = _coordinates(axes[1], shape[1], steps[1])
    y, y_label = _coordinates(axes[0], shape[0], steps[0])
    return Plot("image", f"{label(signal)} against {y_label} and {x_label}{note}", signal.name, x=x,
                x_label=x_label, y_label=y_label, y=y, image=values.astype(float), value_label=label(signal),
                title=title)
