import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wavemodel as wm
from wavemodel.configs import own_kernels
from wavemodel.waves import wave_stats

H100 = wm.gpu("h100-sxm")
# 8 warps, 128 regs -> 2 blocks/SM on an H100 (register-limited): wave = 264 blocks
CFG = wm.KernelConfig(name="t128", tile_m=128, tile_n=128, tile_k=32, threads=256, regs_per_thread=128,
                      smem_per_block_bytes=65536, efficiency=0.5, tile_overhead_s=0.0, kernel_fixed_s=3e-6)
SM_FP16 = 989.4e12 / 132
DRAM_BW = 3.35e12
L2_BW = 48 * 132 * 1.98e9           # uncalibrated defaults (calibration.py): bytes per SM clock
SM_BW = 64 * 1.98e9


def test_full_waves_and_partial_last_wave():
    ws = wave_stats(2048, 4096, 1, CFG, H100)          # 16 x 32 = 512 tiles
    assert (int(ws.tiles), ws.blocks_per_sm, ws.wave_size, int(ws.waves)) == (512, 2, 264, 2)
    assert int(ws.tail_tiles) == 512 - 264
    assert ws.tail_utilization == pytest.approx(248 / 264)
    assert int(ws.tail_blocks_per_sm) == 2                # 248 blocks over 132 SMs: busiest gets 2


def test_sub_wave_grid():
    ws = wave_stats(1000, 1000, 1, CFG, H100)           # 8 x 8 = 64 tiles, fewer than 132 SMs
    assert (int(ws.tiles), int(ws.waves), int(ws.tail_blocks_per_sm)) == (64, 1, 1)
    assert ws.tail_utilization == pytest.approx(64 / 264)
    assert ws.tile_utilization == pytest.approx(1000 * 1000 / (1024 * 1024))


def test_split_k_and_cluster_rounding():
    cfg = wm.KernelConfig(name="c", tile_m=128, tile_n=256, tile_k=64, threads=384, regs_per_thread=168,
                          smem_per_block_bytes=200_000, cluster_m=2, split_k=3)
    ws = wave_stats(300, 300, 2, cfg, H100)
    # ceil(300/128) = 3 -> rounded up to the cluster's 2 -> 4; ceil(300/256) = 2; x batch 2 x split 3
    assert (int(ws.tiles_m), int(ws.tiles_n), int(ws.tiles)) == (4, 2, 48)
    assert ws.wave_size == 132                               # 1 block/SM (smem), 66 clusters of 2


def test_latency_hand_computed():
    p = wm.predict_latency(wm.Gemm(2048, 4096, 4096), H100, backend=CFG)
    t_tile = 2 * 128 * 128 * 4096 / (SM_FP16 * 0.5)       # one tile's math at half the SM's peak
    compute = t_tile * (1 * 2 + 2)                          # one full wave of 2 blocks/SM + tail of 2
    dram = ((2048 * 4096 + 4096 * 4096) * 2 + 2048 * 4096 * 2) / (DRAM_BW * 0.85)
    panel = (128 + 128) * 4096 * 2                          # one tile's A and B panels, bytes
    l2 = 512 * panel / L2_BW
    ingest = (2 + 2) * panel / SM_BW                        # the busiest SM runs 4 tiles
    assert max(dram, l2, ingest) < compute
    assert p.memory_s == pytest.approx(max(dram, l2, ingest), rel=1e-12)
    assert p.latency_s == pytest.approx(3.0e-6 + compute, rel=1e-12)
    assert (p.waves, p.tiles, p.blocks_per_sm, p.bound) == (2, 512, 2, "compute")


def test_tail_of_one_block_per_sm_costs_half_a_wave_only_when_a_lone_block_runs_faster():
    slow = wm.predict_latency(wm.Gemm(128 * 133, 256, 4096), H100, backend=CFG)  # 266 tiles: 2 waves
    cfg_fast_alone = wm.KernelConfig(**{**CFG.__dict__, "single_block_speedup": 2.0})
    fast = wm.predict_latency(wm.Gemm(128 * 133, 256, 4096), H100, backend=cfg_fast_alone)
    t_tile = 2 * 128 * 128 * 4096 / (SM_FP16 * 0.5)
    assert slow.latency_s == pytest.approx(3e-6 + t_tile * (2 + 2), rel=1e-12)   # tail costs a wave
    assert fast.latency_s == pytest.approx(3e-6 + t_tile * (2 + 1), rel=1e-12)   # tail: 1 block/SM


