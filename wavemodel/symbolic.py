"""Closed form of one configuration's latency in one free dimension, and the exact positions of its steps.

``latency_expr`` writes ``wavemodel.latency.config_latency`` for ONE ``KernelConfig`` as a sympy
expression in one free GEMM dimension ``d`` (``m``, ``n`` or ``k``; the other two, the batch and the
dtype fixed)::

    tiles     = batch * tiles_m * tiles_n * split_k,  tiles_x = c_x * ceiling(x / (tile_x * c_x))
    waves     = ceiling(tiles / wave_size)
    tail_bps  = ceiling((tiles - (waves - 1) * wave_size) / sm_count)     # busiest SM, last wave
    t_tile    = 2 * tile_m * tile_n * tile_k * ceiling(k / (split_k * tile_k)) / (peak / sms * eff)
    C         = (waves - 1) * bps * t_tile + t_tile * Max(tail_bps, bps / min(speedup, bps))
                + waves * tile_overhead                                     # wave-quantised compute
    M         = DRAM bytes / (bandwidth * bandwidth_efficiency)             # affine in d
    F         = launch + split-K reduce kernel                              # affine in d
    latency   = F + Piecewise((C, C >= M), (M, True))

``C`` is written out from the tile and wave arithmetic above. ``M`` and ``F`` are affine in every
dimension, so they are taken from ``config_latency`` itself (two evaluations give the line, a third
checks it): the closed form follows the model's byte accounting wherever that changes.

**Step.** ``C`` is piecewise constant in the free dimension; ``M`` and ``F`` are affine in it and
never jump. An integer ``d`` (``d >= 2``) is a *step* when latency is discontinuous there: ``C``
rises between ``d - 1`` and ``d`` *and* binds at ``d`` (``C(d) > M(d)``). Equivalently, ``latency(d)``
exceeds the value at ``d`` of the piece that holds at ``d - 1``, ``F(d) + max(C(d-1), M(d))``.
Where the memory term binds, a tile boundary does not show and is not a step.

- free ``m`` or ``n``: ``C`` rises only where ``tiles`` crosses a wave boundary (``w * wave_size``)
  or a busiest-SM boundary of the last wave (``w * wave_size + j * sm_count``) whose extra block
  outlasts a lone block (``(j + 1) * min(speedup, bps) > bps``); ``tiles`` itself changes only at
  ``d = q * tile * cluster + 1``. ``step_positions`` enumerates those boundaries and maps them to
  ``d`` without evaluating every ``d``.
- free ``k``: the wave count does not depend on ``k`` (no wave steps). The model still quantises
  ``k`` into ``tile_k`` main-loop iterations per split, so ``C`` rises at every ``d = q * split_k *
  tile_k + 1`` and those are ``k``'s steps (K-tile quantization); between them latency is
  continuous (``max`` of a constant and an affine term).
"""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction

import numpy as np
import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from . import calibration
from .configs import KernelConfig
from .gpus import GPUSpec
from .gpus import gpu as lookup_gpu
from .latency import candidate_configs, config_latency, select
from .shapes import Conv2d, Gemm, as_shape
from .waves import wave_size

FREE_DIMS = ("m", "n", "k")


def _gemm(shape) -> Gemm:
    shape = as_shape(shape)
    g = shape.gemm() if isinstance(shape, Conv2d) else shape
    if not g.is_scalar:
        raise ValueError("shape: the fixed dimensions must be scalars, not arrays")
    return g


def _check_free(free: str) -> str:
    if free not in FREE_DIMS:
        raise ValueError(f"free: {free!r} is not a GEMM dimension; allowed values: {', '.join(FREE_DIMS)}")
    return free


def resolve(cfg: KernelConfig, gpu: GPUSpec | str, launch_overhead_s: float | None = None):
    """``cfg`` with its calibration profile applied and the launch overhead, as ``predict_latency`` uses."""
    gpu = lookup_gpu(gpu)
    if not isinstance(cfg, KernelConfig):
        raise ValueError(f"cfg: expected a wm.KernelConfig, got {type(cfg).__name__}")
    profile = calibration.profile_for(gpu, cfg.name)
    cfg = profile.apply(cfg)
    cfg.occupancy(gpu)   # ValueError if it cannot fit on an SM
    launch = profile.launch_overhead_s if launch_overhead_s is None else float(launch_overhead_s)
    return cfg, gpu, launch


