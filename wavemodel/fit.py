"""Fit a calibration profile's physical parameters to measured latencies (least squares, numpy only).

The free parameters are GPU-level (the cost of an extra kernel, L2 and per-SM bandwidth) and, per
configuration *family*, the efficiency of the main loop, the per-wave and per-kernel fixed costs and
the DRAM bandwidth efficiency. The residual is the relative error ``predicted / measured - 1`` of
``predict_latency`` itself (a library's selection rule included), minimised with a robust (soft-L1)
Levenberg-Marquardt in log-parameter space with finite-difference Jacobians.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .calibration import Profile
from .gpus import GPUSpec
from .latency import predict_latency
from .shapes import Conv2d, Gemm

MAX_FD_STEP = 0.2   # widest finite-difference step, in log-parameter units (a factor of 1.22)
GPU_PARAMS = ("launch_overhead_s", "l2_bandwidth_bytes_per_s", "sm_bandwidth_bytes_per_s")
FAMILY_PARAMS = ("efficiency", "tile_overhead_s", "kernel_fixed_s", "bandwidth_efficiency")
BOUNDS = {   # physical ranges: a fit that leaves them is a model error, not a result
    "launch_overhead_s": (1e-7, 2e-5), "l2_bandwidth_bytes_per_s": (1e11, 1e14),
    "sm_bandwidth_bytes_per_s": (1e9, 1e12), "efficiency": (0.02, 1.0), "tile_overhead_s": (1e-9, 2e-5),
    "kernel_fixed_s": (1e-7, 2e-5), "bandwidth_efficiency": (0.2, 1.0),
    "single_block_speedup": (1.0, 8.0), "tail_block_speedup": (1.0, 8.0), "store_bytes_per_s": (1e9, 1e13),
    "k_iter_latency_s": (1e-10, 2e-6), "cta_dispatch_s": (1e-12, 1e-7), "straggler_s": (1e-10, 2e-6),
    "write_bandwidth_efficiency": (0.1, 1.0), "unhidden_fraction": (1e-3, 1.0),
    "channel_traffic_factor": (1.0, 3.0), "channel_dram_factor": (1.0, 3.0),
    "line_aligned_rows_factor": (1.0, 2.0),
    "off_sector_write_factor": (1.0, 3.0), "partial_line_write_factor": (1.0, 3.0),
    "scalar_store_factor": (1.0, 8.0),
    "scalar_load_bytes_per_s": (1e9, 1e13), "scalar_write_bytes_per_s": (1e10, 1e14),
}


@dataclass(frozen=True)
class Group:
    """Measured calls of one dtype and one shape kind: a vectorised shape and latencies in seconds."""

    shape: Gemm | Conv2d
    measured_s: np.ndarray
    backend: object = None             # this group's backend (default: fit_profile's)


@dataclass(frozen=True)
class FitResult:
    profile: Profile
    relative_errors: np.ndarray        # predicted / measured - 1, all groups concatenated
    iterations: int
    parameters: dict = field(hash=False)
    cost: float = float("nan")         # the soft-L1 loss the fit minimised, at its result

    @property
    def median_abs_error(self) -> float:
        return float(np.median(np.abs(self.relative_errors)))


def _unpack(x: np.ndarray, names: Sequence[tuple[str, str]], start: Profile) -> Profile:
    values = dict(zip(names, np.exp(x), strict=True))
    gpu_level = {p: values[("", p)] for p in GPU_PARAMS if ("", p) in values}
    families = {fam: dict(v) for fam, v in start.families.items()}
    for (fam, p), v in values.items():
        if fam:
            families.setdefault(fam, {})[p] = float(v)
    current = {p: getattr(start, p) for p in GPU_PARAMS}
    return Profile(**{**current, **gpu_level}, families=families, configs=start.configs, calibrated=True)


def relative_errors(groups: Sequence[Group], gpu: GPUSpec, backend, profile: Profile) -> np.ndarray:
    return np.concatenate([
        np.ravel(predict_latency(gr.shape, gpu, gr.backend or backend, profile=profile).latency_s)
        / gr.measured_s - 1.0
        for gr in groups
    ])


def fit_profile(groups: Sequence[Group], gpu: GPUSpec, backend, *, families: Sequence[str],
                start: Profile | None = None, initial: dict | None = None, free_gpu=GPU_PARAMS,
                free_family=FAMILY_PARAMS, iterations: int = 40, soft_scale: float = 0.05,
                priors: dict | None = None) -> FitResult:
    """Fit GPU-level and per-family parameters so ``predict_latency`` matches ``groups``.

    ``initial`` maps a parameter name (or ``"family.param"``) to its starting value; otherwise
    physical defaults are used. ``free_family`` names the per-family parameters to fit: one tuple for
    every family, or a dict from family to its own tuple. ``priors`` maps a per-family parameter
    name to ``(value, weight)``: each family's free parameter of that name adds the pseudo-residual
    ``weight * ln(parameter / value)`` to the loss (a measured value the data may overrule: a parameter
    the rows leave free settles at it, one they pin barely moves). The result's relative errors are
    the rows' only.
    """
    bw = gpu.dram_bandwidth_bytes_per_s
    start = start or Profile(launch_overhead_s=1.5e-6, l2_bandwidth_bytes_per_s=3 * bw,
                             sm_bandwidth_bytes_per_s=2.5 * bw / gpu.sm_count)
    initial = initial or {}
    defaults = {"efficiency": 0.7, "tile_overhead_s": 0.5e-6, "kernel_fixed_s": 2.5e-6,
                "bandwidth_efficiency": 0.85, "single_block_speedup": 1.5, "tail_block_speedup": 1.2,
                "store_bytes_per_s": 50e9,
                "k_iter_latency_s": 5e-8, "cta_dispatch_s": 2e-9, "straggler_s": 1e-7,
                "write_bandwidth_efficiency": 0.6,
                "unhidden_fraction": 0.1, "scalar_store_factor": 1.5, "channel_traffic_factor": 1.5,
                "channel_dram_factor": 1.1,
                "line_aligned_rows_factor": 1.05, "off_sector_write_factor": 1.0,
                "partial_line_write_factor": 1.05,
                "scalar_load_bytes_per_s": 200e9, "scalar_write_bytes_per_s": 2e12,
                "l2_bandwidth_bytes_per_s": start.l2_bandwidth_bytes_per_s,     # a family's own
                "sm_bandwidth_bytes_per_s": start.sm_bandwidth_bytes_per_s}
    names, x0 = [], []
    for p in free_gpu:
        names.append(("", p))
        x0.append(initial.get(p, getattr(start, p)))
    for fam in families:
        for p in (free_family.get(fam, ()) if isinstance(free_family, dict) else free_family):
            names.append((fam, p))
            x0.append(initial.get(f"{fam}.{p}", start.families.get(fam, {}).get(p, defaults[p])))
    lo = np.log([BOUNDS[p][0] for _, p in names])
    hi = np.log([BOUNDS[p][1] for _, p in names])
    x = np.clip(np.log(np.asarray(x0, dtype=float)), lo, hi)

    # a prior pulls a free per-family parameter toward a measured value: one pseudo-residual
    # weight * ln(value / prior) each, which moves a parameter the data leave free and barely one they pin
    pulls = [(j, float(np.log(priors[p][0])), float(priors[p][1])) for j, (fam, p) in enumerate(names)
             if fam and priors and p in priors]

    def residuals(xv):
        r = relative_errors(groups, gpu, backend, _unpack(xv, names, start))
        if pulls:
            r = np.concatenate([r, [w * (xv[j] - lv) for j, lv, w in pulls]])
        return r

    def cost(r):
        return float(np.sum(soft_scale**2 * 2 * (np.sqrt(1 + (r / soft_scale) ** 2) - 1)))

    r = residuals(x)
    c = cost(r)
    lam, done, h, stalls = 1e-2, 0, 3e-3, 0
    for it in range(1, iterations + 1):
        done = it
        jac = np.empty((r.size, x.size))
        for j in range(x.size):
            xj = x.copy()
            # forward difference, backward at the upper bound; never outside the bounds
            xj[j] = xj[j] + h if xj[j] + h <= hi[j] else max(xj[j] - h, lo[j])
            jac[:, j] = (residuals(xj) - r) / (xj[j] - x[j])
        w = 1.0 / np.sqrt(1 + (r / soft_scale) ** 2)          # IRLS weights of the soft-L1 loss
        g = jac.T @ (w * r)
        # projected step: a parameter on a bound that the gradient pushes outward stays there
        free = ~(((x <= lo + 1e-12) & (g > 0)) | ((x >= hi - 1e-12) & (g < 0)))
        jf = jac[:, free]
        a = jf.T @ (w[:, None] * jf)
        improved = False
        for _ in range(10):
            step = np.zeros_like(x)
            step[free] = np.linalg.solve(a + lam * np.diag(np.diag(a) + 1e-12), -g[free])
            x_new = np.clip(x + step, lo, hi)
            r_new = residuals(x_new)
            c_new = cost(r_new)
            if np.isfinite(c_new) and c_new < c:
                x, r, lam, improved = x_new, r_new, max(lam / 3, 1e-7), True
                converged = c - c_new < 1e-6 * c
                c = c_new
                break
            lam *= 4
        if improved and not converged:
            stalls = 0
            continue
        # the model is piecewise (ceilings, a library's choice): a stalled step may be a finite
        # difference straddling a step; retry with a wider one before giving up
        stalls += 1
        if stalls > 2:
            break
        h, lam = min(h * 4, MAX_FD_STEP), 1e-2
    profile = _unpack(x, names, start)
    params = {f"{fam}.{p}" if fam else p: float(v) for (fam, p), v in zip(names, np.exp(x), strict=True)}
    return FitResult(profile, r[:r.size - len(pulls)], done, params, c)


@dataclass(frozen=True)
class Stage:
    """One step of a staged calibration: these groups fit these families (and these GPU parameters)."""

    name: str
    groups: tuple
    families: tuple
    free_gpu: tuple = ()


def fit_stages(stages: Sequence[Stage], gpu: GPUSpec, backend, *, start: Profile | None = None,
               iterations: int = 60, log=None) -> tuple[Profile, list[FitResult]]:
    """Fit ``stages`` in order, each from the profile the previous one left.

    A library's dtypes run disjoint kernel families, so fitting them one class at a time (the GPU-level
    parameters with the first, best-measured class) gives the joint fit's answer at a fraction of the
    Jacobian's cost.
    """
    results = []
    profile = start
    for st in stages:
        if not st.groups:
            continue
        res = fit_profile(list(st.groups), gpu, backend, families=st.families, start=profile,
                          free_gpu=st.free_gpu, iterations=iterations)
        profile = res.profile
        results.append(res)
        if log:
            calls = sum(g.measured_s.size for g in st.groups)
            log(f"  {st.name}: {calls} calls, {res.iterations} iterations, "
                f"median error {res.median_abs_error:.1%}")
    return profile, results
