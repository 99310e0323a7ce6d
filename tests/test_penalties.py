"""alignment_penalties names the alignment terms a calibrated configuration charges one call."""

import dataclasses
import json

import numpy as np
import pytest

import wavemodel as wm
from wavemodel.cli import main
from wavemodel.penalties import alignment_penalties

SIMT = wm.KernelConfig(name="t_pen_simt", tile_m=128, tile_n=64, tile_k=8, threads=128, regs_per_thread=128,
                       smem_per_block_bytes=12544, math="simt", dtypes=("fp32",))
CONV = wm.KernelConfig(name="t_pen_conv", tile_m=128, tile_n=64, tile_k=32, threads=128, regs_per_thread=168,
                       smem_per_block_bytes=49152, kind="conv", channel_traffic_factor=2.0)


def test_line_aligned_rows_only_where_the_factor_is_on_and_k_is_line_aligned():
    on = dataclasses.replace(SIMT, line_aligned_rows_factor=1.1)
    aligned = wm.Gemm(m=3712, n=1856, k=1152, dtype="fp32")
    offset = wm.Gemm(m=3712, n=1856, k=1168, dtype="fp32")
    assert alignment_penalties(aligned, SIMT) == []                  # factor off: nothing to say
    (line,) = alignment_penalties(aligned, on)
    assert "4608 B" in line and "x1.10" in line
    assert alignment_penalties(offset, on) == []                     # 4672 B: not a multiple of 128
    # a fitted factor that rounds to x1.00 (simt_f32_64x64's 1.0002) costs nothing worth naming
    assert alignment_penalties(aligned, dataclasses.replace(SIMT, line_aligned_rows_factor=1.0002)) == []


def test_element_wise_loads_and_stores_name_their_operand():
    cfg = dataclasses.replace(SIMT, scalar_load_bytes_per_s=1e11, scalar_store_factor=3.0)
    notes = alignment_penalties(wm.Gemm(m=1332, n=527, k=21, dtype="fp32"), cfg)
    assert [n.split(" are ")[0] for n in notes] == ["rows of A", "rows of B", "rows of C"]
    assert alignment_penalties(wm.Gemm(m=1332, n=528, k=20, dtype="fp32"), cfg) == []


def test_conv_channels_off_sectors():
    # 3x3, C = 72: the input's pairs are off a sector half the time (1.5 sectors each), one pair per
    # filter-row boundary spans two rows and the last is one chunk: (39 x 1.5 + 2 + 1) / 40.5 = 1.519
    # sectors per useful sector, x2.04 at a factor of 2 for 1.5; the filter's (40 x 1.5 + 1) / 40.5
    (line,) = alignment_penalties(wm.Conv2d(n=8, c=72, h=28, w=28, k=128, r=3, s=3, padding=1), CONV)
    assert "144 B" in line and "L2 traffic x2.04 (input rows), x2.01 (filter rows)" in line
    assert alignment_penalties(wm.Conv2d(n=8, c=80, h=28, w=28, k=128, r=3, s=3, padding=1), CONV) == []
    both = dataclasses.replace(CONV, channel_dram_factor=1.21)
    (line,) = alignment_penalties(wm.Conv2d(n=8, c=72, h=28, w=28, k=128, r=3, s=3, padding=1), both)
    assert line.endswith("L2 traffic x2.04 (input rows), x2.01 (filter rows), DRAM time x1.21")
    # stride 2 over even images: every 1x1 tap reads even pixels, on sectors; only the filter pays
    (line,) = alignment_penalties(wm.Conv2d(n=8, c=200, h=28, w=28, k=128, r=1, s=1, stride=2), CONV)
    assert "L2 traffic x1.08 (input rows), x2.04 (filter rows)" in line
    dram_only = dataclasses.replace(both, channel_traffic_factor=1.0)
    (line,) = alignment_penalties(wm.Conv2d(n=8, c=72, h=28, w=28, k=128, r=3, s=3, padding=1), dram_only)
    assert line.endswith("(C x 2 B = 144 B): DRAM time x1.21")


def test_rows_of_c_off_sectors_only_where_the_factor_is_on():
    tc = wm.KernelConfig(name="t_pen_tc", tile_m=128, tile_n=256, tile_k=64, threads=384, regs_per_thread=168,
                         smem_per_block_bytes=200000, off_sector_write_factor=1.3)
    (line,) = alignment_penalties(wm.Gemm(m=15080, n=14936, k=16), tc)      # 29872-byte rows
    assert "29872 B" in line and "x1.30" in line
    assert alignment_penalties(wm.Gemm(m=15080, n=14944, k=16), tc) == []    # 29888 B: on sectors
    assert alignment_penalties(wm.Gemm(m=15080, n=14936, k=16), dataclasses.replace(
        tc, off_sector_write_factor=1.0)) == []
    # a conv's output rows are its pixels' K channels: 56 fp16 channels are 112 bytes
    conv = dataclasses.replace(CONV, channel_traffic_factor=1.0, off_sector_write_factor=1.3)
    stem = wm.Conv2d(n=32, c=3, h=224, w=224, k=56, r=7, s=7, stride=2, padding=3)
    (line,) = alignment_penalties(stem, conv)
    assert line.startswith("output pixels") and "K x 2 B = 112 B" in line


def test_one_shape_at_a_time():
    with pytest.raises(ValueError, match="one shape"):
        alignment_penalties(wm.Gemm(m=np.array([8, 16]), n=8, k=8), SIMT)


def test_predict_prints_and_returns_them(capsys):
    args = ["predict", "--m", "3712", "--n", "1856", "--k", "1152", "--dtype", "fp32", "--backend",
            "simt_f32_128x64"]
    assert main(args) == 0
    # the shipped H100 profile fits simt_f32_128x64 a factor above 1 (ncu: 13-18 % slower at K % 32 == 0)
    shape = wm.Gemm(m=3712, n=1856, k=1152, dtype="fp32")
    assert wm.predict_latency(shape, "h100-sxm", "simt_f32_128x64").config.line_aligned_rows_factor > 1
    assert "128-byte lines" in capsys.readouterr().out
    assert main([*args[:6], "1168", *args[7:], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["alignment_penalties"] == []
