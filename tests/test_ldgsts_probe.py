"""Nsight Compute's per-instruction counters of our convs' cp.async gathers (ncu_ldgsts/): the sector
replay of validation/conv_l2_sectors.py against them, and the filter loads' wavefronts that its README
reads from the two kernels' instruction mixes."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from validation import conv_l2_sectors as CS  # noqa: E402

FOLDER = ROOT / "validation" / "data" / "h100-sxm" / "ncu_ldgsts"
INST = "sm__sass_inst_executed_op_ldgsts_cache_bypass.sum"
SECTORS = "sm__sass_l1tex_t_sectors_pipe_lsu_mem_global_op_ldgsts_cache_bypass.sum"
WAVES = "sm__sass_l1tex_data_pipe_lsu_wavefronts_mem_shared_op_ldgsts_cache_bypass.sum"


def probe():
    shapes = (FOLDER / "shapes.txt").read_text().split()
    by_tile = {tn: CS.ncu_last_launches(FOLDER / f"conv_f16_128x{tn}.csv", len(shapes)) for tn in (64, 128)}
    return [(tuple(map(int, s.split(","))), by_tile[64][j], by_tile[128][j]) for j, s in enumerate(shapes)]


def split_waves(m64, m128):
    """Wavefronts per A and per filter instruction: per K tile a warp issues 4 A and 2 filter loads on
    conv_f16_128x64, 4 and 4 on conv_f16_128x128, with the same addresses per instruction."""
    w64, w128 = m64[WAVES] / m64[INST], m128[WAVES] / m128[INST]
    filt = 4 * w128 - 3 * w64
    return (6 * w64 - 2 * filt) / 4, filt


def test_the_pair_sector_replay_is_nsight_computes_count():
    calls = probe()
    assert len(calls) == 34
    for dims, m64, m128 in calls:
        for tile_n, met in ((64, m64), (128, m128)):
            a, b = CS.read_counts(dims, tile_n, group=2, unit=32)
            assert a + b == pytest.approx(met[SECTORS], rel=0.005), (dims, tile_n)


def test_filter_loads_in_the_prologue_take_four_wavefronts():
    seen = 0
    for dims, m64, m128 in probe():
        c, r, s = dims[1], dims[5], dims[6]
        k_tiles = -(-(r * s * c) // 32)
        a, filt = split_waves(m64, m128)
        if k_tiles <= 3:        # every K tile is loaded before the main loop starts (4 stages)
            assert filt == pytest.approx(4.0, abs=0.06), dims
            seen += 1
        else:                   # the main loop's filter loads take more
            assert filt > 5.0, dims
        assert a >= 3.99        # 512 bytes of shared memory: at least four 128-byte wavefronts
    assert seen == 15


def test_main_loop_filter_wavefronts_by_channel_class():
    """Reading the prologue's three K tiles as 4 wavefronts, the main loop's filter loads take 6.0 where
    filter rows are 32-channel aligned, 7.05-7.5 at C % 32 = 16 and 9.3-10.3 off 32-byte sectors."""
    main = {}
    for dims, m64, m128 in probe():
        c, r, s = dims[1], dims[5], dims[6]
        k_tiles = -(-(r * s * c) // 32)
        if k_tiles > 3:
            main.setdefault(CS.channel_class(c), []).append((split_waves(m64, m128)[1] * k_tiles - 12)
                                                            / (k_tiles - 3))
    assert min(main["aligned"]) == pytest.approx(6.0, abs=0.02)
    assert max(main["aligned"]) == pytest.approx(6.0, abs=0.02)
    assert min(main["straddle"]) > 7.0 and max(main["straddle"]) < 7.6
    assert min(main["off"]) > 9.2 and max(main["off"]) < 10.4