def test_decode_shape_is_memory_bound_with_a_skinny_tile_and_compute_bound_with_a_square_one():
    skinny = wm.KernelConfig(name="s", tile_m=8, tile_n=128, tile_k=64, threads=128, regs_per_thread=64,
                             smem_per_block_bytes=40000, efficiency=0.5)
    p = wm.predict_latency(wm.Gemm(1, 8192, 8192), H100, backend=skinny)
    assert p.bound == "memory"
    dram = (8192 + 8192 * 8192 + 8192) * 2 / (DRAM_BW * 0.85)
    ingest = 1 * (8 + 128) * 8192 * 2 / SM_BW      # 64 tiles, one per SM
    assert p.memory_s == pytest.approx(max(dram, ingest))
    # a 128x128 tile computes 127 padding rows: 64 tiles of 128x128x8192 at half of an SM's peak
    square = wm.predict_latency(wm.Gemm(1, 8192, 8192), H100, backend=CFG)
    assert square.bound == "compute"
    assert square.compute_s == pytest.approx(2 * (2 * 128 * 128 * 8192) / (SM_FP16 * 0.5))


def test_tiny_shape_is_latency_bound():
    cfg = wm.KernelConfig(**{**CFG.__dict__, "efficiency": 1.0})
    assert wm.predict_latency(wm.Gemm(8, 8, 8), H100, backend=cfg).bound == "latency"


def test_tuple_is_fp16_gemm_and_conv_defaults_to_cudnn():
    p = wm.predict_latency((512, 512, 512), H100)
    assert p.backend == "cublas" and p.config.dtypes and "fp16" in p.config.dtypes
    c = wm.predict_latency(wm.Conv2d(n=8, c=64, h=28, w=28, k=64, r=3, s=3, padding=1), H100)
    assert c.backend == "cudnn"
    with pytest.raises(ValueError, match="shape: expected"):
        wm.predict_latency((1, 2), H100)
    with pytest.raises(ValueError, match="backend: unknown backend 'cutlass'"):
        wm.predict_latency((8, 8, 8), H100, backend="cutlass")


dims = st.integers(min_value=1, max_value=20000)


@settings(max_examples=200, deadline=None)
@given(m=dims, n=dims, k=dims, dm=st.integers(0, 3000), axis=st.sampled_from("mnk"),
       split=st.sampled_from([1, 2, 4]), bps_cfg=st.sampled_from([CFG, wm.KernelConfig(
           name="big", tile_m=256, tile_n=128, tile_k=64, threads=384, regs_per_thread=168,
           smem_per_block_bytes=200_000, cluster_n=2, single_block_speedup=1.0)]))
def test_latency_never_decreases_when_a_dimension_grows(m, n, k, dm, axis, split, bps_cfg):
    cfg = wm.KernelConfig(**{**bps_cfg.__dict__, "split_k": split})
    a = dict(m=m, n=n, k=k)
    b = dict(a)
    b[axis] += dm
    la = wm.predict_latency(wm.Gemm(**a), H100, backend=cfg).latency_s
    lb = wm.predict_latency(wm.Gemm(**b), H100, backend=cfg).latency_s
    assert lb >= la


@settings(max_examples=100, deadline=None)
@given(m=dims, n=dims, k=dims, batch=st.integers(1, 64))
def test_waves_and_tiles_match_their_definitions(m, n, k, batch):
    p = wm.predict_latency(wm.Gemm(m, n, k, batch=batch), H100, backend=CFG)
    tiles = batch * -(-m // 128) * -(-n // 128)
    assert p.tiles == tiles
    assert p.waves == -(-tiles // 264)
    assert (p.waves - 1) * 264 < p.tiles <= p.waves * 264
    assert p.tail_utilization == pytest.approx((tiles - (p.waves - 1) * 264) / 264)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(dims, dims, dims), min_size=1, max_size=30),
       st.sampled_from(["fp16", "fp32", "bf16", "tf32"]))