def _affine(g: Gemm, cfg: KernelConfig, gpu: GPUSpec, free: str, launch_s: float, d: sp.Symbol) -> dict:
    """The memory term and the fixed costs (launch, split-K reduce) as ``a + b * d``.

    Both are affine in every GEMM dimension, so ``config_latency`` at two points gives the line; a
    third point checks it, so a change to the model that breaks affinity fails loudly here.
    """
    x = np.array([1, 4099, 1 << 20], dtype=np.int64)
    t = config_latency(with_dim(g, free, x), cfg, gpu, launch_s)
    lat, comp, mem = (np.broadcast_to(t[key], x.shape) for key in ("latency_s", "compute_s", "memory_s"))
    out = {}
    for key, y in (("memory_s", mem), ("fixed_s", lat - np.maximum(comp, mem))):
        slope = (y[2] - y[0]) / float(x[2] - x[0])
        if not np.isclose(y[0] + slope * float(x[1] - x[0]), y[1], rtol=1e-9, atol=1e-18):
            raise ValueError(f"free: the model's {key} is not affine in {free}; symbolic.py needs updating")
        out[key] = sp.Float(y[0] - slope * float(x[0])) + sp.Float(slope) * d
    return out


def _terms(g: Gemm, cfg: KernelConfig, gpu: GPUSpec, free: str, launch_s: float) -> dict:
    """Sympy expressions of every model term, with the free dimension a positive integer symbol."""
    d = sp.Symbol(free, integer=True, positive=True)
    dims = {"m": sp.Integer(g.m), "n": sp.Integer(g.n), "k": sp.Integer(g.k)} | {free: d}
    m, n, k = dims["m"], dims["n"], dims["k"]
    batch, bps, size = sp.Integer(g.batch), cfg.occupancy(gpu).blocks_per_sm, wave_size(cfg, gpu)

    tiles_m = cfg.cluster_m * sp.ceiling(m / (cfg.tile_m * cfg.cluster_m))
    tiles_n = cfg.cluster_n * sp.ceiling(n / (cfg.tile_n * cfg.cluster_n))
    tiles = batch * tiles_m * tiles_n * cfg.split_k
    waves = sp.ceiling(tiles / size)
    tail_bps = sp.ceiling((tiles - (waves - 1) * size) / gpu.sm_count)
    sm_rate = gpu.peak_flops(g.dtype, cfg.math) / gpu.sm_count
    t_iter = sp.Float(2.0 * cfg.tile_m * cfg.tile_n * cfg.tile_k / (sm_rate * cfg.efficiency))
    t_tile = t_iter * sp.ceiling(k / (cfg.split_k * cfg.tile_k))
    lone = sp.Float(bps / min(cfg.single_block_speedup, bps))
    slots = (waves - 1) * bps + sp.Max(tail_bps, lone)       # t_tile units on the busiest SM
    compute = t_tile * slots + waves * sp.Float(cfg.tile_overhead_s)
    affine = _affine(g, cfg, gpu, free, launch_s, d)
    memory, fixed = affine["memory_s"], affine["fixed_s"]
    latency = fixed + sp.Piecewise((compute, compute >= memory), (memory, True))
    return dict(symbol=d, tiles=tiles, waves=waves, tail_blocks_per_sm=tail_bps, compute_s=compute,
                memory_s=memory, fixed_s=fixed, latency_s=latency)


def latency_terms(shape, cfg: KernelConfig, gpu: GPUSpec | str, free: str = "n",
                  launch_overhead_s: float | None = None) -> dict:
    """Every term of the closed form (``symbol``, ``tiles``, ``waves``, ``compute_s``, ``memory_s``, ...).

    ``shape`` is a ``Gemm``, ``Conv2d`` (its implicit GEMM) or ``(m, n, k)`` tuple; the value it gives
    the free dimension is ignored. ``launch_overhead_s=None`` takes the calibration profile's, so the
    expression equals ``predict_latency(shape, gpu, backend=cfg)``.
    """
    g = _gemm(shape)
    cfg, gpu, launch = resolve(cfg, gpu, launch_overhead_s)
    return _terms(g, cfg, gpu, _check_free(free), launch)


