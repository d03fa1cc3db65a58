"""A ``Plot`` drawn as a small PNG (400×300) with matplotlib's Agg canvas.

Why matplotlib: it is what scipp, mantid and the ESS/ISIS Python users know, its pictures look like theirs,
and its Agg canvas needs no display. It is imported here only, when a picture is drawn (about 0.3 s once per
worker process), so ``sfi --help`` and ``sfi decode`` start as before. ``Figure`` is used without pyplot: no
global figure registry, nothing to close, safe in worker threads.
"""

from __future__ import annotations

import io
import threading

import numpy as np

from ._model import Plot

WIDTH, HEIGHT, DPI = 4.0, 3.0, 100
#: matplotlib is not thread-safe (its font cache, text layout); drawing is CPU work under the GIL anyway, so
#: the listener's worker threads (``processes = 0``) draw one at a time at no cost.
_DRAW_LOCK = threading.Lock()


def render(plot: Plot) -> bytes:
    """The PNG bytes of ``plot``."""
    with _DRAW_LOCK:
        return _render(plot)


def _render(plot: Plot) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if plot.kind == "line":
        _line(ax, plot)
    else:
        _image(fig, ax, plot)
    ax.set_xlabel(plot.x_label, fontsize=8)
    ax.set_ylabel(plot.y_label, fontsize=8)
    ax.tick_params(labelsize=7)
    if plot.title:
        ax.set_title(plot.title[:60], fontsize=8)
    fig.tight_layout(pad=0.4)
    canvas = fig.canvas
    canvas.draw()
    from PIL import Image  # matplotlib's own dependency

    # 256 colours (a plot has few): a noisy detector image stays tens of KB instead of ~100
    rgb = Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB")  # type: ignore[attr-defined]
    out = io.BytesIO()
    rgb.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(out, format="PNG", optimize=True)
    return out.getvalue()


def _line(ax: object, plot: Plot) -> None:
    assert plot.y is not None
    y = np.nan_to_num(plot.y.astype(float), nan=0.0, posinf=0.0, neginf=0.0)
    x = plot.x
    if len(x) == len(y) + 1:  # bin edges: a histogram
        ax.stairs(y, x, color="tab:blue", linewidth=1)  # type: ignore[attr-defined]
    else:
        ax.plot(x[: len(y)], y[: len(x)], color="tab:blue", linewidth=1)  # type: ignore[attr-defined]
    positive = y[y > 0]
    if positive.size and y.min() >= 0 and positive.max() / positive.min() > 1e3:
        ax.set_yscale("log")  # type: ignore[attr-defined]


def _image(fig: object, ax: object, plot: Plot) -> None:
    assert plot.image is not None and plot.y is not None
    values = np.ma.masked_invalid(plot.image.astype(float))
    positive = values[values > 0]
    norm = None
    if positive.size and values.min() >= 0 and positive.max() / positive.min() > 1e3:
        from matplotlib.colors import LogNorm

        top = float(positive.max())  # at most 6 decades shown: tails of a peak would swamp the scale
        norm = LogNorm(vmin=max(float(positive.min()), top * 1e-6), vmax=top)
        values = np.ma.masked_less_equal(values, 0)
    x, y = _edges(plot.x, values.shape[1]), _edges(plot.y, values.shape[0])
    mesh = ax.pcolormesh(x, y, values, norm=norm, shading="flat", rasterized=True)  # type: ignore[attr-defined]
    bar = fig.colorbar(mesh, ax=ax)  # type: ignore[attr-defined]
    bar.set_label(plot.value_label, fontsize=8)
    bar.ax.tick_params(labelsize=7)


def _edges(values: np.ndarray, n: int) -> np.ndarray:
    """Bin edges for ``n`` cells from edges (n+1), centres (n, monotonic) or anything else (the index)."""
    v = np.asarray(values, dtype=float)
    if len(v) == n + 1 and np.all(np.isfinite(v)):
        return v
    if len(v) == n and n > 1 and np.all(np.isfinite(v)) and (np.all(np.diff(v) > 0) or np.all(np.diff(v) < 0)):
        mid = (v[1:] + v[:-1]) / 2
        return np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]])
    if len(v) == n and n == 1 and np.isfinite(v[0]):
        return np.array([v[0] - 0.5, v[0] + 0.5])
    return np.arange(n + 1, dtype=float) - 0.5