def test_vectorised_equals_scalar(shapes, dtype):
    m, n, k = (np.array(x) for x in zip(*shapes, strict=True))
    vec = wm.predict_latency(wm.Gemm(m, n, k, dtype=dtype), H100)
    for i, (mi, ni, ki) in enumerate(shapes):
        one = wm.predict_latency(wm.Gemm(mi, ni, ki, dtype=dtype), H100)
        assert vec.latency_s[i] == one.latency_s
        assert vec.config[i] is one.config or vec.config[i] == one.config
        assert (vec.waves[i], vec.tiles[i], vec.blocks_per_sm[i], vec.bound[i]) == (
            one.waves, one.tiles, one.blocks_per_sm, one.bound)
        assert vec.tail_utilization[i] == one.tail_utilization


def test_broadcasting_shapes():
    p = wm.predict_latency(wm.Gemm(m=np.arange(64, 8193, 64)[:, None], n=np.array([1024, 4096]), k=4096),
                           H100)
    assert p.latency_s.shape == p.waves.shape == p.config.shape == (128, 2)
    assert p.latency_s[5, 1] == wm.predict_latency(wm.Gemm(384, 4096, 4096), H100).latency_s


def test_conv_dram_traffic_counts_real_tensors_not_the_replicated_implicit_gemm():
    from wavemodel.latency import dram_bytes

    c = wm.Conv2d(n=32, c=64, h=56, w=56, k=64, r=3, s=3, padding=1)
    expected = (32 * 56 * 56 * 64 + 64 * 3 * 3 * 64 + 32 * 56 * 56 * 64) * 2
    assert dram_bytes(c) == expected
    g = c.gemm()                                  # its implicit GEMM reads A = 9 x the activations
    assert dram_bytes(g) == (g.m * g.k + g.k * g.n + g.m * g.n) * 2 > 4 * expected


def test_a_conv_library_runs_its_gemm_kernels_only_on_plain_gemm_convs():
    gemm_only = wm.KernelConfig(name="g", tile_m=128, tile_n=128, tile_k=64, threads=256, regs_per_thread=128,
                                smem_per_block_bytes=65536, efficiency=1.0, plain_gemm_only=True)
    slow_conv = wm.KernelConfig(name="c", tile_m=128, tile_n=128, tile_k=64, threads=256, regs_per_thread=128,
                                smem_per_block_bytes=65536, efficiency=0.1)
    from wavemodel.calibration import UNCALIBRATED
    from wavemodel.latency import _Shared, config_latency, select

    conv = wm.Conv2d(n=np.array([8, 8]), c=64, h=28, w=28, k=64, r=np.array([3, 1]), s=np.array([3, 1]),
                     padding=np.array([1, 0]))
    g = conv.gemm()
    terms = [config_latency(g, c, H100, UNCALIBRATED, conv, _Shared(g, conv)) for c in (gemm_only, slow_conv)]
    assert np.all(terms[0]["latency_s"] < terms[1]["latency_s"])    # the GEMM kernel would win both
    assert list(select(g, (gemm_only, slow_conv), terms, conv)) == [1, 0]   # 3x3: the conv kernel


def test_library_prediction_partitions_mixed_convs_like_their_scalar_predictions():
    # grouped and plain convs, 1x1 and 3x3, aligned and not, in one vectorised cuDNN call
    c = np.array([64, 64, 32, 24, 8])
    k = np.array([64, 128, 32, 24, 16])
    groups = np.array([1, 1, 32, 1, 8])
    r = np.array([1, 3, 3, 1, 3])
    pad = r // 2
    vec = wm.predict_latency(wm.Conv2d(n=8, c=c, h=28, w=28, k=k, r=r, s=r, padding=pad, groups=groups), H100)
    for i in range(c.size):
        ri = int(r[i])
        one = wm.predict_latency(wm.Conv2d(n=8, c=int(c[i]), h=28, w=28, k=int(k[i]), r=ri, s=ri,
                                           padding=int(pad[i]), groups=int(groups[i])), H100)
        assert vec.latency_s[i] == one.latency_s and vec.config[i].name == one.config.name


# an nvjet-like kernel: one 384-thread block per SM, its M tile sized to the problem in multiples of 8
FIT = wm.KernelConfig(name="fit", tile_m=256, tile_n=64, tile_k=64, threads=384, regs_per_thread=168,
                      smem_per_block_bytes=200_000, efficiency=0.8, tile_m_granule=8)


