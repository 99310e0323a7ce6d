"""Staircase plots: latency and achieved TFLOP/s against one dimension, with the steps marked.

``staircase_data`` predicts the points and the exact step positions; ``staircase_figure`` draws them,
optionally with measured points (validation's predicted-vs-measured staircases) and named vertical
markers (the width solver's ``width_before`` / ``width_after``); ``save`` writes the file.
Figures use matplotlib's object API on the Agg canvas: no pyplot, no window, no global state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .gpus import gpu as lookup_gpu
from .latency import predict_latency
from .shapes import Conv2d
from .symbolic import at, problem, staircase_steps

MARKER_COLORS = ("C2", "C4", "C5", "C6", "C8", "C9")


def staircase_data(shape, gpu, free: str, values, backend=None) -> dict:
    """Predicted latency at every value of dimension ``free``, and the exact steps between the extremes.

    ``shape`` fixes the other dimensions (a ``Gemm``, an ``(m, n, k)`` tuple, or a ``Conv2d`` swept
    in its output channels with ``free="n"``); its value for ``free`` is ignored. ``values`` is a
    1-D array of positive integers.
    """
    spec = lookup_gpu(gpu)
    base = problem(shape, free)
    x = np.unique(np.asarray(values))
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{free}: expected a non-empty list of values, got {values!r}")
    p = predict_latency(at(base, free, x), spec, backend)       # validates the values
    return dict(
        dim=free, x=x, latency_s=np.asarray(p.latency_s, dtype=float), flops=np.asarray(p.flops, dtype=float),
        waves=np.asarray(p.waves), tiles=np.asarray(p.tiles),
        config=[c.name for c in np.atleast_1d(p.config)],
        steps=staircase_steps(base, spec, free, int(x[0]), int(x[-1]), backend),
        gpu=spec, backend=p.backend, shape=base,
    )


def _measured_flops(x, flops, x_measured):
    """Flops of measured points off the predicted grid: flops is linear in any one GEMM dimension."""
    if len(x) < 2:
        return np.asarray(x_measured, dtype=float) * (flops[0] / x[0])
    slope, intercept = np.polyfit(np.asarray(x, dtype=float), flops, 1)
    return slope * np.asarray(x_measured, dtype=float) + intercept


def staircase_figure(x, latency_s, flops, *, steps=(), measured=None, markers=None, xlabel="n",
                     title=None, label="predicted") -> Figure:
    """Latency (µs, top) and achieved TFLOP/s (bottom) against ``x``, steps as dotted lines.

    ``measured`` is ``(x, latency_us)`` or ``(x, latency_us, flops)``; without flops they come from the
    predicted points' line. ``markers`` maps a label to an x position (a dashed line on both panels).
    """
    x = np.asarray(x)
    latency_s, flops = np.asarray(latency_s, dtype=float), np.asarray(flops, dtype=float)
    if not (x.shape == latency_s.shape == flops.shape) or x.ndim != 1:
        raise ValueError(f"x, latency_s, flops: expected 1-D arrays of one length, got shapes "
                         f"{x.shape}, {latency_s.shape}, {flops.shape}")
    fig = Figure(figsize=(9, 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax_lat, ax_tf = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    ax_lat.plot(x, latency_s * 1e6, "-", marker=".", ms=3, lw=1, color="C0", label=label)
    ax_tf.plot(x, flops / latency_s / 1e12, "-", marker=".", ms=3, lw=1, color="C1", label=label)

    steps = np.asarray(sorted(steps), dtype=float)
    for i, ax in enumerate((ax_lat, ax_tf)):
        if steps.size:
            ax.vlines(steps, 0, 1, transform=ax.get_xaxis_transform(), colors="0.55", linestyles=":",
                      lw=0.8, label=f"steps ({steps.size})" if i == 0 else None)
        for j, (name, pos) in enumerate((markers or {}).items()):
            ax.axvline(pos, color=MARKER_COLORS[j % len(MARKER_COLORS)], ls="--", lw=1.2,
                       label=f"{name} = {pos:g}" if i == 0 else None)

    if measured is not None:
        if len(measured) not in (2, 3):
            raise ValueError("measured: expected (x, latency_us) or (x, latency_us, flops)")
        mx, m_us = np.asarray(measured[0], dtype=float), np.asarray(measured[1], dtype=float)
        m_flops = (np.asarray(measured[2], dtype=float) if len(measured) == 3
                   else _measured_flops(x, flops, mx))
        ax_lat.scatter(mx, m_us, marker="x", s=18, color="C3", zorder=3, label="measured")
        ax_tf.scatter(mx, m_flops / (m_us * 1e-6) / 1e12, marker="x", s=18, color="C3", zorder=3)

    ax_lat.set_ylabel("latency (µs)")
    ax_tf.set_ylabel("achieved TFLOP/s")
    ax_tf.set_xlabel(xlabel)
    ax_lat.set_ylim(bottom=0)
    ax_tf.set_ylim(bottom=0)
    for ax in (ax_lat, ax_tf):
        ax.grid(alpha=0.3)
    ax_lat.legend(loc="upper left", fontsize="small")
    if title:
        ax_lat.set_title(title, fontsize="medium")
    return fig


def figure_from_data(data: dict, *, measured=None, markers=None, title=None) -> Figure:
    """``staircase_figure`` of what ``staircase_data`` returned, titled with the fixed dimensions."""
    if title is None:
        shape, free = data["shape"], data["dim"]
        g = shape.gemm() if isinstance(shape, Conv2d) else shape
        fixed = " ".join(f"{d}={getattr(g, d)}" for d in ("m", "n", "k") if d != free)
        title = f"{data['gpu'].display_name} · {data['backend']} · {fixed} batch={g.batch} {g.dtype}"
    return staircase_figure(data["x"], data["latency_s"], data["flops"], steps=data["steps"],
                            measured=measured, markers=markers, xlabel=data["dim"], title=title)


def save(fig: Figure, path, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix: .png, .svg, .pdf) and return the path."""
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path