def latency_expr(shape, cfg: KernelConfig, gpu: GPUSpec | str, free: str = "n",
                 launch_overhead_s: float | None = None) -> tuple[sp.Symbol, sp.Expr]:
    """``(symbol, latency_s expression)`` of ``cfg`` on ``gpu`` with ``free`` the free dimension."""
    t = latency_terms(shape, cfg, gpu, free, launch_overhead_s)
    return t["symbol"], t["latency_s"]


class _IntegerCeilingPrinter(NumPyPrinter):
    """Prints ``ceiling(p / q)`` as integer ``-(-p // q)``: ``numpy.ceil((8/33) * x)`` misrounds."""

    def _print_ceiling(self, expr):
        num, den = sp.fraction(sp.together(expr.args[0]))
        return f"(-((-({self._print(num)})) // ({self._print(den)})))"


def lambdify(symbol: sp.Symbol, expr: sp.Expr):
    """``expr`` as a numpy function of integer ``symbol`` values, with exact integer ceilings."""
    printer = _IntegerCeilingPrinter({"fully_qualified_modules": False, "inline": True,
                                      "allow_unknown_functions": True})
    fn = sp.lambdify(symbol, expr, "numpy", printer=printer)
    return lambda x: np.broadcast_to(fn(np.asarray(x, dtype=np.int64)), np.shape(x)).astype(np.float64)


def latency_function(shape, cfg: KernelConfig, gpu: GPUSpec | str, free: str = "n",
                     launch_overhead_s: float | None = None):
    """The closed form as a numpy function of the free dimension (scalar or integer array)."""
    return lambdify(*latency_expr(shape, cfg, gpu, free, launch_overhead_s))


def _check_range(lo, hi) -> tuple[int, int]:
    for name, v in (("lo", lo), ("hi", hi)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"{name}: must be an integer >= 1, got {v!r}")
    if hi < lo:
        raise ValueError(f"hi: must be >= lo ({lo}), got {hi}")
    return int(lo), int(hi)