def test_a_problem_sized_tile_fills_the_waves_its_largest_tile_needs():
    # M = 6504, N = 104: 26 x 2 tiles of 256 rows fill one wave of 132 partly; at most 66 tiles along M
    # fit in it, so 104 rows (the tile cuBLAS ran: nvjet_..._64x104_...) cover M in 63 x 2 = 126 tiles
    fitted = wm.predict_latency(wm.Gemm(m=6504, n=104, k=1024), H100, backend=FIT)
    assert (fitted.tiles, fitted.waves) == (126, 1)
    fixed = dataclasses.replace(FIT, tile_m=104, tile_m_granule=0)
    assert fitted.latency_s == pytest.approx(wm.predict_latency(wm.Gemm(m=6504, n=104, k=1024), H100,
                                                                backend=fixed).latency_s, rel=1e-12)
    # past one wave of the largest tiles (79 x 2 of 256 rows), two full waves: 132 x 2 tiles of 152 rows
    two = wm.predict_latency(wm.Gemm(m=20000, n=104, k=1024), H100, backend=FIT)
    assert (two.tiles, two.waves) == (264, 2)
    # vectorised shapes agree with scalar ones, and a tile never exceeds tile_m
    m = np.array([8, 100, 6504, 13000, 40000])
    vec = wm.predict_latency(wm.Gemm(m=m, n=104, k=1024), H100, backend=FIT)
    for i, mi in enumerate(m):
        assert vec.latency_s[i] == wm.predict_latency(wm.Gemm(m=int(mi), n=104, k=1024), H100,
                                                      backend=FIT).latency_s
    assert np.all(vec.tiles >= 2 * np.ceil(m / 256))


def brute_valid_taps(conv):
    """Share of (output pixel, tap) pairs inside the input, counted one pair at a time."""
    inside = total = 0
    for p in range(conv.p):
        for q in range(conv.q):
            for r in range(conv.r):
                for s in range(conv.s):
                    h = p * conv.stride - conv.padding + r * conv.dilation
                    w = q * conv.stride - conv.padding + s * conv.dilation
                    inside += 0 <= h < conv.h and 0 <= w < conv.w
                    total += 1
    return inside / total


@pytest.mark.parametrize("geom", [dict(h=7, w=7, r=3, s=3, padding=1), dict(h=7, w=9, r=3, s=5, padding=2),
                                  dict(h=14, w=14, r=3, s=3, stride=2, padding=1),
                                  dict(h=13, w=11, r=7, s=7, stride=2, padding=3),
                                  dict(h=12, w=12, r=3, s=3, padding=2, dilation=2),
                                  dict(h=5, w=5, r=3, s=3, padding=4),
                                  dict(h=56, w=56, r=1, s=1, stride=2), dict(h=28, w=28, r=3, s=3)])
def test_valid_tap_share_equals_counting_every_pair(geom):
    from wavemodel.latency import valid_tap_fraction
    conv = wm.Conv2d(n=2, c=16, k=16, **geom)
    assert valid_tap_fraction(conv) == pytest.approx(brute_valid_taps(conv), rel=1e-12)
    # arrays broadcast to the same values
    many = dataclasses.replace(conv, h=np.array([conv.h, conv.h + 3]))
    assert valid_tap_fraction(many) == pytest.approx(
        [brute_valid_taps(conv), brute_valid_taps(dataclasses.replace(conv, h=conv.h + 3))], rel=1e-12)
    assert valid_tap_fraction(wm.Gemm(m=64, n=64, k=64)) == 1.0


def test_padding_taps_that_are_zero_filled_move_no_panel_bytes():
    from wavemodel.calibration import UNCALIBRATED
    from wavemodel.latency import _Shared, config_latency, panel_bytes_per_k_tile
    cfg = wm.KernelConfig(name="zf", kind="conv", tile_m=128, tile_n=64, tile_k=32, threads=128,
                          regs_per_thread=128, smem_per_block_bytes=49152, efficiency=0.8)
    free = dataclasses.replace(cfg, padding_loads_free=True)
    conv = wm.Conv2d(n=32, c=64, h=7, w=7, k=64, r=3, s=3, padding=1)      # (19 / 21)**2 of taps inside
    g = conv.gemm()
    full, zf = (config_latency(g, c, H100, UNCALIBRATED, conv, _Shared(g, conv)) for c in (cfg, free))
    a, b = panel_bytes_per_k_tile(cfg, "fp16", 128, 0)[0], panel_bytes_per_k_tile(cfg, "fp16", 0, 64)[0]
    assert zf["l2_s"] / full["l2_s"] == pytest.approx((a * (19 / 21) ** 2 + b) / (a + b), rel=1e-12)
    assert zf["ingest_s"] < full["ingest_s"] and zf["compute_s"] == full["compute_s"]
    # no padding: nothing changes
    plain = dataclasses.replace(conv, padding=0)
    full, zf = (config_latency(g2, c, H100, UNCALIBRATED, plain, _Shared(g2, plain))
                for g2 in [plain.gemm()] for c in (cfg, free))
    assert zf["l2_s"] == full["l2_s"]


