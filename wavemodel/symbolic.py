"""Closed form of one configuration's latency in one free dimension, and the exact positions of its steps.

``latency_expr`` writes ``wavemodel.latency.config_latency`` for ONE ``KernelConfig`` as a sympy
expression in one free GEMM dimension ``d`` (``m``, ``n`` or ``k``; the others, the batch and the
dtype fixed; for a ``Conv2d``, ``n``: its output channels per group)::

    tiles     = batch * tiles_m * tiles_n * split_k,  tiles_x = c_x * ceiling(x / (tile_x * c_x))
    waves     = ceiling(tiles / wave_size)
    tail_bps  = ceiling((tiles - (waves - 1) * wave_size) / sm_count)     # busiest SM, last wave
    busiest   = (waves - 1) * bps + tail_bps                              # tiles on the busiest SM
    k_iters   = ceiling(k / (split_k * tile_k))
    C         = t_iter * k_iters * ((waves - 1) * bps + Max(tail_q, bps / min(speedup, bps)))
                (speedup: single_block_speedup, or tail_block_speedup where set and waves > 1;
                tail_q = tail_bps, or where a block's warps are not a multiple of the SM's w schedulers
                ceiling(tail_bps * warps / w) * bps / ceil(bps * warps / w): the busiest scheduler)
                (t_iter + where scalar_load_rate is set: (m / tiles_m * [k % v != 0] + n / tiles_n *
                 [n % v != 0]) * tile_k * in_bytes / scalar_load_rate, v = 16 / in_bytes: element-wise
                 loads of the operand rows that exist; m, n continuous, tiles_m, tiles_n quantised)
                (t_iter times line_aligned_rows_factor where k * in_bytes % 128 == 0: A's rows all at
                 one offset of their lines; continuous in k, like the alignment terms)
                + busiest * tile_overhead + E                               # wave-quantised compute
                (with a k_iter_latency: each wave's math at least k_iters * k_iter_latency)
    E         = busiest * batch * m * n / tiles * out_bytes * s / store_rate   # epilogue (mean tile)
                (s = scalar_store_factor where n % (16 / out_bytes) != 0, else 1: element-wise stores;
                 with last_tile_full one of the busiest tiles is Min(m, tile_m) * Min(n, tile_n) instead;
                 with epilogue_drains_c E is at least W, C's DRAM write time, affine in d)
    L2        = tiles * panel_bytes * f * k_iters / l2_bandwidth           # A, B panels out of L2
                (+ batch * m * n * out_bytes / l2_bandwidth with l2_counts_writes: C's writes, continuous)
                (a conv kernel that zero-fills padding taps: A's rows times the share of taps inside;
                 one that zero-fills edge rows: m / tiles_m rows of A, n / tiles_n of B, continuous)
    I         = busiest * panel_bytes * f * k_iters / sm_bandwidth        # (bandwidths: the kernel's own
                (f: per panel, a conv's panel_traffic_factors; else 1)       # or the GPU's)
    D         = dram_bytes / (dram_bandwidth * bandwidth_efficiency)      # affine in d
                (C's writes at write_bandwidth_efficiency where a profile sets it; none with
                 epilogue_drains_c, whose epilogue has them; + batch * m * n * out_bytes /
                 scalar_write_rate where n % (16 / out_bytes) != 0: element-wise C writes; + batch * m
                 * n * out_bytes * (off_sector_write_factor - 1) / write_rate where n * out_bytes % 32
                 != 0: partial-sector C writes; the same with partial_line_write_factor where n *
                 out_bytes % 128 != 0: C's rows share lines between tiles; a conv's whole DRAM time
                 channel_dram_factor times where C is off 32-byte sectors)
    F         = kernel_fixed + extra kernels (split-K reduce, memsets)    # affine in d, but memsets
                + Min(tiles, wave_size) * cta_dispatch                      # and the first wave's dispatch
                + straggler * H(Min(tail_tiles, sm_count))                  # the last wave's slowest SM
    latency   = F + Piecewise((C, C >= M), (M, True)),  M = Max(D, L2, I)
                (dram_l2_norm: M = Max(Max(D, L2) * (1 + (Min(D, L2) / Max(D, L2))**q)**(1/q), I),
                 q = dram_l2_norm: DRAM and L2 requests queue at the same slices)
                + unhidden_fraction * Min(C, M)                             # where a profile sets it
                (smooth_overlap: F + Max(C, M) * (1 + (Min(C, M) / Max(C, M))**p)**(1/p),
                 p = ln 2 / ln(1 + unhidden_fraction))

(``E`` is 0 where the configuration has no store rate.) ``C``, ``L2`` and ``I`` are written out from
the tile and wave arithmetic. ``D`` and ``F`` are affine in every dimension and are taken from the
model itself (``config_latency``'s ``dram_s`` and ``fixed_s`` at two points give the
line, a third checks it), so the closed form follows the model's byte accounting where that changes
(a strided convolution's input rows and columns depend on its geometry, not on its output channels).

**Quantised and continuous.** ``d`` enters the terms in two ways. The *quantised* quantities
(``tiles``, ``waves``, ``tail_bps``, ``busiest``, ``k_iters`` and a persistent kernel's memset,
launched from its second wave on) change only where the tile count (``m``, ``n``) or ``k_iters``
(``k``) changes. The *continuous* ones are ``D``, ``F``'s affine part and the epilogue's mean valid tile
``batch * m * n / tiles`` (``tiles`` quantised), which grows linearly with ``m`` (``n``) between tile
boundaries and falls at each. So ``L2`` and ``I`` are piecewise constant, and ``C`` is too in ``k``
and, with a store rate, linear in ``m`` and ``n`` between boundaries. The expressions
carry a second symbol ``<d>_held`` (``held_symbol``) that every quantised quantity reads instead of
``d``; ``latency_expr`` sets it to ``d``.

**Step.** The *piece that holds at d - 1* is the latency with every quantised quantity at its value
at ``d - 1`` and every continuous one at ``d`` (``P(d)``, the closed form with ``<d>_held = d - 1``).
An integer ``d >= 2`` is a *step* when ``latency(d) > P(d)``: a discontinuity. Growth within a piece
(the DRAM and fixed lines, the epilogue's mean valid tile) is not a step, and neither is the
element-wise store factor and load time, which follow ``n``'s (``k``'s) alignment, not its tiles (an
unaligned ``n`` runs off the aligned staircase; the alignment is continuous here). The quantised
quantities never fall as ``d`` grows; where a new tile adds no work to the busiest SM, the mean valid
tile (and with it the latency) may fall below ``P(d)``: never a step. Without an
``unhidden_fraction``, ``d`` is a step exactly when ``S = Max(C, L2, I)`` rises above its held value
and exceeds ``D(d)``, or a memset starts, or (with a CTA dispatch cost) the first wave gains a CTA,
or (with a straggler wait) the last wave gains an SM, net of whatever else moves at that boundary (a
new wave's first tile resets the wait to one SM's): where the DRAM term binds, a boundary does not
show. With an ``unhidden_fraction`` the shorter term
adds, so a rise of ``C``, or of ``Max(L2, I)`` above ``D(d)``, is a step even where the other binds;
with a ``dram_l2_norm`` the norm grows with ``L2`` wherever ``I`` does not bind, so a rise of ``L2``
is a step even where ``D`` is the longer stream.
``step_positions`` evaluates the closed form and its held piece at the boundaries, whatever the terms.

Between tile boundaries every quantised quantity is the same at ``d - 1`` and ``d``, so
``latency(d) = P(d)``: steps lie only where the tile count changes, at ``d = q * tile * cluster + 1``
for ``m`` and ``n``, ``d = q * split_k * tile_k + 1`` for ``k`` (at a boundary ``E`` moves with
``busiest`` and ``tiles``). Whether ``S`` rises there comes from the wave arithmetic: ``busiest``
rises where ``tiles`` crosses a wave (``w * wave_size``) or a busiest-SM boundary (``w * wave_size +
j * sm_count``, inside a wave when ``bps > 1``), and with it ``I`` and ``C``'s per-tile overhead and
epilogue (``C``'s math only when that block outlasts a lone block); ``L2`` rises with every tile.
``step_positions`` evaluates the closed form at those boundaries only, never at every ``d``. The
wave count does not depend on ``k``: ``k``'s steps are
K-tile quantization (one more main-loop iteration), not waves.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from . import calibration
from .configs import KernelConfig, for_filter
from .gpus import GPUSpec
from .gpus import gpu as lookup_gpu
from .latency import (
    EULER_GAMMA,
    LINE_BYTES,
    SECTOR_BYTES,
    TAP_REUSE_L2_SHARES,
    _Shared,
    candidate_configs,
    channel_dram_slowdown,
    config_latency,
    panel_bytes_per_k_tile,
    panel_traffic_factors,
    pointwise_filter,
    select,
    tap_pass_bytes_per_row,
    tap_reread_bytes,
    valid_tap_fraction,
    write_rate_bytes_per_s,
    written_bytes_per_output,
)
from .shapes import DTYPE_IN_BYTES, DTYPE_OUT_BYTES, Conv2d, Gemm, as_shape
from .waves import wave_size

FREE_DIMS = ("m", "n", "k")


def _check_free(free: str) -> str:
    if free not in FREE_DIMS:
        raise ValueError(f"free: {free!r} is not a GEMM dimension; allowed values: {', '.join(FREE_DIMS)}")
    return free


def problem(shape, free: str) -> Gemm | Conv2d:
    """``shape`` as a scalar ``Gemm`` or ``Conv2d`` whose dimension ``free`` may vary."""
    shape, free = as_shape(shape), _check_free(free)
    if isinstance(shape, Conv2d) and free != "n":
        raise ValueError(f"free: a Conv2d varies in its output channels, free='n' (implicit GEMM N), "
                         f"not {free!r}")
    if not shape.is_scalar:
        raise ValueError("shape: the fixed dimensions must be scalars, not arrays")
    return shape


def at(shape: Gemm | Conv2d, free: str, values) -> Gemm | Conv2d:
    """``shape`` with GEMM dimension ``free`` set to ``values`` (a Conv2d: ``k = values * groups``)."""
    if isinstance(shape, Conv2d):
        return replace(shape, k=np.asarray(values) * shape.groups)
    return replace(shape, **{_check_free(free): values})


def _gemm(shape: Gemm | Conv2d) -> Gemm:
    return shape.gemm() if isinstance(shape, Conv2d) else shape


def resolve(cfg: KernelConfig, gpu: GPUSpec | str, profile: calibration.Profile | None = None,
            shape: Gemm | Conv2d | None = None):
    """``(cfg, gpu, profile)``, the profile applied to ``cfg`` as ``predict_latency`` applies it to
    ``shape`` (a 1x1 conv takes a conv kernel's ``pointwise_family``, ``configs.for_filter``)."""
    gpu = lookup_gpu(gpu)
    if not isinstance(cfg, KernelConfig):
        raise ValueError(f"cfg: expected a wm.KernelConfig, got {type(cfg).__name__}")
    if profile is None:
        profile = calibration.profile_for(gpu, cfg.name)
    cfg = profile.apply(_for_shape(cfg, shape, profile) if shape is not None else cfg)
    cfg.occupancy(gpu)   # ValueError if it cannot fit on an SM
    return cfg, gpu, profile


def _for_shape(cfg: KernelConfig, shape: Gemm | Conv2d, profile: calibration.Profile) -> KernelConfig:
    """``cfg`` with the calibration family ``predict_latency`` gives it for ``shape`` (one filter kind:
    a closed form has one shape), before the profile is applied."""
    return for_filter(cfg, bool(np.all(pointwise_filter(shape))), profile.families)


def _p_norm(a: sp.Expr, b: sp.Expr, p: float) -> sp.Expr:
    """``latency.p_norm_s`` as an expression: ``Max(a, b) * (1 + (Min(a, b) / Max(a, b))**p)**(1/p)``."""
    longer = sp.Max(a, b)
    return longer * (1 + (sp.Min(a, b) / longer) ** sp.Float(p)) ** (1 / sp.Float(p))


def _affine_line(values, x, d: sp.Symbol, what: str) -> sp.Expr:
    """``a + b * d`` through ``values`` at ``x[0]`` and ``x[2]``, checked at ``x[1]``."""
    y = np.broadcast_to(np.asarray(values, dtype=np.float64), x.shape)
    slope = (y[2] - y[0]) / float(x[2] - x[0])
    if not np.isclose(y[0] + slope * float(x[1] - x[0]), y[1], rtol=1e-9, atol=1e-18):
        raise ValueError(f"free: the model's {what} is not affine in {d}; symbolic.py needs updating")
    return sp.Float(y[0] - slope * float(x[0])) + sp.Float(slope) * d


def _terms(shape: Gemm | Conv2d, cfg: KernelConfig, gpu: GPUSpec, free: str, profile) -> dict:
    """Sympy expressions of every model term, with the free dimension a positive integer symbol.

    Each term comes twice: under its name with ``symbol`` everywhere, and under ``held`` in
    ``symbol`` and ``held_symbol``, the quantised quantities reading ``held_symbol`` (module docstring).
    """
    d = sp.Symbol(free, integer=True, positive=True)
    dq = sp.Symbol(f"{free}_held", integer=True, positive=True)
    g = _gemm(shape)
    fixed_dims = {"m": sp.Integer(g.m), "n": sp.Integer(g.n), "k": sp.Integer(g.k)}
    m_q, n_q, k_q = ((fixed_dims | {free: dq})[x] for x in "mnk")   # quantised: tile and K-tile counts
    m, n = ((fixed_dims | {free: d})[x] for x in "mn")              # continuous: the epilogue's valid tile
    bps, size = cfg.occupancy(gpu).blocks_per_sm, wave_size(cfg, gpu)

    tiles_n = cfg.cluster_n * sp.ceiling(n_q / (cfg.tile_n * cfg.cluster_n))
    tiles_m = cfg.cluster_m * sp.ceiling(m_q / (cfg.tile_m * cfg.cluster_m))
    tm = sp.Integer(cfg.tile_m)
    if cfg.tile_m_granule:        # a problem-sized tile_m filling as many waves as tile_m's tiles need
        per_m = g.batch * tiles_n * cfg.split_k
        w = sp.ceiling(tiles_m * per_m / size)
        cap = cfg.cluster_m * sp.floor(sp.floor(w * size / per_m) / cfg.cluster_m)
        gran = cfg.tile_m_granule
        tm = sp.Min(cfg.tile_m, gran * sp.ceiling(sp.ceiling(m_q / cap) / gran))
        tiles_m = cfg.cluster_m * sp.ceiling(sp.ceiling(m_q / tm) / cfg.cluster_m)
    tiles = g.batch * tiles_m * tiles_n * cfg.split_k
    waves = sp.ceiling(tiles / size)
    tail_bps = sp.ceiling((tiles - (waves - 1) * size) / gpu.sm_count)
    busiest = (waves - 1) * bps + tail_bps
    k_iters = sp.ceiling(k_q / (cfg.split_k * cfg.tile_k))
    sm_rate = gpu.peak_flops(g.dtype, cfg.math) / gpu.sm_count
    t_iter = sp.Float(2.0 * cfg.tile_n * cfg.tile_k / (sm_rate * cfg.efficiency)) * tm
    if cfg.line_aligned_rows_factor != 1:   # A's rows all at one offset of their 128-byte lines
        k = (fixed_dims | {free: d})["k"]
        aligned = sp.Eq(sp.Mod(k * DTYPE_IN_BYTES[g.dtype], LINE_BYTES), 0)
        t_iter = t_iter * sp.Piecewise((sp.Float(cfg.line_aligned_rows_factor), aligned), (1, True))
    if cfg.scalar_load_bytes_per_s:   # element-wise operand loads where A's (K) or B's (N) rows are
        vector = 16 // DTYPE_IN_BYTES[g.dtype]      # off 16 bytes: alignment, not tiles (continuous)
        k = (fixed_dims | {free: d})["k"]
        rows = m / tiles_m * sp.Piecewise((0, sp.Eq(sp.Mod(k, vector), 0)), (1, True)) + n / tiles_n * (
            sp.Piecewise((0, sp.Eq(sp.Mod(n, vector), 0)), (1, True)))      # a tile's mean valid rows
        t_iter = t_iter + rows * sp.Float(cfg.tile_k * DTYPE_IN_BYTES[g.dtype] / cfg.scalar_load_bytes_per_s)
    lone = sp.Float(bps / min(cfg.single_block_speedup, bps))
    if cfg.tail_block_speedup:    # after a full wave a late block runs beside the wave's stragglers
        lone = sp.Piecewise((sp.Float(bps / min(cfg.tail_block_speedup, bps)), waves > 1), (lone, True))
    occ = cfg.occupancy(gpu)
    warps, parts = occ.warps_per_block, gpu.warp_schedulers_per_sm
    tail_math = tail_bps          # the last wave's busiest warp scheduler, in blocks (scheduler_slots)
    if warps % parts:
        tail_math = sp.ceiling(tail_bps * sp.Rational(warps, parts)) * sp.Float(
            bps / math.ceil(bps * warps / parts))
    t_tile = t_iter * k_iters
    if cfg.k_iter_latency_s:      # no wave shorter than k_iters round trips of one CTA
        floor = k_iters * sp.Float(cfg.k_iter_latency_s)
        main = (waves - 1) * sp.Max(bps * t_tile, floor) + sp.Max(t_tile * sp.Max(tail_math, lone), floor)
    else:
        main = t_tile * ((waves - 1) * bps + sp.Max(tail_math, lone))
    compute = main + busiest * sp.Float(cfg.tile_overhead_s)
    x = np.array([1, 4099, 1 << 20], dtype=np.int64)
    shape_x = at(shape, free, x)
    terms_x = config_latency(_gemm(shape_x), cfg, gpu, profile, shape_x)
    vector = 16 // DTYPE_OUT_BYTES[g.dtype]
    if cfg.store_bytes_per_s:     # a tile's valid outputs on average (edge tiles store less)
        valid = g.batch * m * n / tiles
        stored = busiest * valid
        if cfg.last_tile_full:    # the last of the busiest SM's tiles a full interior one
            stored = stored + sp.Min(m, tm) * sp.Min(n, cfg.tile_n) - valid
        if cfg.scalar_store_factor != 1:       # element-wise stores where rows of C are misaligned
            stored = stored * sp.Piecewise((1, sp.Eq(sp.Mod(n, vector), 0)),
                                           (sp.Float(cfg.scalar_store_factor), True))
        epilogue = stored * sp.Float(DTYPE_OUT_BYTES[g.dtype] / cfg.store_bytes_per_s)
    else:
        epilogue = sp.Integer(0)
    if cfg.epilogue_drains_c:     # at least C's DRAM writes (affine in d), out of the DRAM term
        # max(a, b) as (a + b + |a - b|) / 2: sympy's printer simplifies the Piecewise conditions
        # that hold this term by substituting values where a Max of its ceilings is not comparable
        written = _affine_line(terms_x["c_write_s"], x, d, "C write time")
        epilogue = (epilogue + written + sp.Abs(epilogue - written)) / 2
    compute = compute + epilogue
    # a conv's A rows of taps in the padding move no bytes where its kernel zero-fills them: their
    # share depends on the image and filter, not on the free dimension (output channels)
    loaded_m, loaded_n = tm, sp.Integer(cfg.tile_n)
    if cfg.edge_loads_free:       # an edge tile's rows past M (N) move no bytes: a tile's mean valid rows
        loaded_m, loaded_n = sp.Min(m / tiles_m, tm), sp.Min(n / tiles_n, cfg.tile_n)   # (continuous)
    if cfg.padding_loads_free:
        loaded_m = loaded_m * float(valid_tap_fraction(shape))
    # each panel's traffic factor: a conv's C, filter, stride and image, not the free dimension
    factor_a, factor_b = (float(f) for f in panel_traffic_factors(cfg, shape, g.dtype))
    a_l2, a_sm = panel_bytes_per_k_tile(cfg, g.dtype, loaded_m, 0)
    b_l2, b_sm = panel_bytes_per_k_tile(cfg, g.dtype, 0, loaded_n)
    from_l2, into_sm = factor_a * a_l2 + factor_b * b_l2, factor_a * a_sm + factor_b * b_sm
    l2 = tiles * k_iters * sp.sympify(from_l2 / profile.l2_bandwidth(gpu, cfg)).evalf()
    if cfg.l2_counts_writes:      # C's writes through the L2 beside the panel reads (continuous in d)
        per_output = written_bytes_per_output(cfg, g.dtype)
        l2 = l2 + g.batch * m * n * sp.Float(per_output / profile.l2_bandwidth(gpu, cfg))
    ingest = busiest * k_iters * sp.sympify(into_sm / profile.sm_bandwidth(gpu, cfg)).evalf()

    dram = _affine_line(terms_x["dram_s"] - terms_x["reread_s"], x, d, "DRAM traffic")
    if cfg.taps_reread_past_l2 and isinstance(shape, Conv2d):   # latency.tap_reread_bytes, in the tiles
        concurrent = sp.Min(sp.Min(tiles_m, sp.ceiling(sp.Min(tiles, size) / tiles_n)) * tm, m)
        per_pass = concurrent * float(tap_pass_bytes_per_row(shape))
        lo, hi = (share * gpu.l2_bytes for share in TAP_REUSE_L2_SHARES)
        miss = sp.Min(1, sp.Max(0, (per_pass - lo) / (hi - lo)))
        per_miss = float(tap_reread_bytes(shape, np.inf, gpu.l2_bytes)) * float(
            channel_dram_slowdown(cfg, shape, g.dtype)) / (
            gpu.dram_bandwidth_bytes_per_s * cfg.bandwidth_efficiency)      # every tap's reuse missed
        dram = dram + miss * sp.Float(per_miss)
    if cfg.scalar_write_bytes_per_s:  # C's element-wise writes where n is off 16 bytes, beside the reads
        dram = dram + sp.Piecewise((0, sp.Eq(sp.Mod(n, vector), 0)), (g.batch * m * n * sp.Float(
            DTYPE_OUT_BYTES[g.dtype] / cfg.scalar_write_bytes_per_s), True))
    # C's rows off 32-byte sectors (partial-sector writes) and off 128-byte lines (tiles share their end
    # lines): C's bytes at factor - 1 times their write time there. The mask is 1 where n * out_bytes is
    # off the unit, else 0 (integers); not a Piecewise: the printer simplifies the latency's Piecewise
    # conditions by substituting values, where one inside them gives nan
    for factor, unit in ((cfg.off_sector_write_factor, SECTOR_BYTES),
                         (cfg.partial_line_write_factor, LINE_BYTES)):
        if factor != 1:
            off = sp.Min(1, sp.Mod(n * DTYPE_OUT_BYTES[g.dtype], unit))
            dram = dram + off * g.batch * m * n * sp.Float(
                DTYPE_OUT_BYTES[g.dtype] * (factor - 1) / write_rate_bytes_per_s(cfg, gpu))
    # the fixed time is affine but for a persistent kernel's memset, launched from its second wave on,
    # and the first wave's CTA dispatch
    fixed_affine = _affine_line(terms_x["fixed_s"] - terms_x["memset_s"] - terms_x["dispatch_s"]
                                - terms_x["straggler_s"], x, d, "fixed time")
    memset = sp.Float(profile.launch_overhead_s) * sp.Piecewise((1, waves > 1), (0, True)) if cfg.persistent \
        else sp.Integer(0)
    dispatch = sp.Min(tiles, size) * sp.Float(cfg.cta_dispatch_s) if cfg.cta_dispatch_s else sp.Integer(0)
    straggle = sp.Integer(0)
    if cfg.straggler_s:           # the slowest of the last wave's SMs (latency.straggler_wait_s)
        sms = sp.Min(tiles - (waves - 1) * size, gpu.sm_count)
        straggle = sp.Float(cfg.straggler_s) * (sp.log(sms) + sp.Float(EULER_GAMMA) + 1 / (2 * sms)
                                                - 1 / (12 * sms**2))
    fixed = fixed_affine + memset + dispatch + straggle
    if cfg.dram_l2_norm:          # DRAM and L2 queue at the same slices (latency.streams_s)
        memory = sp.Max(_p_norm(dram, l2, cfg.dram_l2_norm), ingest)
    else:
        memory = sp.Max(dram, l2, ingest)
    latency = fixed + sp.Piecewise((compute, compute >= memory), (memory, True))
    if cfg.unhidden_fraction and cfg.smooth_overlap:    # the p-norm of the two (latency.overlapped_s)
        latency = fixed + _p_norm(compute, memory, math.log(2.0) / math.log1p(cfg.unhidden_fraction))
    elif cfg.unhidden_fraction:   # the part of the shorter stream the pipeline does not hide
        latency = latency + sp.Float(cfg.unhidden_fraction) * sp.Min(compute, memory)
    held = dict(tiles=tiles, waves=waves, tail_blocks_per_sm=tail_bps, busiest_tiles=busiest,
                k_iters=k_iters, compute_s=compute, epilogue_s=epilogue, l2_s=l2, ingest_s=ingest,
                dram_s=dram, memory_s=memory, quantised_s=sp.Max(compute, l2, ingest), fixed_s=fixed,
                fixed_affine_s=fixed_affine, memset_s=memset, dispatch_s=dispatch, straggler_s=straggle,
                latency_s=latency)
    one = {dq: d}
    return dict(symbol=d, held_symbol=dq, held=held) | {key: e.xreplace(one) for key, e in held.items()}


def latency_terms(shape, cfg: KernelConfig, gpu: GPUSpec | str, free: str = "n",
                  profile: calibration.Profile | None = None) -> dict:
    """Every term of the closed form: ``symbol``, ``tiles``, ``waves``, ``busiest_tiles``, ``compute_s``,
    ``epilogue_s``, ``memory_s``, ...; ``held`` holds them in ``symbol`` and ``held_symbol`` (quantised).

    ``shape`` is a ``Gemm``, a ``Conv2d`` (``free="n"``) or an ``(m, n, k)`` tuple; the value it gives
    the free dimension is ignored. ``profile=None`` takes the shipped calibration profile, so the
    expression equals ``predict_latency(shape, gpu, backend=cfg)``.
    """
    shape = problem(shape, free)
    cfg, gpu, profile = resolve(cfg, gpu, profile, shape)
    return _terms(shape, cfg, gpu, free, profile)


def latency_expr(shape, cfg: KernelConfig, gpu: GPUSpec | str, free: str = "n",
                 profile: calibration.Profile | None = None) -> tuple[sp.Symbol, sp.Expr]:
    """``(symbol, latency_s expression)`` of ``cfg`` on ``gpu`` with ``free`` the free dimension."""
    t = latency_terms(shape, cfg, gpu, free, profile)
    return t["symbol"], t["latency_s"]


class _IntegerCeilingPrinter(NumPyPrinter):
    """Prints ``ceiling(p / q)`` as integer ``-(-p // q)``: ``numpy.ceil((8/33) * x)`` misrounds."""

    def _print_ceiling(self, expr):
        num, den = sp.fraction(sp.together(expr.args[0]))
        return f"(-((-({self._print(num)})) // ({self._print(den)})))"


def lambdify(symbol, expr: sp.Expr):
    """``expr`` as a numpy function of integer ``symbol`` values, with exact integer ceilings.

    ``symbol`` may be a tuple of symbols; the function then takes one argument per symbol (broadcast).
    """
    printer = _IntegerCeilingPrinter({"fully_qualified_modules": False, "inline": True,
                                      "allow_unknown_functions": True})
    symbols = tuple(symbol) if isinstance(symbol, tuple | list) else (symbol,)
    fn = sp.lambdify(symbols, expr, "numpy", printer=printer)

    def evaluate(*xs):
        xs = [np.asarray(x, dtype=np.int64) for x in xs]
        shape = np.broadcast_shapes(*(np.shape(x) for x in xs))
        return np.broadcast_to(fn(*xs), shape).astype(np.float64)
    return evaluate


def latency_function(shape, cfg: KernelConfig, gpu: GPUSpec | str, free: str = "n",
                     profile: calibration.Profile | None = None):
    """The closed form as a numpy function of the free dimension (scalar or integer array)."""
    return lambdify(*latency_expr(shape, cfg, gpu, free, profile))


def _check_range(lo, hi) -> tuple[int, int]:
    for name, v in (("lo", lo), ("hi", hi)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"{name}: must be an integer >= 1, got {v!r}")
    if hi < lo:
        raise ValueError(f"hi: must be >= lo ({lo}), got {hi}")
    return int(lo), int(hi)


def boundaries(cfg: KernelConfig, free: str, lo: int, hi: int, shape=None, gpu: GPUSpec | None = None
               ) -> np.ndarray:
    """Every ``d`` in ``[max(lo, 2), hi]`` where the tile count (or ``k_iters``) changes.

    A problem-sized ``tile_m`` (``tile_m_granule``) changes with ``m`` between the tile boundaries of
    ``tile_m`` too: for ``free="m"`` its tile and tile counts are computed over the whole range (numpy,
    the model's own arithmetic) and every ``d`` where one changes is returned (needs ``shape``, ``gpu``).
    """
    if free == "m" and cfg.tile_m_granule:
        x = np.arange(max(lo, 2) - 1, hi + 1)
        if x.size < 2:
            return np.zeros(0, dtype=np.int64)
        g = _gemm(at(shape, "m", x))
        tm, tiles_m = _Shared(g, g).wave_fitted_tile_m(cfg, wave_size(cfg, gpu))
        tiles_max = np.ceil(np.ceil(x / cfg.tile_m) / cfg.cluster_m)
        changed = (np.diff(tm) != 0) | (np.diff(tiles_m) != 0) | (np.diff(tiles_max) != 0)
        return x[1:][changed].astype(np.int64)
    if free == "k":
        period = cfg.split_k * cfg.tile_k
    else:
        period = getattr(cfg, f"tile_{free}") * getattr(cfg, f"cluster_{free}")
    q = np.arange(-(-(max(lo, 2) - 1) // period), (hi - 1) // period + 1, dtype=np.int64)
    return q * period + 1


# a rise smaller than this share is float rounding of two equal pieces (the L2 and ingest terms a
# last ulp apart), not a step
STEP_RTOL = 1e-12


def _pieces(shape, cfg, gpu, free, profile, d: np.ndarray) -> dict:
    """At each ``d``: the latency ``now`` and that of the piece held from ``d - 1`` (``held``)."""
    t = _terms(shape, cfg, gpu, free, profile)
    latency = lambdify((t["held_symbol"], t["symbol"]), t["held"]["latency_s"])
    return dict(now=latency(d, d), held=latency(d - 1, d))


def _step_positions(shape, cfg, gpu, free, lo, hi, profile) -> list[int]:
    d = boundaries(cfg, free, lo, hi, shape, gpu)
    if d.size == 0:
        return []
    p = _pieces(shape, cfg, gpu, free, profile, d)
    return [int(x) for x in d[p["now"] > p["held"] * (1 + STEP_RTOL)]]


def step_positions(shape, cfg: KernelConfig, gpu: GPUSpec | str, free: str, lo: int, hi: int,
                   profile: calibration.Profile | None = None) -> list[int]:
    """Sorted integers ``d`` in ``[lo, hi]`` where ``cfg``'s latency steps (see the module docstring).

    Only the tile boundaries in the range are evaluated, each in closed form, never every ``d``.
    """
    shape, (lo, hi) = problem(shape, free), _check_range(lo, hi)
    cfg, gpu, profile = resolve(cfg, gpu, profile, shape)
    return _step_positions(shape, cfg, gpu, free, lo, hi, profile)


def staircase_steps(shape, gpu: GPUSpec | str, free: str, lo: int, hi: int, backend=None) -> list[int]:
    """Steps of ``predict_latency(shape, gpu, backend)`` in ``free`` over ``[lo, hi]``, any backend.

    For a library backend the latency at ``d`` is that of the configuration its selection rule picks.
    ``d`` is a step when that latency exceeds what the same rule picks at ``d`` among the pieces
    held from ``d - 1`` (every configuration with its quantised terms at their ``d - 1`` values and
    its continuous terms at ``d``). For one configuration this is ``step_positions``. If no
    configuration steps at ``d`` the two agree, so only the union of the configurations' own steps is
    evaluated. The rule is applied as if ``d`` met every configuration's alignment: these are the
    steps of the staircase that aligned shapes (multiples of 8, say) follow; an unaligned ``d`` runs
    a fallback kernel off that staircase, and a switch forced by alignment is never a step. The rule's
    other conditions hold as in ``predict_latency`` (a conv library's plain-GEMM kernels run only on
    1x1, stride-1, unpadded convolutions).
    """
    gpu, shape, (lo, hi) = lookup_gpu(gpu), problem(shape, free), _check_range(lo, hi)
    if isinstance(backend, KernelConfig):
        return step_positions(shape, backend, gpu, free, lo, hi)
    backend = backend or ("cudnn" if isinstance(shape, Conv2d) else "cublas")
    configs = candidate_configs(backend, gpu, shape.dtype)     # ValueError for an unknown backend
    profile = calibration.profile_for(gpu, backend)
    configs = tuple(profile.apply(_for_shape(c, shape, profile)) for c in configs)
    cands = sorted(set().union(*(_step_positions(shape, c, gpu, free, lo, hi, profile) for c in configs)))
    if len(configs) == 1 or not cands:
        return cands
    d = np.asarray(cands, dtype=np.int64)
    align = math.lcm(*(c.alignment_elements for c in configs))
    sel = at(shape, free, -(-d // align) * align)               # d rounded up to meet every alignment
    now, held = [], []
    for c in configs:
        p = _pieces(shape, c, gpu, free, profile, d)
        now.append(dict(latency_s=p["now"]))
        held.append(dict(latency_s=p["held"]))
    pick = np.arange(d.size)
    lat_now = np.stack([t["latency_s"] for t in now])[select(_gemm(sel), configs, now, sel), pick]
    lat_held = np.stack([t["latency_s"] for t in held])[select(_gemm(sel), configs, held, sel), pick]
    return [int(x) for x in d[lat_now > lat_held * (1 + STEP_RTOL)]]