def _rising_offsets(cfg: KernelConfig, gpu: GPUSpec) -> list[int]:
    """Offsets ``o`` inside a wave where tile ``w * wave_size + o + 1`` raises the compute term."""
    bps, size = cfg.occupancy(gpu).blocks_per_sm, wave_size(cfg, gpu)
    speedup = min(Fraction(cfg.single_block_speedup), bps)
    tail = [j * gpu.sm_count for j in range(1, -(-size // gpu.sm_count)) if (j + 1) * speedup > bps]
    return [0, *tail]


def _candidates(g: Gemm, cfg: KernelConfig, gpu: GPUSpec, free: str, lo: int, hi: int) -> np.ndarray:
    """Every ``d`` in ``[lo, hi]`` (``d >= 2``) where the compute term rises, from tile arithmetic."""
    lo = max(lo, 2)
    if lo > hi:
        return np.zeros(0, dtype=np.int64)
    if free == "k":                       # one more main-loop iteration per split
        period = cfg.split_k * cfg.tile_k
        q = np.arange(-(-(lo - 1) // period), (hi - 1) // period + 1, dtype=np.int64)
        return q * period + 1
    other = "n" if free == "m" else "m"
    tile, cluster = getattr(cfg, f"tile_{free}"), getattr(cfg, f"cluster_{free}")
    o_tile, o_cluster = getattr(cfg, f"tile_{other}"), getattr(cfg, f"cluster_{other}")
    period = tile * cluster                                           # d per step of tiles(d)
    other_tiles = o_cluster * -(-getattr(g, other) // (o_tile * o_cluster))
    per_period = g.batch * other_tiles * cfg.split_k * cluster        # tiles added per period
    size = wave_size(cfg, gpu)
    q_lo, q_hi = -(-(lo - 1) // period), -(-hi // period)            # tiles(d) = per_period * q(d)
    if per_period >= size:                # every period crosses at least one wave boundary
        q = np.arange(q_lo + 1, q_hi + 1, dtype=np.int64)
        return (q - 1) * period + 1
    t_lo, t_hi = per_period * q_lo, per_period * q_hi                 # rising tile T in (t_lo, t_hi]
    w = np.arange(t_lo // size, (t_hi - 1) // size + 1, dtype=np.int64)
    rising = (w[:, None] * size + np.asarray(_rising_offsets(cfg, gpu))[None, :] + 1).ravel()
    rising = rising[(rising > max(t_lo, 1)) & (rising <= t_hi)]
    q = np.unique(-(-rising // per_period))                           # first period reaching T
    return (q - 1) * period + 1


def _step_positions(g, cfg, gpu, free, lo, hi, launch_s) -> list[int]:
    cands = _candidates(g, cfg, gpu, free, lo, hi)
    if cands.size == 0:
        return []
    t = _terms(g, cfg, gpu, free, launch_s)
    binds = lambdify(t["symbol"], t["compute_s"])(cands) > lambdify(t["symbol"], t["memory_s"])(cands)
    return [int(x) for x in cands[binds]]


def step_positions(shape, cfg: KernelConfig, gpu: GPUSpec | str, free: str, lo: int, hi: int,
                   launch_overhead_s: float | None = None) -> list[int]:
    """Sorted integers ``d`` in ``[lo, hi]`` where ``cfg``'s latency steps (see the module docstring).

    Computed from the tile and wave arithmetic, not by evaluating every ``d``; the closed form is
    evaluated only at the candidate positions, to drop those where the memory term binds.
    """
    g, free, (lo, hi) = _gemm(shape), _check_free(free), _check_range(lo, hi)
    cfg, gpu, launch = resolve(cfg, gpu, launch_overhead_s)
    return _step_positions(g, cfg, gpu, free, lo, hi, launch)


def with_dim(g: Gemm, free: str, values) -> Gemm:
    """``g`` with dimension ``free`` replaced by ``values`` (a scalar or an array)."""
    return replace(g, **{_check_free(free): values})


def staircase_steps(shape, gpu: GPUSpec | str, free: str, lo: int, hi: int, backend=None) -> list[int]:
    """Steps of ``predict_latency(shape, gpu, backend)`` in ``free`` over ``[lo, hi]``, any backend.

    For a library backend the latency at ``d`` is that of the configuration its selection rule picks.
    ``d`` is a step when that latency exceeds what the same rule picks at ``d`` among the pieces
    held from ``d - 1`` (every configuration with its compute term at its ``d - 1`` value and its
    affine terms at ``d``). For one configuration this is ``step_positions``. If no configuration's
    compute term rises at ``d`` the two agree, so only the union of the configurations' own steps is
    evaluated. The rule is applied as if ``d`` met every configuration's alignment: these are the
    steps of the staircase that aligned shapes (multiples of 8, say) follow; an unaligned ``d`` runs
    a fallback kernel off that staircase, and a switch forced by alignment is never a step.
    """
    gpu, g, free, (lo, hi) = lookup_gpu(gpu), _gemm(shape), _check_free(free), _check_range(lo, hi)
    if isinstance(backend, KernelConfig):
        return step_positions(g, backend, gpu, free, lo, hi)
    backend = backend or "cublas"
    configs = candidate_configs(backend, gpu, g.dtype)     # ValueError for an unknown backend
    profile = calibration.profile_for(gpu, backend)
    configs = tuple(profile.apply(c) for c in configs)
    launch = profile.launch_overhead_s
    cands = sorted(set().union(*(_step_positions(g, c, gpu, free, lo, hi, launch) for c in configs)))
    if len(configs) == 1 or not cands:
        return cands
    d = np.asarray(cands, dtype=np.int64)
    align = math.lcm(*(c.alignment_elements for c in configs))
    g_sel = with_dim(g, free, -(-d // align) * align)      # d, rounded up to meet every alignment
    now, held = [], []
    for c in configs:
        t = config_latency(with_dim(g, free, d), c, gpu, launch)
        prev = config_latency(with_dim(g, free, d - 1), c, gpu, launch)
        lat, comp, mem, comp_prev = (np.broadcast_to(x, d.shape) for x in (
            t["latency_s"], t["compute_s"], t["memory_s"], prev["compute_s"]))
        now.append(dict(latency_s=lat))
        held.append(dict(latency_s=lat - np.maximum(comp, mem) + np.maximum(comp_prev, mem)))
    pick = np.arange(d.size)
    lat_now = np.stack([t["latency_s"] for t in now])[select(g_sel, configs, now), pick]
    lat_held = np.stack([t["latency_s"] for t in held])[select(g_sel, configs, held), pick]
    return [int(x) for x in d[lat_now > lat_held * (1 + 1e-12)]]