def test_taps_reread_the_input_where_a_tap_pass_outgrows_the_l2():
    from wavemodel.calibration import UNCALIBRATED
    from wavemodel.latency import TAP_REUSE_L2_SHARES, _Shared, config_latency, tap_reread_bytes
    l2 = H100.l2_bytes
    conv = wm.Conv2d(n=8, c=576, h=112, w=112, k=48, r=3, s=3, padding=1)
    inputs = 8 * 112 * 112 * 576 * 2
    lo, hi = (share * l2 for share in TAP_REUSE_L2_SHARES)
    rows = np.array([lo / 1152 - 10, (lo + hi) / 2 / 1152, hi / 1152 + 10])    # one pass: rows x 1152 bytes
    # under half the L2 every reuse hits; halfway up the ramp half the 8 extra reads per input element
    # miss; past the L2 all of them
    np.testing.assert_allclose(tap_reread_bytes(conv, rows, l2), [0, 4 * inputs, 8 * inputs], rtol=1e-12)
    # stride 2 reads each element (3/2)**2 times, and a pass lasts two taps: twice the bytes per row
    s2 = dataclasses.replace(conv, stride=2)
    np.testing.assert_allclose(tap_reread_bytes(s2, rows / 2, l2), [0, 1.25 * inputs / 2, 1.25 * inputs],
                               rtol=1e-12)
    assert tap_reread_bytes(dataclasses.replace(conv, r=1, s=1, padding=0), rows, l2)[-1] == 0
    assert tap_reread_bytes(wm.Gemm(m=64, n=64, k=64), rows, l2) == 0
    # in the model: conv_f16_128x64-like tiles, 3 per SM: 396 CTAs of distinct pixel rows, 58 MB a pass
    cfg = wm.KernelConfig(name="rr", kind="conv", tile_m=128, tile_n=64, tile_k=32, threads=128,
                          regs_per_thread=168, smem_per_block_bytes=49152, efficiency=0.8)
    on = dataclasses.replace(cfg, taps_reread_past_l2=True)
    g = conv.gemm()
    off_t, on_t = (config_latency(g, c, H100, UNCALIBRATED, conv, _Shared(g, conv)) for c in (cfg, on))
    assert off_t["reread_s"] == 0
    bw = H100.dram_bandwidth_bytes_per_s * cfg.bandwidth_efficiency
    assert on_t["reread_s"] == pytest.approx(8 * inputs / bw, rel=1e-12)
    assert on_t["dram_s"] - off_t["dram_s"] == pytest.approx(on_t["reread_s"], rel=1e-12)


