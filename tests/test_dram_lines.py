"""latency.strided_window_bytes: a 1x1 strided conv's input rows move in whole 128-byte lines, against a
line-by-line count and against the DRAM reads Nsight Compute counted (ncu_conv_parity/)."""

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wavemodel as wm
from wavemodel import latency as L

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from validation import conv_l2_sectors as CS  # noqa: E402


def lines_touched(starts, length: int) -> int:
    """Distinct 128-byte lines under byte runs [s, s + length)."""
    return len({b // 128 for s in starts for b in range(s, s + length, 16)} | {(s + length - 1) // 128
                                                                                for s in starts})


@settings(max_examples=80, deadline=None)
@given(c=st.integers(1, 80).map(lambda v: 8 * v), stride=st.sampled_from([2, 3, 4]),
       q=st.integers(1, 24).map(lambda v: 8 * v), base=st.sampled_from(range(0, 128, 16)))
def test_a_rows_windows_fetch_the_lines_they_touch(c, stride, q, base):
    pixel = 2 * c                                   # fp16: one window is a pixel (1x1 filter)
    brute = lines_touched([base + j * stride * pixel for j in range(q)], pixel) * 128
    got = q * L._window_line_bytes(np.float64(pixel), np.float64(stride * pixel), float(base))
    assert abs(got - brute) <= 128          # the row's last line aside, exact
    # the public count: the aligned start where the row's pitch is whole lines, else the mean
    assert q * L.strided_window_bytes(pixel, stride * pixel, 128 * 7) == pytest.approx(
        q * L._window_line_bytes(np.float64(pixel), np.float64(stride * pixel), 0.0), rel=1e-15)
    mean = q * L.strided_window_bytes(pixel, stride * pixel, 16)
    assert q * pixel <= mean <= q * stride * pixel + 128


def test_ncu_dram_reads_of_strided_1x1_convs():
    folder = ROOT / "validation" / "data" / "h100-sxm" / "ncu_conv_parity"
    checked = 0
    for _, spec, (n, c, h, w, k, r, s, stride, pad), met in CS.ncu_shapes(folder):
        if (r, stride) != (1, 2):
            continue
        shape = wm.Conv2d(n=n, c=c, h=h, w=w, k=k, r=r, s=s, stride=stride, padding=pad)
        outputs = n * shape.p * shape.q * k * 2
        model = L.dram_bytes(shape) - outputs                       # inputs and filter
        pixels = n * shape.p * shape.q * c * 2                      # the pixels the windows use
        measured = met["dram__bytes_read.sum"]
        assert model == pytest.approx(measured, rel=0.04), spec     # whole lines: within 4 %
        assert measured > 1.2 * pixels                              # the used pixels alone fall short
        checked += 1
    assert checked == 8          # C = 24, 32, 200, 208 and a 57x57 image on conv_f16_128x64; two on 128x128


def test_contiguous_windows_are_unchanged():
    # a window at least a stride wide (3x3 stride 2, any stride 1) reads contiguous rows: no line count
    for r, stride, pad in ((3, 2, 1), (1, 1, 0), (3, 1, 1)):
        shape = wm.Conv2d(n=4, c=24, h=56, w=56, k=64, r=r, s=r, stride=stride, padding=pad)
        rows = cols = min(56, (shape.p - 1) * stride + r)
        expected = 4 * rows * cols * 24 * 2 + 64 * r * r * 24 * 2 + 4 * shape.p * shape.q * 64 * 2
        assert L.dram_bytes(shape) == expected
    dims = dict(n=4, h=56, w=56, k=64, r=1, s=1, stride=2, padding=0)
    one = [L.dram_bytes(wm.Conv2d(c=c, **dims)) for c in (24, 200)]
    np.testing.assert_allclose(L.dram_bytes(wm.Conv2d(c=np.array([24, 200]), **dims)), one, rtol=1e-15)


def test_the_line_count_on_the_new_shapes_timed_after_it():
    # validation/dram_lines_probe.py: predictions written before Nsight Compute read these 14 shapes
    from validation import dram_lines_probe as DL
    rows = DL.comparison(ROOT / "validation" / "data" / "h100-sxm" / "ncu_dram_lines")
    assert len(rows) == 14
    for r in rows:
        assert abs(r["model"] / r["ncu"] - 1) < 0.05, r["shape"]            # whole lines: within 5 %
        assert r["model"] == pytest.approx(DL.read_bytes(DL.shape_of(r["shape"]))[0], rel=1e-9)
    pixels_off = sorted(abs(r["used"] / r["ncu"] - 1) for r in rows)
    assert pixels_off[2] > 0.25 and pixels_off[-1] > 0.6      # the pixels alone: 12 of 14 over 25 % off
