"""latency.partial_line_write_s: C's writes cost partial_line_write_factor times their write time where
rows of C start off 128-byte lines, and Nsight Compute's write requests behind it (ncu_conv_small_c_wide/)."""

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

import wavemodel as wm
from wavemodel import calibration, configs
from wavemodel import latency as L
from wavemodel.gpus import gpu

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from validation import conv_l2_sectors as CS  # noqa: E402

H100 = gpu("h100-sxm")


def test_rows_off_lines():
    assert not L.rows_off_lines(64, "fp16") and not L.rows_off_lines(1664, "fp16")
    assert list(L.rows_off_lines(np.array([8, 16, 32, 72, 1648, 1656]), "fp16")) == [True] * 6
    assert not L.rows_off_lines(32, "fp32") and L.rows_off_lines(48, "fp32")


def terms(shape, factor):
    cfg = configs.own_kernels()["conv_f16_128x64"]
    prof = calibration.profile_for(H100, "own")
    cfg = dataclasses.replace(prof.apply(configs.for_filter(cfg, False, prof.families)),
                              partial_line_write_factor=factor)
    return L.config_latency(shape.gemm(), cfg, H100, prof, shape=shape), cfg


@pytest.mark.parametrize("k, off", [(1656, True), (1664, False)])
def test_the_extra_write_time_where_rows_are_off_lines(k, off):
    shape = wm.Conv2d(n=2, c=8, h=112, w=112, k=k, r=3, s=3, stride=1, padding=1)
    base, cfg = terms(shape, 1.0)
    more, _ = terms(shape, 1.5)
    written = 2 * 112 * 112 * k * 2                                  # C's bytes, fp16
    extra = written * 0.5 / L.write_rate_bytes_per_s(cfg, H100) if off else 0.0
    assert float(more["scalar_write_s"] - base["scalar_write_s"]) == pytest.approx(extra, rel=1e-12, abs=0)
    assert float(more["latency_s"]) >= float(base["latency_s"])
    assert (float(more["latency_s"]) > float(base["latency_s"])) == off


def test_nsight_compute_write_requests_fall_where_rows_fill_lines():
    """conv_f16_128x64 at K = 1664 (26 whole lines a row) sends 13-14 % fewer L2 write requests than at
    K = 1648 and 1656; conv_f16_128x128 sends about the same at all three."""
    folder = ROOT / "validation" / "data" / "h100-sxm" / "ncu_conv_small_c_wide"
    shapes = (folder / "shapes.txt").read_text().split()
    assert shapes[:3] == ["2,8,112,112,1648,3,3,1,1", "2,8,112,112,1656,3,3,1,1", "2,8,112,112,1664,3,3,1,1"]
    req = "lts__t_requests_srcunit_tex_op_write.sum"
    for tile_n, lo, hi in ((64, 0.85, 0.88), (128, 1.0, 1.03)):
        met = CS.ncu_last_launches(folder / f"conv_f16_128x{tile_n}.csv", len(shapes))
        for j in (0, 1):
            assert lo < met[2][req] / met[j][req] < hi, (tile_n, shapes[j])


def test_the_shipped_conv_factors():
    """The fit gives conv_f16_128x64's families the factor and conv_f16_128x128's about none, as the
    write requests above show."""
    fams = calibration.profile_for(H100, "own").families
    assert fams["conv_f16_128x64"]["partial_line_write_factor"] > 1.1
    assert fams["conv_f16_128x64_1x1"]["partial_line_write_factor"] > 1.1
    assert fams["conv_f16_128x128"]["partial_line_write_factor"] < 1.05
    assert fams["conv_f16_128x128_1x1"]["partial_line_write_factor"] < 1.05


def test_alignment_penalties_name_the_charge():
    from wavemodel.penalties import alignment_penalties

    _, cfg = terms(wm.Conv2d(n=2, c=64, h=56, w=56, k=256, r=3, s=3, padding=1), 1.28)
    off = alignment_penalties(wm.Conv2d(n=2, c=64, h=56, w=56, k=1656, r=3, s=3, padding=1), cfg)
    on = alignment_penalties(wm.Conv2d(n=2, c=64, h=56, w=56, k=1664, r=3, s=3, padding=1), cfg)
    assert off == ["output pixels start off 128-byte lines (K x 2 B = 3312 B): the output's DRAM writes "
                   "x1.28"]
    assert on == []