def test_off_sector_channels_slow_a_convs_whole_dram_stream():
    """channel_dram_factor multiplies a conv's DRAM time (its tap re-reads included) where C x 2 bytes
    is off 32-byte sectors; on-sector convs, GEMMs and the other streams keep theirs."""
    from wavemodel.calibration import UNCALIBRATED
    from wavemodel.latency import _Shared, channel_dram_slowdown, config_latency
    cfg = wm.KernelConfig(name="cdf", kind="conv", tile_m=128, tile_n=64, tile_k=32, threads=128,
                          regs_per_thread=168, smem_per_block_bytes=49152, efficiency=0.8,
                          taps_reread_past_l2=True)
    slow = dataclasses.replace(cfg, channel_dram_factor=1.25)
    off = wm.Conv2d(n=8, c=584, h=112, w=112, k=48, r=3, s=3, padding=1)     # 1168-byte rows: off
    on = dataclasses.replace(off, c=576)                                      # 1152 bytes: on
    assert channel_dram_slowdown(slow, off, "fp16") == 1.25 and channel_dram_slowdown(slow, on, "fp16") == 1
    assert channel_dram_slowdown(cfg, off, "fp16") == 1.0
    assert channel_dram_slowdown(slow, wm.Gemm(m=64, n=64, k=72), "fp16") == 1.0
    both = dataclasses.replace(off, c=np.array([576, 584]))
    np.testing.assert_array_equal(channel_dram_slowdown(slow, both, "fp16"), [1.0, 1.25])
    for shape, factor in ((off, 1.25), (on, 1.0)):
        g = shape.gemm()
        base, t = (config_latency(g, c, H100, UNCALIBRATED, shape, _Shared(g, shape)) for c in (cfg, slow))
        assert base["reread_s"] > 0           # a pass past the L2: the re-reads slow down too
        assert t["dram_s"] == pytest.approx(factor * base["dram_s"], rel=1e-12)
        assert t["reread_s"] == pytest.approx(factor * base["reread_s"], rel=1e-12)
        assert (t["l2_s"], t["compute_s"]) == (base["l2_s"], base["compute_s"])
    with pytest.raises(ValueError, match="channel_dram_factor"):
        dataclasses.replace(cfg, channel_dram_factor=0.9)


def brute_panel_rows(m, n, tile_m, tile_n):
    """Mean over every tile of the rows of its A (B) panel inside the problem, counted tile by tile."""
    rows_m = [min(tile_m, m - i) for i in range(0, m, tile_m)]
    rows_n = [min(tile_n, n - j) for j in range(0, n, tile_n)]
    total_a = sum(a for a in rows_m for _ in rows_n)
    total_b = sum(b for _ in rows_m for b in rows_n)
    tiles = len(rows_m) * len(rows_n)
    return total_a / tiles, total_b / tiles


@pytest.mark.parametrize("m, n", [(1, 1), (128, 64), (129, 65), (25088, 24), (1568, 1472), (300, 1000)])
def test_valid_panel_rows_equal_counting_every_tile(m, n):
    from wavemodel.latency import valid_panel_rows
    cfg = wm.KernelConfig(name="ef", tile_m=128, tile_n=64, tile_k=32, threads=128, regs_per_thread=128,
                          smem_per_block_bytes=49152, edge_loads_free=True)
    g = wm.Gemm(m=m, n=n, k=64)
    tiles_m, tiles_n = np.ceil(m / 128), np.ceil(n / 64)
    rows = valid_panel_rows(cfg, g, tiles_m, tiles_n)
    assert rows == pytest.approx(brute_panel_rows(m, n, 128, 64), rel=1e-12)
    # off (the default): the full tile's rows, whatever the problem
    assert valid_panel_rows(dataclasses.replace(cfg, edge_loads_free=False), g, tiles_m, tiles_n) == (128, 64)


def test_edge_rows_that_are_zero_filled_move_no_panel_bytes():
    from wavemodel.calibration import UNCALIBRATED
    from wavemodel.latency import _Shared, config_latency, panel_bytes_per_k_tile
    cfg = wm.KernelConfig(name="ef", kind="conv", tile_m=128, tile_n=128, tile_k=32, threads=128,
                          regs_per_thread=128, smem_per_block_bytes=65536, efficiency=0.8)
    free = dataclasses.replace(cfg, edge_loads_free=True)
    conv = wm.Conv2d(n=32, c=256, h=56, w=56, k=24, r=1, s=1, stride=2)    # M = 25088 = 196 full tiles
    g = conv.gemm()
    full, ef = (config_latency(g, c, H100, UNCALIBRATED, conv, _Shared(g, conv)) for c in (cfg, free))
    a, b = panel_bytes_per_k_tile(cfg, "fp16", 128, 0)[0], panel_bytes_per_k_tile(cfg, "fp16", 0, 128)[0]
    assert ef["l2_s"] / full["l2_s"] == pytest.approx((a + b * 24 / 128) / (a + b), rel=1e-12)
    assert ef["ingest_s"] < full["ingest_s"] and ef["compute_s"] == full["compute_s"]   # the tile's math
    # whole tiles: nothing changes
    whole = dataclasses.replace(conv, k=256)
    g2 = whole.gemm()
    full, ef = (config_latency(g2, c, H100, UNCALIBRATED, whole, _Shared(g2, whole)) for c in (cfg, free))
    assert ef["l2_s"] == pytest.approx(full["l2_s"], rel=1e-12)
    # a GEMM configuration without the flag (every library one) is unchanged
    assert not wm.KernelConfig(name="x", tile_m=128, tile_n=128, tile_k=32, threads=128, regs_per_thread=128,
                               smem_per_block_bytes=0).edge_loads_free


