"""Correctness of our kernels against cuBLAS, on fresh random inputs with a poisoned output.

Each check draws new uniform(-1, 1) inputs (never zeros: they hide unwritten outputs and wrong
indexing), fills the output with NaN before the launch (an element the kernel never writes stays NaN
and fails the check), runs the kernel once and compares with a float64 reference computed by cuBLAS
(``cupy.matmul`` on inputs upcast to float64; for a convolution, the same after an im2col in CuPy).

Two error measures, both against the same per-dtype bound:
- ``rel_error = ||out - ref||_2 / ||ref||_2`` over the whole output;
- ``max_error_ratio = max|out - ref| / max|ref|``, which catches a few wrong elements that the norm
  of a large output would dilute.

Bounds (``REL_ERROR_BOUND``):
- fp32 (SIMT, fp32 accumulation in K order): 1e-5. A numpy simulation of in-order fp32 accumulation
  on these inputs gives rel_error 1.2e-6 / max_error_ratio 2.6e-6 at K = 4096 and 2.3e-6 / 4.0e-6
  at K = 16384 (error grows like sqrt(K)).
- fp16 inputs, fp32 accumulation, fp16 output: 2e-3. Rounding the exact result to fp16 alone gives
  rel_error 2.1e-4 and max_error_ratio 3-4e-4 (2**-11 = 4.9e-4 at most); accumulation adds ~1e-6.
  A bug is far above: one missing K chunk of 8 at K = 4096 gives ~4e-2, one wrong element ~0.2.
NaN or inf anywhere never passes. A failing check raises AssertionError with the details.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass

from .kernels import conv_output_hw, get

REL_ERROR_BOUND = {"fp32": 1e-5, "fp16": 2e-3}


@dataclass(frozen=True)
class CheckResult:
    kernel: str
    shape: tuple             # (batch, m, n, k) for GEMMs; (n, c, h, w, k, r, s, stride, padding) for convs
    seed: int
    rel_error: float
    max_error_ratio: float
    bound: float
    nonfinite: int           # NaN/inf elements in the output (unwritten elements stay NaN)
    passed: bool

    def __str__(self) -> str:
        status = "ok" if self.passed else "FAIL"
        return (f"{status:4s} {self.kernel:18s} shape={self.shape} rel_err={self.rel_error:.2e} "
                f"max_err_ratio={self.max_error_ratio:.2e} bound={self.bound:.0e} "
                f"nonfinite={self.nonfinite} seed={self.seed}")

    def as_dict(self) -> dict:
        return asdict(self)


def _rng(seed):
    import cupy

    seed = secrets.randbits(32) if seed is None else int(seed)
    return seed, cupy.random.RandomState(seed)


def _uniform(rng, shape, dtype):
    import cupy

    return rng.uniform(-1.0, 1.0, size=shape, dtype=cupy.float32).astype(dtype)


def compare(kernel_name: str, dtype: str, shape: tuple, seed: int, out, ref) -> CheckResult:
    """Measure ``out`` (any float dtype) against the float64 ``ref``; raise AssertionError if it fails."""
    import cupy

    out64 = out.astype(cupy.float64)
    finite = cupy.isfinite(out64)
    nonfinite = int(out64.size - int(finite.sum()))
    diff = cupy.where(finite, out64 - ref, 0.0)
    ref_norm = float(cupy.linalg.norm(ref.ravel()))
    ref_max = float(cupy.abs(ref).max())
    rel = float(cupy.linalg.norm(diff.ravel())) / ref_norm if ref_norm > 0 else float("inf")
    ratio = float(cupy.abs(diff).max()) / ref_max if ref_max > 0 else float("inf")
    bound = REL_ERROR_BOUND[dtype]
    passed = nonfinite == 0 and rel <= bound and ratio <= bound
    result = CheckResult(kernel_name, tuple(int(v) for v in shape), seed, rel, ratio, bound, nonfinite,
                         passed)
    if not passed:
        detail = ""
        if nonfinite:
            bad = cupy.argwhere(~finite)[:5].get().tolist()
            detail = f"; first non-finite elements at {bad}"
        raise AssertionError(f"{result}{detail}")
    return result


def check_gemm(name: str, m: int, n: int, k: int, batch: int = 1, seed: int | None = None,
               broadcast_b: bool = False) -> CheckResult:
    """Run GEMM kernel ``name`` on random (batch, m, k) @ (batch, k, n) inputs and check it.

    ``broadcast_b`` passes a 2-D B shared by every batch (stride 0).
    """
    import cupy

    kernel = get(name)
    if kernel.kind != "gemm":
        raise ValueError(f"kernel: {name!r} is a {kernel.kind} kernel; use check_conv")
    seed, rng = _rng(seed)
    lead = (batch,) if batch > 1 else ()
    a = _uniform(rng, lead + (m, k), kernel.np_dtype)
    b = _uniform(rng, (k, n) if broadcast_b else lead + (k, n), kernel.np_dtype)
    c = cupy.full(lead + (m, n), cupy.nan, dtype=kernel.np_dtype)
    kernel.launch(a, b, c)
    cupy.cuda.get_current_stream().synchronize()
    ref = cupy.matmul(a.astype(cupy.float64), b.astype(cupy.float64))
    return compare(name, kernel.dtype, (batch, m, n, k), seed, c, ref)


def reference_conv(x, w, stride: int, padding: int):
    """float64 NPQK convolution of NHWC ``x`` with KRSC ``w`` via im2col and cuBLAS (cross-correlation)."""
    import cupy

    n, h, w_, c = x.shape
    k, r, s, _ = w.shape
    p, q = conv_output_hw(h, w_, r, s, stride, padding)
    xp = cupy.pad(x.astype(cupy.float64), ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    cols = [xp[:, i:i + stride * (p - 1) + 1:stride, j:j + stride * (q - 1) + 1:stride, :]
            for i in range(r) for j in range(s)]
    a = cupy.stack(cols, axis=3).reshape(n * p * q, r * s * c)      # columns ordered (r, s, c)
    out = a @ w.astype(cupy.float64).reshape(k, r * s * c).T
    return out.reshape(n, p, q, k)


def check_conv(name: str, n: int, c: int, h: int, w: int, k: int, r: int = 3, s: int = 3,
               stride: int = 1, padding: int = 1, seed: int | None = None) -> CheckResult:
    """Run conv kernel ``name`` on random NHWC input / KRSC filter and check it against im2col."""
    import cupy

    kernel = get(name)
    if kernel.kind != "conv":
        raise ValueError(f"kernel: {name!r} is a {kernel.kind} kernel; use check_gemm")
    seed, rng = _rng(seed)
    x = _uniform(rng, (n, h, w, c), kernel.np_dtype)
    f = _uniform(rng, (k, r, s, c), kernel.np_dtype)
    p, q = conv_output_hw(h, w, r, s, stride, padding)
    y = cupy.full((n, p, q, k), cupy.nan, dtype=kernel.np_dtype)
    kernel.launch_conv(x, f, y, stride, padding)
    cupy.cuda.get_current_stream().synchronize()
    ref = reference_conv(x, f, stride, padding)
    return compare(name, kernel.dtype, (n, c, h, w, k, r, s, stride, padding), seed, y, ref)
