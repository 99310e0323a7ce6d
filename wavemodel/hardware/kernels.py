"""Our own CUDA kernels (``kernels/*.cu``), by the names the datasets and ``predict_latency`` use.

``KERNELS`` is plain data: importing this module needs neither CuPy nor a GPU, so the CPU tests can
check the registry against ``data/configs/own.toml``. Everything that touches the device imports
CuPy inside the function:

- ``KERNELS[name].compiled()`` compiles the kernel with NVRTC (lazily, once per process and device;
  CuPy also caches the binary on disk) and raises its dynamic shared-memory limit;
- ``.config`` is the ``wavemodel.KernelConfig`` built from the compiled function's own attributes
  (registers, static + dynamic shared memory);
- ``.launch(a, b, c, stream=None)`` (GEMM) and ``.launch_conv(x, w, y, stride, padding)`` (conv)
  validate the arguments on the host and enqueue one kernel on ``stream`` (default: CuPy's current
  stream). They never allocate or synchronise, so they can be captured in a CUDA graph;
- ``.grid(m, n, batch)`` is the launch grid: one block per output tile, row-major raster
  (x = tile column, y = tile row, z = batch).

Sources are read from the installed package (``wavemodel/_kernels``, force-included in the wheel) or,
in a checkout, from the repository's ``kernels/`` folder. A local ``#include "x.cuh"`` is inlined
here, so NVRTC needs no include path.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..configs import KernelConfig

SOURCES = {  # family -> source file; the extern "C" entry point is the family name
    "simt_f32_gemm": "simt_f32_gemm.cu",
    "tc_f16_gemm": "tc_f16_gemm.cu",
    "tc_f16_conv": "tc_f16_conv.cu",
}
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.MULTILINE)
_PRAGMA_ONCE = re.compile(r"^\s*#\s*pragma\s+once\s*$", re.MULTILINE)
MAX_GRID_YZ = 65535


@dataclass(frozen=True)
class OwnKernel:
    """One compiled configuration of one of our kernel families (plain data until compiled)."""

    name: str
    family: str                 # key of SOURCES
    tile_m: int
    tile_n: int
    tile_k: int
    threads: int
    stages: int
    defines: tuple              # (("BM", 128), ...) passed as -D options
    math: str                   # "simt" | "tensor"
    dtype: str                  # input dtype: "fp32" | "fp16"
    kind: str = "gemm"          # "gemm" | "conv"
    alignment_elements: int = 1  # N and K (conv: C and K) must be multiples of this

    # ------------------------------------------------------------------ static description
    @property
    def source_file(self) -> str:
        return SOURCES[self.family]

    @property
    def options(self) -> tuple[str, ...]:
        return tuple(f"-D{k}={v}" for k, v in self.defines)

    @property
    def dynamic_smem_bytes(self) -> int:
        """Dynamic shared memory per block: the cp.async stages (the SIMT kernel's is static)."""
        if self.family == "simt_f32_gemm":
            return 0
        return self.stages * (self.tile_m + self.tile_n) * self.tile_k * 2

    @property
    def np_dtype(self) -> str:
        return {"fp32": "float32", "fp16": "float16"}[self.dtype]

    def grid(self, m: int, n: int, batch: int = 1) -> tuple[int, int, int]:
        """Launch grid for an m x n output (conv: m = N*P*Q, n = K): one block per tile."""
        return (-(-n // self.tile_n), -(-m // self.tile_m), batch)

    def tiles(self, m: int, n: int, batch: int = 1) -> int:
        gx, gy, gz = self.grid(m, n, batch)
        return gx * gy * gz

    def catalogue_config(self, regs_per_thread: int, static_smem_bytes: int) -> KernelConfig:
        """The KernelConfig for given compiler-reported registers and static shared memory."""
        return KernelConfig(
            name=self.name, tile_m=self.tile_m, tile_n=self.tile_n, tile_k=self.tile_k,
            threads=self.threads, regs_per_thread=regs_per_thread,
            smem_per_block_bytes=static_smem_bytes + self.dynamic_smem_bytes, stages=self.stages,
            math=self.math, dtypes=(self.dtype,), alignment_elements=self.alignment_elements,
            kind=self.kind, family=self.name, source=f"kernels/{self.source_file} {' '.join(self.options)}",
            # tc_f16_conv zero-fills the taps in the padding (cp.async source size 0): no bytes move
            padding_loads_free=self.kind == "conv",
            # its K loop runs tap by tap: a tap pass of the running CTAs' pixels past the L2 re-reads
            # the input from DRAM
            taps_reread_past_l2=self.kind == "conv",
            # ... and so the rows of an edge tile past M (A) and past K (the filter): no bytes move
            edge_loads_free=self.kind == "conv",
            # its math and memory streams combine smoothly, not as max + a fixed share of the shorter
            smooth_overlap=self.kind == "conv",
            # its DRAM traffic and its panel reads queue at the same L2 slices (latency.streams_s)
            dram_l2_norm=2.0 if self.kind == "conv" else 0.0,
            # its output's writes draw on the L2 bandwidth beside the panel reads
            l2_counts_writes=self.kind == "conv",
            # a 1x1 filter's A panel is the input read row by row, no tap walk: its calls are fitted
            # as a family of their own (configs.for_filter)
            pointwise_family=f"{self.name}_1x1" if self.kind == "conv" else "",
            # a call ends with an interior tile's epilogue (GEMMs and convs); the one-block-per-SM
            # tensor-core GEMMs store C from registers after the main loop with no other block resident to run
            # meanwhile, so C's DRAM writes are not hidden: see own.toml
            last_tile_full=True,
            epilogue_drains_c=self.kind == "gemm" and self.math == "tensor"
            and dict(self.defines)["MIN_BLOCKS"] == 1,
        )

    # ------------------------------------------------------------------ device side
    def compiled(self):
        """The CuPy RawKernel for the current device (compiled on first use)."""
        import cupy

        return _compiled(self.name, cupy.cuda.runtime.getDevice())

    def attributes(self) -> dict:
        """The compiled function's attributes (num_regs, shared_size_bytes, local_size_bytes, ...)."""
        return dict(self.compiled().attributes)

    @property
    def config(self) -> KernelConfig:
        """KernelConfig from the compiled function's real registers and shared memory."""
        attrs = self.attributes()
        return self.catalogue_config(int(attrs["num_regs"]), int(attrs["shared_size_bytes"]))

    def blocks_per_sm(self) -> int:
        """Resident blocks per SM as the CUDA occupancy API reports them for this device."""
        import cupy

        fn = self.compiled()
        return int(cupy.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor(
            fn.kernel.ptr, self.threads, self.dynamic_smem_bytes))

    def launch(self, a, b, c, *, stream=None) -> None:
        """Enqueue C = A @ B (row-major; 2-D, or 3-D batched where a 2-D operand is broadcast)."""
        if self.kind != "gemm":
            raise ValueError(f"kernel: {self.name!r} is a {self.kind} kernel; use launch_conv")
        m, n, k, batch, strides = _gemm_dims(self, a, b, c)
        args = [a, b, c, *_i32(m, n, k), *_i64(*strides)]
        if self.family == "simt_f32_gemm":
            args += _i32(_vec4(a, k), _vec4(b, n), _vec4(c, n))
        self._enqueue(self.grid(m, n, batch), args, stream)

    def launch_conv(self, x, w, y, stride: int = 1, padding: int = 0, *, stream=None) -> None:
        """Enqueue y = conv2d(x, w): x NHWC, w KRSC, y NPQK (fp16), dilation 1."""
        if self.kind != "conv":
            raise ValueError(f"kernel: {self.name!r} is a {self.kind} kernel; use launch")
        n, h, w_, c, k, r, s, p, q = _conv_dims(self, x, w, y, stride, padding)
        args = [x, w, y, *_i32(n, h, w_, c, k, r, s, p, q, stride, padding)]
        self._enqueue(self.grid(n * p * q, k), args, stream)

    def _enqueue(self, grid, args, stream) -> None:
        if grid[1] > MAX_GRID_YZ or grid[2] > MAX_GRID_YZ:
            raise ValueError(f"shape: {grid[1]} row tiles x {grid[2]} batches exceed the grid limit "
                             f"of {MAX_GRID_YZ} for kernel {self.name!r}")
        fn = self.compiled()
        fn(grid, (self.threads, 1, 1), tuple(args), shared_mem=self.dynamic_smem_bytes, stream=stream)


# ---------------------------------------------------------------------------------------- registry


def _simt(bm, bn, bk, min_blocks) -> OwnKernel:
    threads = (bm // 8) * (bn // 8)
    return OwnKernel(
        name=f"simt_f32_{bm}x{bn}", family="simt_f32_gemm", tile_m=bm, tile_n=bn, tile_k=bk,
        threads=threads, stages=2,
        defines=(("BM", bm), ("BN", bn), ("BK", bk), ("TM", 8), ("TN", 8), ("MIN_BLOCKS", min_blocks)),
        math="simt", dtype="fp32",
    )


def _tc(family, prefix, bm, bn, bk, wm, wn, stages, min_blocks) -> OwnKernel:
    bk_define = (("BK", bk),) if family == "tc_f16_gemm" else ()     # the conv's BK is fixed at 32
    return OwnKernel(
        name=f"{prefix}_{bm}x{bn}", family=family, tile_m=bm, tile_n=bn, tile_k=bk,
        threads=wm * wn * 32, stages=stages,
        defines=(("BM", bm), ("BN", bn), *bk_define, ("WM", wm), ("WN", wn), ("STAGES", stages),
                 ("MIN_BLOCKS", min_blocks)),
        math="tensor", dtype="fp16", kind="conv" if family == "tc_f16_conv" else "gemm",
        alignment_elements=8,
    )


# Tile choices: the fastest variant of each tile at 4096^3 on the H100 among those tried
# (validation/selftest_kernels.py --explore): BK=16 for the 128x128 SIMT tile, register caps that
# give 8 / 4 blocks per SM for the smaller SIMT tiles, BK=64 with 3 stages for 128x256.
# Measured there (TFLOP/s; cuBLAS SGEMM 51.4, HGEMM 759): simt 64x64 38.5, 128x64 37.2, 128x128
# 44.0; tc 128x128 404, 128x256 388-441, 256x128 394-421 (the spread is the timing position, see
# the self-test's docstring); conv 3x3 (N=32, 56x56, C=K=128) 282 / 277 for 128x128 / 128x64.
KERNELS: dict[str, OwnKernel] = {k.name: k for k in (
    _simt(64, 64, 8, 8),
    _simt(128, 64, 8, 4),
    _simt(128, 128, 16, 2),
    _tc("tc_f16_gemm", "tc_f16", 128, 128, 32, 2, 2, 4, 2),
    _tc("tc_f16_gemm", "tc_f16", 128, 256, 64, 2, 4, 3, 1),
    _tc("tc_f16_gemm", "tc_f16", 256, 128, 32, 4, 2, 3, 1),
    _tc("tc_f16_conv", "conv_f16", 128, 128, 32, 2, 2, 4, 2),
    _tc("tc_f16_conv", "conv_f16", 128, 64, 32, 2, 2, 4, 3),
)}


def get(name: str) -> OwnKernel:
    try:
        return KERNELS[name]
    except KeyError:
        raise ValueError(f"kernel: unknown kernel {name!r}; allowed values: {', '.join(KERNELS)}") from None


# ---------------------------------------------------------------------------------------- sources


def kernels_dir():
    """The folder holding the .cu sources: the installed package's, else the checkout's."""
    packaged = resources.files("wavemodel").joinpath("_kernels")
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "kernels"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError("kernels: no wavemodel/_kernels in the package and no kernels/ in a checkout")


def source(file: str, _seen: tuple = ()) -> str:
    """The source text of ``file`` with local ``#include "..."`` files inlined (once each)."""
    text = kernels_dir().joinpath(file).read_text()

    def inline(match):
        inc = match.group(1)
        if inc in _seen:
            return ""
        body = _PRAGMA_ONCE.sub("", source(inc, _seen + (file, inc)))
        return f"// ---- begin {inc}\n{body}\n// ---- end {inc}\n"

    return _INCLUDE.sub(inline, text)


def nvrtc_options(kernel: OwnKernel, arch: str = "sm_90") -> tuple[str, ...]:
    return ("-std=c++17", f"--gpu-architecture={arch}", *kernel.options)


@functools.cache
def _compiled(name: str, device_id: int):
    import cupy

    kernel = get(name)
    cc = cupy.cuda.Device(device_id).compute_capability
    code = source(kernel.source_file)
    try:
        fn = cupy.RawKernel(code, kernel.family, options=nvrtc_options(kernel, f"sm_{cc}"), backend="nvrtc")
        fn.compile()
    except cupy.cuda.compiler.CompileException as first:
        # CuPy adds its own -arch; if NVRTC refuses the pair, let CuPy's choice stand alone
        if "architecture" not in str(first) and "arch" not in str(first):
            raise
        fn = cupy.RawKernel(code, kernel.family, options=nvrtc_options(kernel)[:1] + kernel.options,
                            backend="nvrtc")
        fn.compile()
    if kernel.dynamic_smem_bytes > 48 * 1024:
        fn.max_dynamic_shared_size_bytes = kernel.dynamic_smem_bytes
    return fn


# ---------------------------------------------------------------------------------------- argument checks


def _i32(*values):
    import numpy as np

    return [np.int32(v) for v in values]


def _i64(*values):
    import numpy as np

    return [np.int64(v) for v in values]


def _vec4(arr, row_elems: int) -> int:
    """1 when rows of ``arr`` can be read as float4 (row length and base 16-byte aligned)."""
    return int(row_elems % 4 == 0 and arr.data.ptr % 16 == 0)


def _check_array(kernel: OwnKernel, label: str, arr, ndims: tuple[int, ...]) -> None:
    if getattr(arr, "dtype", None) is None or str(arr.dtype) != kernel.np_dtype:
        raise ValueError(f"{label}: kernel {kernel.name!r} needs {kernel.np_dtype} arrays, "
                         f"got {getattr(arr, 'dtype', type(arr).__name__)}")
    if arr.ndim not in ndims:
        raise ValueError(f"{label}: expected {' or '.join(map(str, ndims))} dimensions, "
                         f"got shape {arr.shape}")
    if not arr.flags.c_contiguous:
        raise ValueError(f"{label}: must be C-contiguous (row-major)")
    if arr.size == 0:
        raise ValueError(f"{label}: must not be empty, got shape {arr.shape}")
    if kernel.math == "tensor" and arr.data.ptr % 16:
        raise ValueError(f"{label}: kernel {kernel.name!r} needs 16-byte aligned operands")


def _gemm_dims(kernel: OwnKernel, a, b, c):
    for label, arr in (("a", a), ("b", b), ("c", c)):
        _check_array(kernel, label, arr, (2, 3))
    m, k = a.shape[-2:]
    k2, n = b.shape[-2:]
    if k2 != k or c.shape[-2:] != (m, n):
        raise ValueError(f"shape: a {a.shape} @ b {b.shape} does not give c {c.shape}")
    if c.ndim == 2 and (a.ndim == 3 or b.ndim == 3):
        raise ValueError("shape: c must be 3-D when a or b is batched")
    batch = c.shape[0] if c.ndim == 3 else 1
    for label, arr in (("a", a), ("b", b)):
        if arr.ndim == 3 and arr.shape[0] != batch:
            raise ValueError(f"shape: {label} has batch {arr.shape[0]}, c has {batch}")
    align = kernel.alignment_elements
    if align > 1 and (n % align or k % align):
        raise ValueError(f"shape: kernel {kernel.name!r} needs n and k to be multiples of {align}, "
                         f"got n={n}, k={k}")
    strides = (m * k if a.ndim == 3 else 0, k * n if b.ndim == 3 else 0, m * n if c.ndim == 3 else 0)
    return m, n, k, batch, strides


def conv_output_hw(h: int, w: int, r: int, s: int, stride: int, padding: int) -> tuple[int, int]:
    return (h + 2 * padding - r) // stride + 1, (w + 2 * padding - s) // stride + 1


def _conv_dims(kernel: OwnKernel, x, w, y, stride: int, padding: int):
    for label, arr in (("x", x), ("w", w), ("y", y)):
        _check_array(kernel, label, arr, (4,))
    if not (isinstance(stride, int) and stride >= 1):
        raise ValueError(f"stride: must be an integer >= 1, got {stride!r}")
    if not (isinstance(padding, int) and padding >= 0):
        raise ValueError(f"padding: must be an integer >= 0, got {padding!r}")
    n, h, w_, c = x.shape
    k, r, s, c2 = w.shape
    if c2 != c:
        raise ValueError(f"shape: filter {w.shape} (KRSC) has C={c2}, input {x.shape} (NHWC) has C={c}")
    p, q = conv_output_hw(h, w_, r, s, stride, padding)
    if p < 1 or q < 1:
        raise ValueError(f"shape: output would be {p}x{q} for input {h}x{w_}, filter {r}x{s}")
    if y.shape != (n, p, q, k):
        raise ValueError(f"shape: y must be NPQK {(n, p, q, k)}, got {y.shape}")
    if c % 8 or k % 8:
        raise ValueError(f"shape: kernel {kernel.name!r} needs C and K to be multiples of 8, "
                         f"got C={c}, K={k}")
    if n * p * q >= 2**31 or x.size >= 2**31 or y.size >= 2**31:
        raise ValueError("shape: tensors of 2**31 elements or more are not supported")
    return n, h, w_, c, k, r, s, p, q