def test_overlap_forms():
    from wavemodel.latency import overlapped_s
    c, m = np.array([1.0, 2.0, 1.0, 5.0]), np.array([2.0, 1.0, 1.0, 0.0])
    # no unhidden share: the longer, smooth or not
    np.testing.assert_array_equal(overlapped_s(c, m, 0.0), [2, 2, 1, 5])
    np.testing.assert_array_equal(overlapped_s(c, m, 0.0, smooth=True), [2, 2, 1, 5])
    # max + u * min
    np.testing.assert_allclose(overlapped_s(c, m, 0.4), [2.4, 2.4, 1.4, 5.0], rtol=1e-15)
    # the p-norm: (1 + u) x where the two are equal, symmetric, the longer where one is 0, between
    # the longer and max + u * min elsewhere; u = 1 (p = 1) is the sum
    s = overlapped_s(c, m, 0.4, smooth=True)
    assert s[2] == pytest.approx(1.4, rel=1e-12) and s[3] == 5.0 and s[0] == s[1]
    p = np.log(2) / np.log(1.4)
    assert s[0] == pytest.approx((1 + 2 ** p) ** (1 / p), rel=1e-12) and 2 < s[0] < 2.4
    np.testing.assert_allclose(overlapped_s(c, m, 1.0, smooth=True), c + m, rtol=1e-12)
    # the shorter stream hides ever more completely as the longer dominates
    r = np.array([0.9, 0.5, 0.2, 0.05])
    share = (overlapped_s(1.0, r, 0.4, smooth=True) - 1.0) / r
    assert np.all(np.diff(share) < 0) and share[0] < 0.4


def test_dram_and_l2_streams_combine_as_a_norm_beside_the_ingest():
    from wavemodel.latency import streams_s
    d, l2, ing = np.array([3.0, 4.0, 1.0, 0.0, 2.0]), np.array([4.0, 3.0, 1.0, 0.0, 0.0]), np.array(
        [1.0, 1.0, 2.0, 0.0, 1.0])
    # off: the longest of the three
    np.testing.assert_array_equal(streams_s(d, l2, ing), [4, 4, 2, 0, 2])
    # 2-norm of DRAM and L2 (5 for 3 and 4, either way round), the ingest a bound of its own, 0 for 0,
    # the longer stream where the other vanishes
    np.testing.assert_allclose(streams_s(d, l2, ing, 2.0), [5, 5, 2, 0, 2], rtol=1e-15)
    # equal streams take 2**(1/p) times either; a stream a third of the other adds 5 % at p = 2
    assert streams_s(1.0, 1.0, 0.0, 2.0) == pytest.approx(2 ** 0.5, rel=1e-15)
    assert streams_s(3.0, 1.0, 0.0, 2.0) / 3.0 - 1 == pytest.approx(0.054, abs=5e-4)
    # never below the longer stream, never above their sum; p = 1 is the sum
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0, 1, 100), rng.uniform(0, 1, 100)
    for p in (1.5, 2.0, 4.0):
        s = streams_s(a, b, 0.0, p)
        assert np.all(s >= np.maximum(a, b)) and np.all(s <= a + b + 1e-15)
    np.testing.assert_allclose(streams_s(a, b, 0.0, 1.0), a + b, rtol=1e-14)
    with pytest.raises(ValueError, match="dram_l2_norm"):
        wm.KernelConfig(name="x", tile_m=128, tile_n=128, tile_k=32, threads=128, regs_per_thread=128,
                        smem_per_block_bytes=0, dram_l2_norm=0.5)


