"""validation/raster_probe.py on the CPU: the -DRASTER_M variant swaps the grid and nothing else."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from validation import raster_probe as R  # noqa: E402
from wavemodel.hardware import kernels as K  # noqa: E402


def test_the_variant_deals_pixel_tiles_first_and_keeps_the_tile():
    base = K.get("conv_f16_128x64")
    v = R.variant("conv_f16_128x64")
    assert v.name == "conv_f16_128x64_raster_m" and v.defines == (*base.defines, ("RASTER_M", 1))
    assert (v.tile_m, v.tile_n, v.threads, v.stages, v.dynamic_smem_bytes) == (
        base.tile_m, base.tile_n, base.threads, base.stages, base.dynamic_smem_bytes)
    m, n = 2 * 112 * 112, 1656                        # 196 pixel tiles, 26 output-channel tiles
    assert base.grid(m, n) == (26, 196, 1) and v.grid(m, n) == (196, 26, 1)
    assert "conv_f16_128x64_raster_m" not in K.KERNELS          # registered only inside the probe
    with pytest.raises(ValueError, match="conv kernel"):
        R.variant("tc_f16_128x128")


def test_the_source_swaps_the_raster_only_under_the_define():
    src = K.source("tc_f16_conv.cu")
    guarded = src.split("#ifdef RASTER_M")[1].split("#endif")[0]
    assert "block_m = blockIdx.x * BM" in guarded.split("#else")[0]
    assert "block_m = blockIdx.y * BM" in guarded.split("#else")[1]


def test_each_shape_runs_on_each_kernel_and_its_variant():
    jobs = R.jobs([(2, 8, 112, 112, 1656, 3, 3, 1, 1)], ["conv_f16_128x64", "conv_f16_128x128"])
    assert [j.kernel for j in jobs] == ["conv_f16_128x64", "conv_f16_128x64_raster_m", "conv_f16_128x128",
                                        "conv_f16_128x128_raster_m"]
    assert {j.shape for j in jobs} == {(2, 8, 112, 112, 1656, 3, 3, 1, 1)}
