"""Problem shapes: a (batched) GEMM and a 2-D convolution, validated on construction.

Dimensions may be Python ints or integer numpy arrays; arrays broadcast against each other so one
shape object can describe a million problems. A convolution is described by its implicit GEMM
(``Conv2d.gemm()``): M = N*P*Q, N = K, K = C*R*S.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# bytes per element of the operands (A, B) and of the output (C) for each input dtype
DTYPE_IN_BYTES = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}
DTYPE_OUT_BYTES = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "fp8": 2, "int8": 4}
DTYPES = tuple(DTYPE_IN_BYTES)


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPE_IN_BYTES:
        raise ValueError(f"dtype: {dtype!r} is not supported; allowed values: {', '.join(DTYPES)}")
    return dtype


def check_dim(name: str, value, minimum: int = 1):
    """Return ``value`` as an int (scalar) or an int64 array, or raise ValueError naming ``name``."""
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf" or arr.size == 0:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.floor(arr)):
            raise ValueError(f"{name}: must be an integer >= {minimum}, got non-integer {value!r}")
        arr = arr.astype(np.int64)
    if np.any(arr < minimum):
        bad = arr[arr < minimum].ravel()[0] if arr.ndim else arr
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {int(bad)}")
    if arr.ndim == 0:
        return int(arr)
    return arr.astype(np.int64, copy=False)


@dataclass(frozen=True, eq=False)
class Gemm:
    """``C[batch, m, n] = A[batch, m, k] @ B[batch, k, n]`` (row-major A and B, as ``torch.matmul``)."""

    m: int | np.ndarray
    n: int | np.ndarray
    k: int | np.ndarray
    batch: int | np.ndarray = 1
    dtype: str = "fp16"

    def __post_init__(self):
        for name in ("m", "n", "k", "batch"):
            object.__setattr__(self, name, check_dim(name, getattr(self, name)))
        check_dtype(self.dtype)

    @property
    def flops(self):
        return 2.0 * np.asarray(self.batch, dtype=np.float64) * self.m * self.n * self.k

    @property
    def is_scalar(self) -> bool:
        return all(np.ndim(getattr(self, f)) == 0 for f in ("m", "n", "k", "batch"))

    def aligned(self, elements: int = 8):
        """True where the leading dimensions (K of row-major A, N of B and C) are multiples of ``elements``.

        That is what vectorised (16-byte) loads and stores need; M is not a leading dimension. On an
        H100, cuBLAS runs its nvjet kernels exactly when N and K are multiples of 8 (fp16), whatever M
        (validation/data/h100-sxm/discovery_gemm.csv).
        """
        return (np.asarray(self.n) % elements == 0) & (np.asarray(self.k) % elements == 0)

    def __repr__(self) -> str:
        return f"Gemm(m={self.m}, n={self.n}, k={self.k}, batch={self.batch}, dtype={self.dtype!r})"

    def __eq__(self, other):
        if not isinstance(other, Gemm):
            return NotImplemented
        return self.dtype == other.dtype and all(
            np.array_equal(getattr(self, f), getattr(other, f)) for f in ("m", "n", "k", "batch")
        )

    __hash__ = None


@dataclass(frozen=True, eq=False)
class Conv2d:
    """A 2-D convolution, NHWC activations and KRSC filters: input (n, h, w, c) -> output (n, p, q, k)."""

    n: int | np.ndarray
    c: int | np.ndarray
    h: int | np.ndarray
    w: int | np.ndarray
    k: int | np.ndarray
    r: int | np.ndarray = 3
    s: int | np.ndarray = 3
    stride: int | np.ndarray = 1
    padding: int | np.ndarray = 0
    dilation: int | np.ndarray = 1
    dtype: str = "fp16"
    groups: int = field(default=1)

    def __post_init__(self):
        for name in ("n", "c", "h", "w", "k", "r", "s", "stride", "dilation"):
            object.__setattr__(self, name, check_dim(name, getattr(self, name)))
        object.__setattr__(self, "padding", check_dim("padding", self.padding, minimum=0))
        object.__setattr__(self, "groups", check_dim("groups", self.groups))
        check_dtype(self.dtype)
        if np.any(np.asarray(self.p) < 1) or np.any(np.asarray(self.q) < 1):
            raise ValueError(
                "r, s: the dilated filter is larger than the padded input "
                f"(h={self.h}, w={self.w}, padding={self.padding}); output would be empty"
            )
        if np.any(np.asarray(self.c) % self.groups) or np.any(np.asarray(self.k) % self.groups):
            raise ValueError(f"groups: c and k must be multiples of groups={self.groups}")

    @property
    def p(self):
        return (self.h + 2 * self.padding - self.dilation * (self.r - 1) - 1) // self.stride + 1

    @property
    def q(self):
        return (self.w + 2 * self.padding - self.dilation * (self.s - 1) - 1) // self.stride + 1

    @property
    def flops(self):
        return self.gemm().flops

    @property
    def is_scalar(self) -> bool:
        return all(np.ndim(getattr(self, f)) == 0 for f in ("n", "c", "h", "w", "k", "r", "s"))

    def gemm(self) -> Gemm:
        """The implicit GEMM: M = N*P*Q output pixels, N = K output channels, K = C*R*S reduction.

        A grouped convolution is ``groups`` independent GEMMs, expressed as the batch.
        """
        g = self.groups
        return Gemm(
            m=self.n * self.p * self.q, n=self.k // g, k=(self.c // g) * self.r * self.s, batch=g,
            dtype=self.dtype,
        )

    def __repr__(self) -> str:
        return (
            f"Conv2d(n={self.n}, c={self.c}, h={self.h}, w={self.w}, k={self.k}, r={self.r}, s={self.s}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, dtype={self.dtype!r})"
        )

    __hash__ = None


def as_shape(shape) -> Gemm | Conv2d:
    """Accept a Gemm, a Conv2d or an (m, n, k) tuple (an fp16 Gemm)."""
    if isinstance(shape, Gemm | Conv2d):
        return shape
    if isinstance(shape, tuple | list) and len(shape) == 3:
        return Gemm(*shape)
    raise ValueError(
        f"shape: expected wm.Gemm, wm.Conv2d or an (m, n, k) tuple, got {type(shape).__name__} {shape!r}"
    )
