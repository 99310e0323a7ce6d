"""The sympy closed form and its step positions against brute-force evaluation of the numeric model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import wavemodel as wm
from wavemodel import calibration, latency, symbolic
from wavemodel.configs import own_kernels
from wavemodel.latency import config_latency, dram_bytes, select
from wavemodel.shapes import DTYPE_IN_BYTES, DTYPE_OUT_BYTES
from wavemodel.waves import wave_size

H100 = wm.gpu("h100-sxm")      # 132 SMs
RTX3090 = wm.gpu("rtx-3090")   # 82 SMs
# Efficiency 0.3 keeps the compute term binding in the hand-computed cases: they are about waves.
TILE = dict(tile_m=128, tile_n=128, tile_k=64, efficiency=0.3)
# one 384-thread block per SM (shared memory), as the sm_90 warp-specialised kernels
BPS1 = wm.KernelConfig(name="t_bps1", threads=384, regs_per_thread=168, smem_per_block_bytes=197632, **TILE)
# two blocks per SM (registers: 128 regs x 256 threads, and shared memory both allow 2)
BPS2 = wm.KernelConfig(name="t_bps2", threads=256, regs_per_thread=128, smem_per_block_bytes=100000, **TILE)
BPS2_FAST_ALONE = wm.KernelConfig(name="t_bps2s", threads=256, regs_per_thread=128,
                                  smem_per_block_bytes=100000, single_block_speedup=2.0, **TILE)
SPLITK4 = wm.KernelConfig(name="t_sk4", threads=384, regs_per_thread=168, smem_per_block_bytes=197632,
                          split_k=4, **TILE)
SPLITK2 = wm.KernelConfig(name="t_sk2", threads=384, regs_per_thread=168, smem_per_block_bytes=197632,
                          split_k=2, **TILE)
# one 1024-thread block per SM (warps), clusters of 1x4 CTAs
CLUSTER = wm.KernelConfig(name="t_cl", threads=1024, regs_per_thread=64, smem_per_block_bytes=16384,
                          cluster_n=4, **TILE)
CLUSTER_2X2 = wm.KernelConfig(name="t_cl22", threads=384, regs_per_thread=168, smem_per_block_bytes=197632,
                              cluster_m=2, cluster_n=2, tile_m=256, tile_n=128, tile_k=64)
# a narrow tile: many small tiles, five per SM, whose A and B panels cost more than their math
NARROW = wm.KernelConfig(name="t_narrow", tile_m=64, tile_n=16, tile_k=64, threads=128, regs_per_thread=64,
                         smem_per_block_bytes=40000)
# BPS1 with an epilogue: each tile on the busiest SM stores its valid part of C at 20 GB/s
STORE = dataclasses.replace(BPS1, name="t_store", store_bytes_per_s=20e9)
# two blocks per SM, no per-tile overhead and a store rate
BPS2_STORE = dataclasses.replace(BPS2, name="t_bps2_store", tile_overhead_s=0.0, store_bytes_per_s=30e9)
# our own style of SIMT kernel: CUDA cores, fp32, 128x128x8 tile, 256 threads, double-buffered smem
SIMT = wm.KernelConfig(name="simt_f32_128x128_test", tile_m=128, tile_n=128, tile_k=8, threads=256,
                       regs_per_thread=128, smem_per_block_bytes=2 * (128 * 8 + 8 * 128) * 4, math="simt",
                       dtypes=("fp32",), efficiency=0.6)
# BPS1 hiding only 40 % of the shorter of math and streaming (our mma.sync kernels hide about half)
OVERLAP = dataclasses.replace(BPS1, name="t_overlap", unhidden_fraction=0.6, store_bytes_per_s=40e9)
# the SIMT kernel with an epilogue that stores C element by element, 2.5x slower, where N % 4 != 0
SIMT_SCALAR = dataclasses.replace(SIMT, name="t_simt_scalar", store_bytes_per_s=25e9, scalar_store_factor=2.5,
                                  unhidden_fraction=0.4)

# a 64x64 SIMT tile in two-warp blocks (8 per SM) loading misaligned operand rows element-wise
SIMT_LOADS = wm.KernelConfig(name="t_simt_loads", tile_m=64, tile_n=64, tile_k=8, threads=64,
                             regs_per_thread=128, smem_per_block_bytes=8448, math="simt", dtypes=("fp32",),
                             efficiency=0.6, store_bytes_per_s=25e9, scalar_store_factor=2.5,
                             scalar_load_bytes_per_s=3e11, single_block_speedup=2.0, tail_block_speedup=1.3)


def sweep(dims: dict, cfg, gpu, free: str, lo: int, hi: int, dtype="fp16", batch=1):
    x = np.arange(lo, hi + 1)
    g = wm.Gemm(**(dims | {free: x}), batch=batch, dtype=dtype)
    return x, wm.predict_latency(g, gpu, backend=cfg)


def dram_s(shape, cfg, gpu):
    """The model's DRAM term (affine in every dimension), for the brute force below."""
    cfg = calibration.profile_for(gpu, cfg.name).apply(cfg)
    dram = dram_bytes(shape, cfg.split_k) / (gpu.dram_bandwidth_bytes_per_s * cfg.bandwidth_efficiency)
    if not (cfg.write_bandwidth_efficiency or cfg.epilogue_drains_c or cfg.scalar_write_bytes_per_s
            or cfg.off_sector_write_factor != 1):
        return dram
    written = shape.batch * np.asarray(shape.m, dtype=float) * shape.n * DTYPE_OUT_BYTES[shape.dtype]
    if cfg.write_bandwidth_efficiency:
        dram = dram + written * (1 / cfg.write_bandwidth_efficiency - 1 / cfg.bandwidth_efficiency) / (
            gpu.dram_bandwidth_bytes_per_s)
    if cfg.epilogue_drains_c:     # C's writes are the epilogue's, not the DRAM term's
        dram = dram - written / (gpu.dram_bandwidth_bytes_per_s * (
            cfg.write_bandwidth_efficiency or cfg.bandwidth_efficiency))
    if cfg.scalar_write_bytes_per_s:    # element-wise C writes where n is off 16 bytes (its alignment at d)
        misaligned = np.asarray(shape.n) % (16 // DTYPE_OUT_BYTES[shape.dtype]) != 0
        dram = dram + misaligned * written / cfg.scalar_write_bytes_per_s
    if cfg.off_sector_write_factor != 1:    # partial-sector C writes where n * out_bytes is off 32 bytes
        off = np.asarray(shape.n) * DTYPE_OUT_BYTES[shape.dtype] % 32 != 0
        dram = dram + off * written * (cfg.off_sector_write_factor - 1) / (
            gpu.dram_bandwidth_bytes_per_s * (cfg.write_bandwidth_efficiency or cfg.bandwidth_efficiency))
    return dram


def held_from_before(comp, mem, dram, comp_growth=0.0, unhidden=0.0, l2_ingest=None):
    """Latency minus its fixed part, with the quantised terms held at d - 1 (arrays over d-1..).

    ``comp_growth`` is what the compute term's continuous part (the epilogue's valid tile) adds from
    d - 1 to d with the tile and wave counts held; ``unhidden`` the configuration's unhidden_fraction;
    ``l2_ingest`` the larger of the L2 and ingest terms (else read off ``mem`` where they bound it).
    """
    # L2/ingest where they show at d - 1; given, held at d - 1 even where the DRAM stream (its
    # element-wise writes) outran them there
    hidden = np.where(mem[:-1] > dram[:-1], mem[:-1], -np.inf) if l2_ingest is None else l2_ingest[:-1]
    c, m = comp[:-1] + comp_growth, np.maximum(hidden, dram[1:])
    return np.maximum(c, m) + unhidden * np.minimum(c, m)


def epilogue_growth(p, g: wm.Gemm, cfg, gpu):
    """From d - 1 to d: busiest(d - 1) tiles times the growth of one tile's valid outputs, at the store rate.

    busiest = (waves - 1) * bps + ceil((tiles - (waves - 1) * wave_size) / sm_count), from the
    prediction's own tile and wave counts; a tile's valid outputs are batch * m * n / tiles on average,
    with tiles held at d - 1.
    """
    cfg = calibration.profile_for(gpu, cfg.name).apply(cfg)
    if not cfg.store_bytes_per_s and not cfg.epilogue_drains_c:
        return 0.0
    waves, tiles = np.asarray(p.waves), np.asarray(p.tiles)
    full = (waves - 1) * np.asarray(p.wave_size)
    busiest = (waves - 1) * np.asarray(p.blocks_per_sm) + -(-(tiles - full) // gpu.sm_count)
    out_b = DTYPE_OUT_BYTES[g.dtype]
    m, n = (np.broadcast_to(np.asarray(v, dtype=float), busiest.shape) for v in (g.m, g.n))
    factor = np.where(n % (16 // out_b) == 0, 1.0, cfg.scalar_store_factor)   # element-wise stores
    outputs = g.batch * m * n * out_b
    interior = np.minimum(m, cfg.tile_m) * np.minimum(n, cfg.tile_n) * out_b    # a full tile's bytes

    def epilogue(i, held):       # the busiest SM's epilogue with d's outputs at i, tile counts at held
        valid = outputs[i] / tiles[held]
        stored = busiest[held] * valid + (interior[i] - valid if cfg.last_tile_full else 0.0)
        e = stored * factor[i] / cfg.store_bytes_per_s if cfg.store_bytes_per_s else 0.0 * stored
        if cfg.epilogue_drains_c:     # at least C's DRAM writes
            e = np.maximum(e, outputs[i] / (gpu.dram_bandwidth_bytes_per_s * (
                cfg.write_bandwidth_efficiency or cfg.bandwidth_efficiency)))
        return e

    now, before = slice(1, None), slice(None, -1)
    return epilogue(now, before) - epilogue(before, before)


def loop_slots(p, cfg, gpu):
    """k_iters-free: the busiest SM's block slots (the last wave's through its busiest warp scheduler,
    at least a lone block's), from the prediction's own tile and wave counts."""
    waves, tiles = np.asarray(p.waves), np.asarray(p.tiles)
    bps = cfg.occupancy(gpu).blocks_per_sm
    tail = -(-(tiles - (waves - 1) * np.asarray(p.wave_size)) // gpu.sm_count)
    tail = latency.scheduler_slots(tail, cfg, gpu)
    lone = bps / min(cfg.single_block_speedup, bps)
    if cfg.tail_block_speedup:
        lone = np.where(waves > 1, bps / min(cfg.tail_block_speedup, bps), lone)
    return (waves - 1) * bps + np.maximum(tail, lone)


def line_aligned_growth(p, g: wm.Gemm, cfg, gpu):
    """From d - 1 to d: the main loop's math time as the line-aligned factor of K (A's rows at one
    offset of their 128-byte lines) changes, every wave quantity held at d - 1: k_iters * slots *
    t_math * (factor(d) - factor(d - 1)). Configurations without a K-iteration floor."""
    cfg = calibration.profile_for(gpu, cfg.name).apply(cfg)
    if cfg.line_aligned_rows_factor == 1:
        return 0.0
    assert not cfg.k_iter_latency_s
    slots = loop_slots(p, cfg, gpu)
    k = np.broadcast_to(g.k, slots.shape)
    k_iters = -(-k // (cfg.split_k * cfg.tile_k))
    t_math = cfg.tile_m * 2.0 * cfg.tile_n * cfg.tile_k / (gpu.peak_flops(g.dtype, cfg.math) / gpu.sm_count
                                                           * cfg.efficiency)
    f = np.where(latency.line_aligned_rows(k, g.dtype), cfg.line_aligned_rows_factor, 1.0)
    return (k_iters * slots)[:-1] * t_math * (f[1:] - f[:-1])


def scalar_load_growth(p, g: wm.Gemm, cfg, gpu):
    """From d - 1 to d: the main loop's element-wise load time, with every wave quantity held at d - 1
    and the alignment of K (A's rows) and N (B's rows) at d: k_iters * slots * panel rows * tile_k *
    in_bytes / scalar_load_bytes_per_s, slots the busiest SM's block slots (the last wave's through
    its busiest warp scheduler, at least a lone block's). Configurations without a K-iteration floor.
    """
    cfg = calibration.profile_for(gpu, cfg.name).apply(cfg)
    if not cfg.scalar_load_bytes_per_s:
        return 0.0
    assert not cfg.k_iter_latency_s
    slots = loop_slots(p, cfg, gpu)
    m, n, k = (np.broadcast_to(v, slots.shape) for v in (g.m, g.n, g.k))
    k_iters = -(-k // (cfg.split_k * cfg.tile_k))
    tiles_m = np.ceil(np.ceil(m / cfg.tile_m) / cfg.cluster_m) * cfg.cluster_m
    tiles_n = np.ceil(np.ceil(n / cfg.tile_n) / cfg.cluster_n) * cfg.cluster_n
    in_b = DTYPE_IN_BYTES[g.dtype]

    def extra(i, held):      # the misaligned panels' valid rows (a tile's mean) at i, tile counts at held
        v = 16 // in_b
        rows = (k[i] % v != 0) * m[i] / tiles_m[held] + (n[i] % v != 0) * n[i] / tiles_n[held]
        return rows * cfg.tile_k * in_b / cfg.scalar_load_bytes_per_s

    now, before = slice(1, None), slice(None, -1)
    return (k_iters * slots)[before] * (extra(now, before) - extra(before, before))


def brute_steps(dims: dict, cfg, gpu, free: str, lo: int, hi: int, dtype="fp16", batch=1) -> list[int]:
    """Every d in [lo, hi] where latency exceeds the piece held from d - 1, evaluated one d at a time."""
    x, p = sweep(dims, cfg, gpu, free, max(lo, 2) - 1, hi, dtype, batch)
    comp, mem = (np.asarray(v, dtype=float) for v in (p.compute_s, p.memory_s))
    g = wm.Gemm(**(dims | {free: x}), batch=batch, dtype=dtype)
    dram = dram_s(g, cfg, gpu)
    profile = calibration.profile_for(gpu, cfg.name)
    applied = profile.apply(cfg)
    u = applied.unhidden_fraction
    busy = np.maximum(comp[1:], mem[1:]) + u * np.minimum(comp[1:], mem[1:])
    growth = (epilogue_growth(p, g, cfg, gpu) + scalar_load_growth(p, g, cfg, gpu)
              + line_aligned_growth(p, g, cfg, gpu))
    # the fixed part's quantised pieces: a persistent kernel's memset, the first wave's CTA cost and the
    # wait for the last wave's slowest SM
    t = config_latency(g, applied, gpu, profile)
    l2_ingest = np.broadcast_to(np.maximum(t["l2_s"], t["ingest_s"]), x.shape)
    jump = busy - held_from_before(comp, mem, dram, growth, u, l2_ingest)
    for key in ("memset_s", "dispatch_s", "straggler_s"):
        q = np.broadcast_to(t[key], x.shape)
        jump = jump + (q[1:] - q[:-1])
    return [int(v) for v in x[1:][jump > 1e-9 * np.maximum(comp[1:], mem[1:])]]


def steps(dims: dict, cfg, gpu, free, lo, hi, dtype="fp16", batch=1):
    return symbolic.step_positions(wm.Gemm(**(dims | {free: 1}), batch=batch, dtype=dtype), cfg, gpu,
                                   free, lo, hi)


def assert_compute_bound(dims, cfg, gpu, free, lo, hi):
    """Precondition of the hand-computed cases: the compute term binds over the whole range."""
    _, p = sweep(dims, cfg, gpu, free, lo, hi)
    assert np.all(p.compute_s > p.memory_s)


# ---------------------------------------------------------------------------------------------------
# hand-computed step positions
#
# H100, 128x128 tile, m = 4096 -> 32 row tiles; n free -> tiles = 32 * ceil(n / 128).
# One block per SM: a wave is 132 tiles, so a wave starts at tile 132w + 1, reached first when
# ceil(n / 128) = ceil((132w + 1) / 32):  w=1: 5 -> n = 4*128+1 = 513;  w=2: 9 -> 1025;  w=3: 13 -> 1537;
# w=4: 17 -> 2049;  w=5: 21 -> 2561;  w=6: 25 -> 3073;  w=7: 29 -> 3585;  w=8: ceil(1057/32) = 34 -> 4225
# (33 column tiles are 1056 = 8 * 132 tiles: 4224 still fits in 8 full waves).
WAVES_132_FROM_32 = [513, 1025, 1537, 2049, 2561, 3073, 3585, 4225]


def test_steps_one_block_per_sm_by_hand():
    dims = dict(m=4096, k=4096)
    assert BPS1.occupancy(H100).blocks_per_sm == 1 and wave_size(BPS1, H100) == 132
    assert_compute_bound(dims, BPS1, H100, "n", 2, 4300)
    assert steps(dims, BPS1, H100, "n", 2, 4300) == WAVES_132_FROM_32
    # compute-bound with one kernel: latency is flat between steps and rises exactly at them
    x, p = sweep(dims, BPS1, H100, "n", 1, 4300)
    rises = x[1:][np.diff(p.latency_s) > 0]
    assert list(rises) == WAVES_132_FROM_32
    assert np.all(np.diff(p.latency_s) >= 0)
    assert [int(p.waves[x == s][0]) for s in WAVES_132_FROM_32] == list(range(2, 10))


def test_steps_symmetric_in_m_and_n():
    assert steps(dict(n=4096, k=4096), BPS1, H100, "m", 2, 4300) == WAVES_132_FROM_32


def test_steps_sub_range_and_single_point():
    dims = dict(m=4096, k=4096)
    assert steps(dims, BPS1, H100, "n", 1025, 3073) == [1025, 1537, 2049, 2561, 3073]
    assert steps(dims, BPS1, H100, "n", 1026, 3072) == [1537, 2049, 2561]
    assert steps(dims, BPS1, H100, "n", 513, 513) == [513]
    assert steps(dims, BPS1, H100, "n", 514, 1024) == []
    assert steps(dims, BPS1, H100, "n", 1, 1) == []


def test_steps_two_blocks_per_sm_by_hand():
    # 2 blocks per SM: a wave is 264 tiles; waves start at tiles 265, 529, 793, 1057 ->
    # ceil(265/32) = 9 -> 1025, ceil(529/32) = 17 -> 2049, ceil(793/32) = 25 -> 3073, 34 -> 4225.
    # In between, at tiles 264w + 133, the busiest SM of the last wave takes its second block:
    # busiest = (waves - 1) * 2 + tail_bps goes up by one at every 132 tiles (132j + 1), so with
    # every tile paying tile_overhead_s (0.5 us) on the busiest SM the steps are those of one block
    # per SM, even though the math of a second block (speedup 1) costs nothing over a lone one.
    dims = dict(m=4096, k=4096)
    assert BPS2.occupancy(H100).blocks_per_sm == 2 and wave_size(BPS2, H100) == 264
    assert BPS2.tile_overhead_s > 0 and BPS2.single_block_speedup == 1
    assert_compute_bound(dims, BPS2, H100, "n", 2, 4300)
    assert steps(dims, BPS2, H100, "n", 2, 4300) == WAVES_132_FROM_32
    # Without the per-tile overhead only the math is left: steps at whole waves only.
    no_overhead = dataclasses.replace(BPS2, tile_overhead_s=0.0)
    assert_compute_bound(dims, no_overhead, H100, "n", 2, 4300)
    assert steps(dims, no_overhead, H100, "n", 2, 4300) == [1025, 2049, 3073, 4225]
    # ... and the second block's step is exactly one tile overhead high: at n = 513 (tiles 128 -> 160,
    # busiest 1 -> 2 in the first wave) compute rises by 0.5 us; at n = 1025 (a new wave) by 2 t_tile
    # + 0.5 us, where t_tile is what the same config without overhead rises by there.
    x, p = sweep(dims, BPS2, H100, "n", 1, 1100)
    _, q = sweep(dims, no_overhead, H100, "n", 1, 1100)
    rise, rise_math = np.diff(p.compute_s), np.diff(q.compute_s)
    assert rise[x[1:] == 513][0] == pytest.approx(0.5e-6, rel=1e-9)
    assert rise[x[1:] == 1025][0] == pytest.approx(rise_math[x[1:] == 1025][0] + 0.5e-6, rel=1e-9)
    assert rise_math[x[1:] == 513][0] == 0
    # A lone block twice as fast: the busiest SM's second block shows in the math too, at the same tiles.
    assert_compute_bound(dims, BPS2_FAST_ALONE, H100, "n", 2, 4300)
    assert steps(dims, BPS2_FAST_ALONE, H100, "n", 2, 4300) == WAVES_132_FROM_32
    # 0.0 overhead and a store rate: the epilogue is charged per tile on the busiest SM, so it too
    # steps at every 132 tiles.
    assert_compute_bound(dims, BPS2_STORE, H100, "n", 2, 4300)
    assert steps(dims, BPS2_STORE, H100, "n", 2, 4300) == WAVES_132_FROM_32


def test_epilogue_by_hand():
    # BPS1 with stores at 20 GB/s, m = 4096 (32 row tiles of 128), n free: 32 * ceil(n / 128) tiles.
    # A tile stores the call's outputs over its tiles on average, 4096 * n / tiles fp16 values
    # (2 bytes) = 256 * n / ceil(n / 128) bytes: 256 * n below n = 128 (one tile per SM, one wave,
    # busiest = 1), 12.8 ns per column; 32768 bytes = 1.6384 us per tile on the busiest SM where n
    # fills its column tiles (n = 512), less where the last column of tiles is narrow (n = 513:
    # 256 * 513 / 5 bytes, on a busiest SM that now runs 2 tiles).
    dims = dict(m=4096, k=4096)
    assert_compute_bound(dims, STORE, H100, "n", 1, 4300)
    t = symbolic.latency_terms((4096, 1, 4096), STORE, H100, free="n")
    d = t["symbol"]
    for n, busiest in [(1, 1), (100, 1), (128, 1), (512, 1), (513, 2), (4224, 8), (4225, 9), (5000, 10)]:
        valid_bytes = 256 * n / -(-n // 128)
        assert float(t["epilogue_s"].subs(d, n)) == pytest.approx(busiest * valid_bytes / 20e9, rel=1e-12)
        assert int(t["busiest_tiles"].subs(d, n)) == busiest
    # latency grows by 12.8 ns per column within the first tile, 6.4 ns with two column tiles, and
    # falls where a new column of tiles starts without a new tile on the busiest SM: no step there
    x, p = sweep(dims, STORE, H100, "n", 1, 4300)
    rise = np.diff(p.latency_s)
    np.testing.assert_allclose(rise[:127], 256 / 20e9, rtol=1e-9)      # n = 2..128
    np.testing.assert_allclose(rise[128:255], 128 / 20e9, rtol=1e-9)   # n = 130..256
    assert rise[127] < 0 and rise[255] < 0                             # n = 129, 257
    assert steps(dims, STORE, H100, "n", 1, 4300) == WAVES_132_FROM_32
    # each wave step is the bare config's step plus the busiest SM's new tile's average store
    _, q = sweep(dims, BPS1, H100, "n", 1, 4300)
    busiest = np.asarray(p.waves)       # one block per SM: the busiest SM runs a tile per wave
    stored = busiest * 256.0 * x / -(-x // 128) / 20e9
    at_steps = np.isin(x[1:], WAVES_132_FROM_32)
    np.testing.assert_allclose(rise[at_steps], (np.diff(q.latency_s) + np.diff(stored))[at_steps], rtol=1e-9)
    # in m the same: the valid rows grow below m = 128
    assert steps(dict(n=4096, k=4096), STORE, H100, "m", 1, 4300) == WAVES_132_FROM_32


def test_scheduler_quantisation_and_scalar_loads_by_hand():
    # SIMT_LOADS: 64 threads (2 warps) a block, 8 blocks per SM on the H100: 4 warp schedulers, so the
    # last wave's j blocks on an SM leave its busiest scheduler ceil(j / 2) warps, the time of
    # 2 * ceil(j / 2) blocks; a lone block runs 2x faster (4 slots). m = 64: one row of tiles; n = 64 *
    # tiles, k = 512 (64 K tiles of 8): slots of the busiest SM 4, 4, 4, 4, 6, 6, 8, 8 for j = 1..8.
    cfg, gpu = SIMT_LOADS, H100
    assert cfg.occupancy(gpu).blocks_per_sm == 8 and cfg.occupancy(gpu).warps_per_block == 2
    j = np.arange(1, 9)
    slots = latency.scheduler_slots(j.astype(float), cfg, gpu)
    np.testing.assert_array_equal(slots, [2, 2, 4, 4, 6, 6, 8, 8])
    t_iter = 2 * 64 * 64 * 8 / (gpu.peak_flops("fp32", "simt") / gpu.sm_count * 0.6)
    for jj, slots in zip(j, [4, 4, 4, 4, 6, 6, 8, 8], strict=True):
        g = wm.Gemm(m=64, n=64 * 132 * int(jj), k=512, dtype="fp32")
        t = config_latency(g, cfg, gpu, calibration.UNCALIBRATED)
        store = jj * (64 * 64 * 4 / 25e9 + cfg.tile_overhead_s)     # each tile's epilogue and overhead
        assert float(t["compute_s"]) == pytest.approx(64 * slots * t_iter + store, rel=1e-12)
    # K = 513 (65 K tiles): every K tile also loads A's 64 x 8 panel element-wise, 2048 bytes at 300 GB/s
    g = wm.Gemm(m=64, n=64 * 132 * 3, k=513, dtype="fp32")
    t = config_latency(g, cfg, gpu, calibration.UNCALIBRATED)
    store = 3 * (64 * 64 * 4 / 25e9 + cfg.tile_overhead_s)
    assert float(t["compute_s"]) == pytest.approx(65 * 4 * (t_iter + 2048 / 3e11) + store, rel=1e-12)
    # M = 40: the 24 rows beyond the problem are not loaded (1280 bytes a K tile), but are multiplied
    g = wm.Gemm(m=40, n=64 * 132 * 3, k=513, dtype="fp32")
    t = config_latency(g, cfg, gpu, calibration.UNCALIBRATED)
    store = 3 * (40 * 64 * 4 / 25e9 + cfg.tile_overhead_s)
    assert float(t["compute_s"]) == pytest.approx(65 * 4 * (t_iter + 1280 / 3e11) + store, rel=1e-12)


def test_steps_cluster_rounding_by_hand():
    # RTX 3090, 82 SMs, clusters of 4 CTAs: a wave is floor(82/4)*4 = 80 tiles. m = 1024 -> 8 row
    # tiles; n tiles come in clusters of 4: tiles = 8 * 4 * ceil(n / 512) = 32 q. Waves start at
    # tiles 81, 161, 241, 321 -> q = 3, 6, 8, 11 -> n = 1025, 2561, 3585, 5121.
    dims = dict(m=1024, k=8192)
    assert wave_size(CLUSTER, RTX3090) == 80
    assert_compute_bound(dims, CLUSTER, RTX3090, "n", 2, 5200)
    assert steps(dims, CLUSTER, RTX3090, "n", 2, 5200) == [1025, 2561, 3585, 5121]


def test_steps_split_k_by_hand():
    # split-K 4 with m = 1024 (8 row tiles): 32 tiles per column tile, as in the first case.
    dims = dict(m=1024, k=16384)
    assert_compute_bound(dims, SPLITK4, H100, "n", 2, 4300)
    assert steps(dims, SPLITK4, H100, "n", 2, 4300) == WAVES_132_FROM_32
    # the reduce kernel's time grows with n by the same amount every unit: affine between steps
    x, p = sweep(dims, SPLITK4, H100, "n", 1, 4300)
    rise = np.diff(p.latency_s)
    between = ~np.isin(x[1:], WAVES_132_FROM_32)
    slope = np.median(rise[between])
    assert slope > 0
    np.testing.assert_allclose(rise[between], slope, rtol=1e-6, atol=1e-17)
    assert np.all(rise[~between] > 100 * slope)


def test_k_has_no_wave_steps_only_k_tile_steps():
    # k never changes the tile count, so the wave count is the same for every k; the model's main
    # loop runs ceil(k / (split_k * tile_k)) iterations, so compute rises at k = 128q + 1 (split 2).
    dims = dict(m=2048, n=2048)
    lo, hi = 4000, 5000
    assert_compute_bound(dims, SPLITK2, H100, "k", lo, hi)
    assert steps(dims, SPLITK2, H100, "k", lo, hi) == [4097, 4225, 4353, 4481, 4609, 4737, 4865, 4993]
    x, p = sweep(dims, SPLITK2, H100, "k", 1, 5000)
    assert np.unique(p.waves).size == 1
    t = symbolic.latency_terms((2048, 2048, 1), SPLITK2, H100, free="k")
    k = t["symbol"]
    assert not t["waves"].free_symbols and not t["tiles"].free_symbols
    assert sp.Poly(t["dram_s"], k).degree() == 1
    assert sp.Poly(t["fixed_s"], k).degree() <= 1
    # with the number of K iterations held, the compute term does not depend on k at all
    q = sp.Symbol("q", positive=True)
    held = t["compute_s"].subs(sp.ceiling(k / 128), q)
    assert k not in held.free_symbols
    # between steps latency is continuous: within each K-tile piece it rises by at most the
    # memory slope per unit (flat while compute binds), and never falls
    piece_start = (x - 1) % 128 == 0
    rise = np.diff(p.latency_s)
    mem_slope = np.max(np.diff(dram_s(wm.Gemm(**dims, k=x), SPLITK2, H100)))
    assert np.all(rise[~piece_start[1:]] <= mem_slope * (1 + 1e-9))
    assert np.all(rise >= -1e-18)


def test_ingest_bound_steps_at_the_same_waves():
    # at efficiency 0.8 the busiest SM's panel traffic (one 128x128 tile per SM per wave, each
    # streaming 64 K-tiles of (128 + 128) x 64 fp16 elements) outlasts its math: the memory term is
    # waves * 64 * 256 * 64 * 2 bytes / (one SM's bandwidth), and it steps at the same wave boundaries
    # (a profile with an L2 fast enough that only the SMs' own ingest limits the panel traffic)
    cfg = dataclasses.replace(BPS1, efficiency=0.8)
    prof = calibration.Profile(l2_bandwidth_bytes_per_s=1e16, sm_bandwidth_bytes_per_s=60e9)
    dims = dict(m=4096, k=4096)
    x = np.arange(2, 4301)
    p = wm.predict_latency(wm.Gemm(**(dims | {"n": x})), H100, backend=cfg, profile=prof)
    waves = -(-(32 * -(-x // 128)) // 132)
    ingest_s = waves * 64 * 256 * 64 * 2 / 60e9
    np.testing.assert_allclose(p.memory_s, ingest_s, rtol=1e-12)
    assert np.all(p.memory_s > p.compute_s)
    assert symbolic.step_positions(wm.Gemm(4096, 1, 4096), cfg, H100, "n", 2, 4300,
                                   profile=prof) == WAVES_132_FROM_32


# ---------------------------------------------------------------------------------------------------
# brute force: every d of a range, several configurations and free dimensions

CASES = [
    (BPS1, H100, dict(m=4096, n=3000, k=4096), "fp16", 1),
    (BPS1, H100, dict(m=700, n=3000, k=512), "fp16", 3),      # memory binds in places
    (BPS2, H100, dict(m=2000, n=1000, k=4096), "fp16", 1),
    (BPS2_FAST_ALONE, H100, dict(m=1500, n=2500, k=2048), "bf16", 2),
    (SPLITK4, H100, dict(m=1024, n=1024, k=8192), "fp16", 1),
    (CLUSTER, RTX3090, dict(m=1000, n=1000, k=4096), "fp16", 1),
    (CLUSTER_2X2, H100, dict(m=3000, n=5000, k=4096), "fp8", 1),
    (SIMT, H100, dict(m=2048, n=2048, k=1024), "fp32", 1),
    (NARROW, H100, dict(m=4096, n=1000, k=1024), "fp16", 1),
    (dataclasses.replace(BPS1, efficiency=0.8), H100, dict(m=4096, n=4096, k=4096), "fp16", 1),  # ingest
    (STORE, H100, dict(m=3000, n=2000, k=512), "fp16", 2),                   # epilogue, memory in places
    (dataclasses.replace(BPS2_STORE, store_bytes_per_s=2e9), H100, dict(m=700, n=900, k=256), "fp8", 1),
    (dataclasses.replace(CLUSTER_2X2, name="t_cl22_store", store_bytes_per_s=50e9), H100,
     dict(m=200, n=3000, k=2048), "bf16", 3),
    (OVERLAP, H100, dict(m=700, n=3000, k=512), "fp16", 3),                  # memory adds in places
    # a late block after a full wave runs slower than a lone block of a first wave
    (dataclasses.replace(BPS2_FAST_ALONE, name="t_bps2_tail", tail_block_speedup=1.2), H100,
     dict(m=1500, n=2500, k=2048), "bf16", 2),
    (SIMT_SCALAR, H100, dict(m=2048, n=2051, k=1023), "fp32", 1),            # element-wise C stores
    # ... and element-wise operand loads where K or N is not a multiple of 4, in two-warp blocks whose
    # partial waves the warp schedulers quantise
    (SIMT_LOADS, H100, dict(m=1500, n=2051, k=1023), "fp32", 1),
    # a slower main loop where K puts every row of A at one offset of its 128-byte line
    (dataclasses.replace(SIMT_LOADS, name="t_simt_lines", line_aligned_rows_factor=1.15), H100,
     dict(m=1500, n=2048, k=1152), "fp32", 1),
    # math and streams overlapping only in part
    (dataclasses.replace(NARROW, name="t_narrow_unhidden", unhidden_fraction=0.3), H100,
     dict(m=3000, n=2000, k=512), "fp16", 1),
    # slow C writes: a memory-bound narrow-K GEMM
    (dataclasses.replace(NARROW, name="t_narrow_writes", write_bandwidth_efficiency=0.4), H100,
     dict(m=3000, n=2000, k=64), "fp16", 2),
    # ... slower still where rows of C start off 32-byte sectors (n % 16 == 8 in fp16)
    (dataclasses.replace(NARROW, name="t_narrow_off_sector", write_bandwidth_efficiency=0.4,
                         off_sector_write_factor=1.4), H100, dict(m=3000, n=2008, k=64), "fp16", 2),
    # a K-iteration latency floor that binds on the partial last waves (5 blocks per SM outrun it)
    (dataclasses.replace(NARROW, name="t_narrow_kfloor", k_iter_latency_s=1e-7), H100,
     dict(m=3000, n=1200, k=3000), "fp16", 1),
]
CASE_IDS = [c[0].name + "-" + c[3] for c in CASES]


@pytest.mark.parametrize("free", ["m", "n", "k"])
@pytest.mark.parametrize(("cfg", "gpu", "dims", "dtype", "batch"), CASES, ids=CASE_IDS)
def test_step_positions_equal_brute_force(cfg, gpu, dims, dtype, batch, free):
    lo, hi = 1, 6000
    fixed = {k: v for k, v in dims.items() if k != free}
    expected = brute_steps(fixed, cfg, gpu, free, lo, hi, dtype, batch)
    assert steps(fixed, cfg, gpu, free, lo, hi, dtype, batch) == expected
    if free != "k":
        assert expected, "the range should cross at least one wave boundary"


@pytest.mark.parametrize("free", ["m", "n", "k"])
@pytest.mark.parametrize(("cfg", "gpu", "dims", "dtype", "batch"), CASES, ids=CASE_IDS)
def test_expression_values_equal_model(cfg, gpu, dims, dtype, batch, free):
    g = wm.Gemm(**dims, batch=batch, dtype=dtype)
    fixed = {k: v for k, v in dims.items() if k != free}
    x, p = sweep(fixed, cfg, gpu, free, 1, 5000, dtype, batch)
    fn = symbolic.latency_function(g, cfg, gpu, free)
    np.testing.assert_allclose(fn(x), p.latency_s, rtol=1e-12)
    # the exact sympy expression, at and next to the steps and at a few other points
    d, expr = symbolic.latency_expr(g, cfg, gpu, free)
    points = set(steps(fixed, cfg, gpu, free, 2, 5000, dtype, batch)[:4]) | {1, 97, 1000, 4999}
    for v in sorted(points | {s - 1 for s in points if s > 1}):
        assert float(expr.subs(d, v)) == pytest.approx(float(p.latency_s[v - 1]), rel=1e-12)


FIXED_COST_TERMS = {   # per-call terms the closed form carries beside the tiles: each as the model has it
    "k_iter_floor_and_cta_dispatch": dict(k_iter_latency_s=1e-7, cta_dispatch_s=5e-9, unhidden_fraction=0.25),
    "straggler_wait": dict(straggler_s=2e-7, cta_dispatch_s=5e-9),
}


@pytest.mark.parametrize("free", ["m", "n", "k"])
@pytest.mark.parametrize("terms", sorted(FIXED_COST_TERMS))
def test_expression_with_fixed_cost_terms_equals_model(terms, free):
    cfg = dataclasses.replace(NARROW, name=f"t_{terms}", **FIXED_COST_TERMS[terms])
    dims = dict(m=1500, n=2500, k=2048)
    g = wm.Gemm(**dims, dtype="fp16")
    fixed = {k: v for k, v in dims.items() if k != free}
    x, p = sweep(fixed, cfg, H100, free, 1, 5000)
    np.testing.assert_allclose(symbolic.latency_function(g, cfg, H100, free)(x), p.latency_s, rtol=1e-12)
    d, expr = symbolic.latency_expr(g, cfg, H100, free)
    for v in (1, 64, 65, 97, 1000, 4999):
        assert float(expr.subs(d, v)) == pytest.approx(float(p.latency_s[v - 1]), rel=1e-12)


def test_expression_has_the_documented_structure():
    d, expr = symbolic.latency_expr((4096, 1, 4096), BPS1, H100, free="n")
    assert expr.free_symbols == {d} and d.is_integer and d.is_positive
    assert expr.has(sp.Piecewise) and expr.has(sp.ceiling)
    t = symbolic.latency_terms((4096, 1, 4096), BPS1, H100, free="n")
    # waves = ceiling(32 * ceiling(n / 128) / 132), evaluated exactly at the wave boundaries
    assert [int(t["waves"].subs(d, v)) for v in (512, 513, 4224, 4225)] == [1, 2, 8, 9]
    assert sp.Poly(t["dram_s"], d).degree() == 1 and sp.Poly(t["fixed_s"], d).degree() <= 1


def conv_brute_steps(conv, cfg, x):
    """The step definition for a convolution swept in its output channels, one k at a time."""
    p = wm.predict_latency(conv(x), H100, backend=cfg)
    comp, mem = np.asarray(p.compute_s), np.asarray(p.memory_s)
    growth = epilogue_growth(p, conv(x).gemm(), cfg, H100)
    jump = np.maximum(comp[1:], mem[1:]) - held_from_before(comp, mem, dram_s(conv(x), cfg, H100), growth)
    return p, [int(v) for v in x[1:][jump > 1e-9 * np.maximum(comp[1:], mem[1:])]]


def test_conv2d_in_its_output_channels_equals_brute_force():
    # a convolution's DRAM term is its real tensors, not the implicit GEMM's replicated A, so the
    # closed form is checked against predict_latency of the convolution itself
    def conv(k):
        return wm.Conv2d(n=8, c=64, h=56, w=56, k=k, r=3, s=3, padding=1)

    x = np.arange(1, 3001)
    p, expected = conv_brute_steps(conv, BPS1, x)
    assert symbolic.step_positions(conv(1), BPS1, H100, "n", 1, 3000) == expected and expected
    fn = symbolic.latency_function(conv(1), BPS1, H100, "n")
    np.testing.assert_allclose(fn(x), p.latency_s, rtol=1e-12)
    with pytest.raises(ValueError, match="output channels"):
        symbolic.step_positions(conv(1), BPS1, H100, "m", 1, 3000)


@pytest.mark.parametrize("cfg", [BPS1, BPS2, STORE], ids=lambda c: c.name)
def test_conv2d_stride_2_1x1_equals_brute_force(cfg):
    # a 1x1 filter at stride 2 touches every other input row and column: p = q = (56 - 1) // 2 + 1 = 28
    # and the DRAM term reads min(56, 28 * min(1, 2)) = 28 rows and 28 columns, a quarter of the input.
    # Bytes by hand (fp16, 2 bytes): input 8 * 28 * 28 * 256 * 2, filters k * 256 * 2, output
    # 8 * 28 * 28 * k * 2: affine in k, the closed form's line.
    def conv(k):
        return wm.Conv2d(n=8, c=256, h=56, w=56, k=k, r=1, s=1, stride=2)

    assert (conv(1).p, conv(1).q) == (28, 28)
    t = symbolic.latency_terms(conv(1), cfg, H100, "n")
    d = t["symbol"]
    resolved = calibration.profile_for(H100, cfg.name).apply(cfg)
    bw = H100.dram_bandwidth_bytes_per_s * resolved.bandwidth_efficiency
    for k in (1, 64, 1000, 2048):
        by_hand = (8 * 28 * 28 * 256 * 2 + k * 256 * 2 + 8 * 28 * 28 * k * 2) / bw
        assert float(t["dram_s"].subs(d, k)) == pytest.approx(by_hand, rel=1e-12)
    x = np.arange(1, 2501)
    p, expected = conv_brute_steps(conv, cfg, x)
    assert symbolic.step_positions(conv(1), cfg, H100, "n", 1, 2500) == expected and expected
    np.testing.assert_allclose(symbolic.latency_function(conv(1), cfg, H100, "n")(x), p.latency_s, rtol=1e-12)


# ---------------------------------------------------------------------------------------------------
# property: random configurations, GPUs, dimensions and ranges

@st.composite
def configs(draw):
    cfg = wm.KernelConfig(
        name="hyp", tile_m=draw(st.sampled_from([16, 32, 64, 128, 256])),
        tile_n=draw(st.sampled_from([8, 16, 64, 128, 256])), tile_k=draw(st.sampled_from([8, 32, 64])),
        threads=draw(st.sampled_from([64, 128, 256, 384, 512])),
        regs_per_thread=draw(st.integers(16, 168)),
        smem_per_block_bytes=draw(st.integers(0, 160_000)),
        cluster_m=draw(st.sampled_from([1, 1, 2])), cluster_n=draw(st.sampled_from([1, 1, 2, 4])),
        split_k=draw(st.sampled_from([1, 1, 2, 3, 4])),
        math=draw(st.sampled_from(["tensor", "simt"])),
        efficiency=draw(st.sampled_from([0.5, 0.8])),
        tile_overhead_s=draw(st.sampled_from([0.0, 1e-6])),
        store_bytes_per_s=draw(st.sampled_from([0.0, 0.0, 5e9, 50e9])),
        single_block_speedup=draw(st.sampled_from([1.0, 1.5, 2.0, 3.0])),
        k_iter_latency_s=draw(st.sampled_from([0.0, 0.0, 1e-7])),
        unhidden_fraction=draw(st.sampled_from([0.0, 0.0, 0.2])),
    )
    gpu = wm.gpu(draw(st.sampled_from(["h100-sxm", "a100-40gb", "rtx-3090", "t4", "l4"])))
    try:
        cfg.occupancy(gpu)
    except ValueError:
        assume(False)
    return cfg, gpu


# found by this property on a clean CI run: at m = 673 the L2 term rises to the ingest term, a last
# ulp above it, which the closed form once counted as a step
ULP_CASE = (wm.KernelConfig(name="hyp", tile_m=32, tile_n=64, tile_k=8, threads=256,
                            regs_per_thread=16, smem_per_block_bytes=0, cluster_n=4, split_k=4,
                            efficiency=0.5, tile_overhead_s=0.0),
            wm.gpu("h100-sxm"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs(), st.sampled_from(["m", "n", "k"]), st.integers(1, 8192), st.integers(1, 8192),
       st.integers(1, 4), st.integers(1, 3000), st.integers(0, 2500))
@example(ULP_CASE, "m", 3, 1, 3, 1, 672)
def test_step_positions_property(cfg_gpu, free, a, b, batch, lo, width):
    cfg, gpu = cfg_gpu
    others = [x for x in "mnk" if x != free]
    fixed = dict(zip(others, (a, b), strict=True))
    hi = lo + width
    assert steps(fixed, cfg, gpu, free, lo, hi, batch=batch) == brute_steps(
        fixed, cfg, gpu, free, lo, hi, batch=batch)


# ---------------------------------------------------------------------------------------------------
# library backends: the selected configuration's staircase

def brute_staircase_steps(dims, gpu, free, lo, hi, backend, make=None):
    """The staircase_steps definition evaluated at every d of the range.

    ``make(x)`` gives the problem at the free dimension's values ``x`` (default: a GEMM of ``dims``).
    """
    from wavemodel.latency import candidate_configs

    x = np.arange(max(lo, 2) - 1, hi + 1)
    make = make or (lambda v: wm.Gemm(**(dims | {free: v})))
    shape = make(x)
    g = shape.gemm() if isinstance(shape, wm.Conv2d) else shape
    sel = make(-(-x[1:] // 8) * 8)                     # every cuBLAS / cuDNN config aligns to 1 or 8
    g_aligned = sel.gemm() if isinstance(sel, wm.Conv2d) else sel
    configs = candidate_configs(backend, gpu, "fp16")
    assert {c.alignment_elements for c in configs} <= {1, 8}
    profile = calibration.profile_for(gpu, backend)
    now, held = [], []
    for c in configs:
        t = config_latency(g, profile.apply(c), gpu, profile, shape)
        keys = ("latency_s", "compute_s", "memory_s", "fixed_s", "memset_s", "dispatch_s", "dram_s",
                "scalar_write_s", "l2_s", "ingest_s")
        lat, comp, mem, fixed, memset, dispatch, dram, aligning, l2, ingest = (
            np.broadcast_to(t[key], x.shape) for key in keys)
        dram = dram + aligning      # C's partial-sector writes: the DRAM stream at d, never held
        now.append(dict(latency_s=lat[1:]))
        # held from d - 1: the memset a persistent kernel adds from its second wave and the first
        # wave's CTA dispatch are quantised too
        fixed_held = fixed[1:] - memset[1:] + memset[:-1] - dispatch[1:] + dispatch[:-1]
        applied = profile.apply(c)     # the library's profile: its configurations' own names have none
        growth = epilogue_growth(wm.predict_latency(shape, gpu, backend=c, profile=profile), g, applied, gpu)
        # L2 and ingest held at d - 1 even where those writes outran them there
        held.append(dict(latency_s=fixed_held + held_from_before(comp, mem, dram, growth,
                                                                 applied.unhidden_fraction,
                                                                 np.maximum(l2, ingest))))
    pick = np.arange(x.size - 1)
    lat_now = np.stack([t["latency_s"] for t in now])[select(g_aligned, configs, now, sel), pick]
    lat_held = np.stack([t["latency_s"] for t in held])[select(g_aligned, configs, held, sel), pick]
    aligned = x[1:] % 8 == 0
    predicted = wm.predict_latency(shape, gpu, backend).latency_s[1:]
    np.testing.assert_allclose(lat_now[aligned], predicted[aligned], rtol=1e-12)
    return [int(v) for v in x[1:][lat_now > lat_held * (1 + 1e-9)]]


@pytest.mark.parametrize(("dims", "free"), [(dict(m=4096, k=4096), "n"), (dict(n=1000, k=8192), "m"),
                                            (dict(m=512, k=16384), "n")])
def test_library_staircase_steps_equal_brute_force(dims, free):
    expected = brute_staircase_steps(dims, H100, free, 1, 6000, "cublas")
    assert symbolic.staircase_steps(wm.Gemm(**(dims | {free: 1})), H100, free, 1, 6000, "cublas") == expected
    assert expected


# cuDNN's plain-GEMM kernels run on the 1x1 stride-1 conv only, not on the 3x3 or the strided 1x1
@pytest.mark.parametrize("conv", [dict(n=8, c=64, h=56, w=56, r=3, s=3, padding=1),
                                  dict(n=8, c=256, h=56, w=56, r=1, s=1, stride=2),
                                  dict(n=8, c=256, h=28, w=28, r=1, s=1)], ids=["3x3", "1x1s2", "1x1"])
def test_cudnn_staircase_steps_equal_brute_force(conv):
    def make(k):
        return wm.Conv2d(**conv, k=k)

    expected = brute_staircase_steps(None, H100, "n", 1, 3000, "cudnn", make)
    assert symbolic.staircase_steps(make(1), H100, "n", 1, 3000) == expected
    assert expected


def test_library_steps_explain_every_rise_of_an_aligned_sweep():
    # sampled on multiples of 8, the cuBLAS staircase rises between x[i-1] and x[i] only where a
    # step lies in (x[i-1], x[i]]; elsewhere it grows by no more than the affine terms do
    dims = dict(m=4096, k=4096)
    x = np.arange(256, 8193, 8)
    p = wm.predict_latency(wm.Gemm(**dims, n=x), H100)
    found = symbolic.staircase_steps(wm.Gemm(**dims, n=1), H100, "n", 256, 8192)
    has_step = np.array([any(a < s <= b for s in found) for a, b in zip(x[:-1], x[1:], strict=True)])
    rise = np.diff(p.latency_s)
    assert has_step.any() and np.all(rise[has_step] > 0)
    assert np.all(rise[~has_step] < 1e-7)     # a plateau: the memory slope is ~3 ns per 8 columns


def test_staircase_steps_of_one_config_are_its_step_positions():
    g = wm.Gemm(m=4096, n=1, k=4096)
    assert symbolic.staircase_steps(g, H100, "n", 2, 4300, backend=BPS1) == WAVES_132_FROM_32


# ---------------------------------------------------------------------------------------------------
# bad input

@pytest.mark.parametrize(("kwargs", "field"), [
    (dict(free="x"), "free"), (dict(lo=0), "lo"), (dict(lo=10, hi=5), "hi"), (dict(lo=1.5), "lo"),
])
def test_bad_arguments_raise_value_error_naming_the_field(kwargs, field):
    args = dict(free="n", lo=1, hi=100) | kwargs
    with pytest.raises(ValueError, match=field):
        symbolic.step_positions((128, 1, 128), BPS1, H100, **args)


def test_config_that_cannot_fit_raises():
    huge = wm.KernelConfig(name="huge", tile_m=128, tile_n=128, tile_k=64, threads=256,
                           regs_per_thread=64, smem_per_block_bytes=300_000)
    with pytest.raises(ValueError, match="huge"):
        symbolic.latency_expr((128, 128, 128), huge, H100)
    with pytest.raises(ValueError, match="gpu"):
        symbolic.step_positions((128, 1, 128), BPS1, "no-such-gpu", "n", 1, 10)
    with pytest.raises(ValueError, match="backend"):
        symbolic.staircase_steps((128, 1, 128), H100, "n", 1, 10, backend="nope")
    with pytest.raises(ValueError, match="scalars"):
        symbolic.latency_expr(wm.Gemm(m=np.arange(1, 4), n=4, k=4), BPS1, H100)


OWN_GEMMS = sorted(n for n, c in own_kernels().items() if c.kind == "gemm")


@pytest.mark.skipif(not OWN_GEMMS, reason="needs our GEMM kernels in the catalogue")
@pytest.mark.parametrize("name", OWN_GEMMS)
def test_own_kernels_with_the_shipped_profile_equal_the_model(name):
    """Our kernels as calibrated (partial overlap, element-wise stores): closed form == model, and its
    steps == brute force, along n including misaligned values."""
    cfg = own_kernels()[name]
    dtype = cfg.dtypes[0]
    dims = dict(m=3000, k=1000 if dtype == "fp32" else 1024)
    x, p = sweep(dims, cfg, H100, "n", 1, 3000, dtype)
    fn = symbolic.latency_function(wm.Gemm(**dims, n=1, dtype=dtype), cfg, H100, "n")
    np.testing.assert_allclose(fn(x), p.latency_s, rtol=1e-12)
    assert steps(dims, cfg, H100, "n", 1, 3000, dtype) == brute_steps(dims, cfg, H100, "n", 1, 3000, dtype)


OWN_CONVS = sorted(n for n, c in own_kernels().items() if c.kind == "conv")


@pytest.mark.skipif(not OWN_CONVS, reason="needs our conv kernels in the catalogue")
@pytest.mark.parametrize("c", [64, 72])          # 72: channel rows off 32-byte sectors (more L2 traffic)
@pytest.mark.parametrize("hw", [28, 7])          # 7: a fifth of the taps in the padding (no bytes move)
@pytest.mark.parametrize("name", OWN_CONVS)
def test_own_convs_with_the_shipped_profile_equal_the_model(name, c, hw):
    cfg = own_kernels()[name]
    conv = wm.Conv2d(n=8, c=c, h=hw, w=hw, k=64, r=3, s=3, stride=1, padding=1, dtype="fp16")
    x = np.arange(8, 1200, 8)
    p = wm.predict_latency(dataclasses.replace(conv, k=x), H100, backend=name)
    fn = symbolic.latency_function(conv, cfg, H100, "n")
    np.testing.assert_allclose(fn(x), p.latency_s, rtol=1e-12)


@pytest.mark.skipif(not OWN_CONVS, reason="needs our conv kernels in the catalogue")
@pytest.mark.parametrize("c", [720, 728])        # 728: off 32-byte sectors, a slower DRAM stream
@pytest.mark.parametrize("name", OWN_CONVS)
def test_own_convs_where_a_tap_pass_outgrows_the_l2_equal_the_model(name, c):
    # 720 channels over 8 x 112 x 112: with few output channels every running CTA holds its own rows of
    # pixels and one tap pass (264 or 396 x 128 rows x 1440 bytes, 49 or 73 MB) outgrows three quarters
    # of the L2; as k grows the CTAs of one row of tiles share their pixels and the re-reads ramp down
    cfg = own_kernels()[name]
    conv = wm.Conv2d(n=8, c=c, h=112, w=112, k=64, r=3, s=3, stride=1, padding=1, dtype="fp16")
    x = np.arange(8, 1200, 8)
    profile, convs = calibration.profile_for(H100, name), dataclasses.replace(conv, k=x)
    terms = latency.config_latency(convs.gemm(), profile.apply(cfg), H100, profile, convs)
    assert terms["reread_s"][0] > 0 and terms["reread_s"][-1] == 0
    p = wm.predict_latency(convs, H100, backend=name)
    fn = symbolic.latency_function(conv, cfg, H100, "n")
    np.testing.assert_allclose(fn(x), p.latency_s, rtol=1e-12)
