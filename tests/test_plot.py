"""Staircase plots: the figure's content, measured overlays, markers, and files written headless."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure

import wavemodel as wm
from wavemodel import plot

H100 = wm.gpu("h100-sxm")
BPS1 = wm.KernelConfig(name="t_bps1", tile_m=128, tile_n=128, tile_k=64, threads=384, regs_per_thread=168,
                       smem_per_block_bytes=197632)


@pytest.fixture(scope="module")
def data():
    return plot.staircase_data((4096, 1, 4096), H100, "n", np.arange(256, 4353, 64), backend=BPS1)


def test_staircase_data_points_and_steps(data):
    x = data["x"]
    assert x[0] == 256 and x[-1] == 4352 and x.size == 65
    # precondition of the hand-counted steps below: the math binds everywhere, so steps are waves
    p = wm.predict_latency(wm.Gemm(4096, x, 4096), H100, backend=BPS1)
    assert np.all(p.compute_s > p.memory_s)
    assert data["steps"] == [513, 1025, 1537, 2049, 2561, 3073, 3585, 4225]   # see test_symbolic
    # 4096 x n x 4096 GEMM: 2 m n k flops, independent of the model
    np.testing.assert_array_equal(data["flops"], 2.0 * 4096 * x * 4096)
    # 32 row tiles x ceil(n / 128) column tiles, 132 per wave
    np.testing.assert_array_equal(data["tiles"], 32 * -(-x // 128))
    np.testing.assert_array_equal(data["waves"], -(-(32 * -(-x // 128)) // 132))
    assert set(data["config"]) == {"t_bps1"}


def test_staircase_data_rejects_bad_input():
    with pytest.raises(ValueError, match="free"):
        plot.staircase_data((64, 64, 64), H100, "q", [1, 2])
    with pytest.raises(ValueError, match="n"):
        plot.staircase_data((64, 64, 64), H100, "n", [0, 64])


def test_figure_has_latency_and_tflops_panels_with_steps(data):
    fig = plot.figure_from_data(data)
    assert isinstance(fig, Figure)
    ax_lat, ax_tf = fig.axes
    (line,) = ax_lat.get_lines()
    np.testing.assert_allclose(line.get_xdata(), data["x"])
    np.testing.assert_allclose(line.get_ydata(), data["latency_s"] * 1e6)
    (tf_line,) = ax_tf.get_lines()
    np.testing.assert_allclose(tf_line.get_ydata(), data["flops"] / data["latency_s"] / 1e12)
    assert "µs" in ax_lat.get_ylabel() and "TFLOP/s" in ax_tf.get_ylabel()
    assert ax_tf.get_xlabel() == "n"
    # the steps: one vertical-line collection per panel, at the exact step positions
    for ax in (ax_lat, ax_tf):
        (steps,) = ax.collections
        xs = sorted({round(seg[0][0]) for seg in steps.get_segments()})
        assert xs == data["steps"]
    labels = [t.get_text() for t in ax_lat.get_legend().get_texts()]
    assert "steps (8)" in labels
    assert "H100" in ax_lat.get_title() and "m=4096" in ax_lat.get_title()


def test_measured_points_and_markers(data):
    measured = (np.array([512, 1024]), np.array([40.0, 80.0]))
    fig = plot.figure_from_data(data, measured=measured, markers={"width_before": 1000, "width_after": 896})
    ax_lat, ax_tf = fig.axes
    scatter_lat = [c for c in ax_lat.collections if c.get_offsets().shape[0] == 2][0]
    np.testing.assert_allclose(scatter_lat.get_offsets(), [[512, 40.0], [1024, 80.0]])
    scatter_tf = [c for c in ax_tf.collections if c.get_offsets().shape[0] == 2][0]
    # TFLOP/s of a measured point: its own flops (2 * 4096 * x * 4096) over its measured time
    expected = 2.0 * 4096 * np.array([512, 1024]) * 4096 / (np.array([40.0, 80.0]) * 1e-6) / 1e12
    np.testing.assert_allclose(scatter_tf.get_offsets()[:, 1], expected, rtol=1e-9)
    labels = [t.get_text() for t in ax_lat.get_legend().get_texts()]
    assert "width_before = 1000" in labels and "width_after = 896" in labels and "measured" in labels
    vertical = [ln.get_xdata()[0] for ln in ax_tf.get_lines()[1:]]
    assert vertical == [1000, 896]


def test_measured_points_with_their_own_flops():
    fig = plot.staircase_figure([1, 2, 3], [1e-6, 2e-6, 3e-6], [1e6, 2e6, 3e6],
                                measured=([2], [4.0], [8e6]))
    scatter_tf = fig.axes[1].collections[0]
    np.testing.assert_allclose(scatter_tf.get_offsets(), [[2, 8e6 / 4e-6 / 1e12]])


def test_bad_figure_input():
    with pytest.raises(ValueError, match="1-D"):
        plot.staircase_figure([1, 2], [1e-6], [1e6, 2e6])
    with pytest.raises(ValueError, match="measured"):
        plot.staircase_figure([1, 2], [1e-6, 2e-6], [1e6, 2e6], measured=([1],))


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_save_writes_a_file(data, tmp_path, suffix):
    path = plot.save(plot.figure_from_data(data), tmp_path / f"s.{suffix}")
    assert path.stat().st_size > 1000
    head = path.read_bytes()[:8]
    assert head.startswith(b"\x89PNG") if suffix == "png" else b"<" in head


def test_plotting_does_not_touch_pyplot_or_the_backend(data):
    import sys

    backend = matplotlib.get_backend()
    plot.figure_from_data(data)
    assert matplotlib.get_backend() == backend
    if "matplotlib.pyplot" in sys.modules:      # another test may have imported it: no figures of ours
        import matplotlib.pyplot as plt

        assert plt.get_fignums() == []