def test_a_profile_pins_the_stream_norm_it_was_fitted_under():
    # our convs combine DRAM and L2 as a 2-norm (own.toml); a profile fitted before says 0 and keeps it
    from wavemodel import calibration
    conv = wm.Conv2d(n=32, c=64, h=56, w=56, k=256, r=3, s=3, stride=1, padding=1)
    shipped = calibration.profile_for(H100, "conv_f16_128x64")
    fam = dict(shipped.families["conv_f16_128x64"])
    pinned = dataclasses.replace(shipped, families={**shipped.families,
                                                    "conv_f16_128x64": {**fam, "dram_l2_norm": 0.0}})
    on = wm.predict_latency(conv, H100, "conv_f16_128x64", profile=shipped)
    off = wm.predict_latency(conv, H100, "conv_f16_128x64", profile=pinned)
    assert own_kernels()["conv_f16_128x64"].dram_l2_norm == 2.0
    assert off.memory_s < on.memory_s and off.latency_s < on.latency_s
    bad = dataclasses.replace(shipped, families={**shipped.families,
                                                 "conv_f16_128x64": {**fam, "smooth_overlap": False}})
    with pytest.raises(ValueError, match="unknown parameters"):
        wm.predict_latency(conv, H100, "conv_f16_128x64", profile=bad)


def test_smooth_overlap_off_leaves_the_model_unchanged():
    from wavemodel.calibration import UNCALIBRATED
    from wavemodel.latency import _Shared, config_latency
    cfg = wm.KernelConfig(name="so", tile_m=128, tile_n=128, tile_k=32, threads=128, regs_per_thread=128,
                          smem_per_block_bytes=65536, efficiency=0.8, unhidden_fraction=0.4)
    g = wm.Gemm(m=np.array([512, 4096, 8192]), n=4096, k=np.array([64, 4096, 256]))
    t = config_latency(g, cfg, H100, UNCALIBRATED, g, _Shared(g, g))
    longer, shorter = np.maximum(t["compute_s"], t["memory_s"]), np.minimum(t["compute_s"], t["memory_s"])
    np.testing.assert_allclose(t["latency_s"], t["fixed_s"] + longer + 0.4 * shorter, rtol=1e-14)
    s = config_latency(g, dataclasses.replace(cfg, smooth_overlap=True), H100, UNCALIBRATED, g, _Shared(g, g))
    assert np.all(s["latency_s"] <= t["latency_s"]) and np.all(s["latency_s"] >= t["fixed_s"] + longer)


def test_expected_max_of_exponentials_is_the_harmonic_number():
    from wavemodel.latency import expected_max_of
    n = np.arange(1, 400)
    exact = np.cumsum(1.0 / n)
    approx = expected_max_of(n)
    assert np.max(np.abs(approx - exact)) < 0.007 and abs(approx[0] - 1.0) < 0.007
    assert np.max(np.abs(approx[9:] - exact[9:])) < 1e-5
    # the mean of the largest of n draws: a Monte-Carlo check of what the model assumes
    rng = np.random.default_rng(7)
    for k in (2, 16, 132):
        draws = rng.exponential(1.0, size=(20000, k)).max(axis=1)
        assert draws.mean() == pytest.approx(exact[k - 1], rel=0.02)


def test_straggler_wait_follows_the_last_waves_sms():
    from wavemodel.calibration import UNCALIBRATED
    from wavemodel.latency import _Shared, config_latency, expected_max_of
    tau = 2e-7
    base = dataclasses.replace(CFG, name="st0")
    strag = dataclasses.replace(CFG, name="st1", straggler_s=tau)
    # tiles of 128x128: 1, 8, 132, 264 (one full wave of 2 per SM), 265 (one tile in a second wave)
    g = wm.Gemm(m=np.array([128, 1024, 128 * 132, 128 * 264, 128 * 265]), n=128, k=256)
    t0, t1 = (config_latency(g, c, H100, UNCALIBRATED, g, _Shared(g, g)) for c in (base, strag))
    sms = np.array([1, 8, 132, 132, 1])
    np.testing.assert_allclose(t1["straggler_s"], tau * expected_max_of(sms), rtol=1e-12)
    np.testing.assert_allclose(t1["latency_s"] - t0["latency_s"], tau * expected_max_of(sms), rtol=1e-9)
    assert t0["straggler_s"] == 0.0
    # grows with the SMs of the last wave, as ln s: 132 SMs about 4.5 tau more than one
    w = t1["straggler_s"]
    assert w[0] < w[1] < w[2] == w[3] and w[4] == w[0]
    assert (w[2] - w[0]) / tau == pytest.approx(np.log(132) + 0.5772 + 1 / 264 - 1, abs=0.01)
    with pytest.raises(ValueError, match="straggler_s"):
        dataclasses.replace(CFG, straggler_s=-1e-9)
