"""Read the tiling out of the kernel names cuBLAS and cuDNN report to a profiler.

Names seen on an H100 with CUDA 13 (validation/data/h100-sxm/discovery_*.csv):

- ``nvjet_sm90_hsh_256x128_64x4_1x2_h_bz_coopA_NNT``: types (hsh = fp16 in, fp32 math, fp16 out;
  tst = bf16; qqtst = fp8), CTA tile 256x128 in cuBLAS's column-major (m x n), K tile 64 x 4
  stages, cluster 1x2, raster h/v, cooperative (coopA/coopB) or ping-pong, ``splitK`` when the
  kernel writes partial sums that ``cublasLt::splitKreduce_kernel`` adds up;
- ``cutlass_80_tensorop_f16_s16816gemm_f16_128x256_64x3_nn_align1``,
  ``cutlass_75_tensorop_f16_s1688gemm_f16_64x64_nn_align1``, ``cutlass_80_simt_sgemm_128x64_8x5``:
  CUTLASS 2.x kernels with the tile (and often K tile x stages) and operand alignment;
- ``sm80_xmma_gemm_f32f32_f32f32_f32_nn_n_tilesize64x64x8_stage3_...``,
  ``sm90_xmma_fprop_implicit_gemm_..._tilesize128x128x64_warpgroupsize...`` (xmma GEMMs and
  cuDNN's implicit-GEMM convolutions).

cuBLAS is column-major: ``torch.mm(A[M,K], B[K,N])`` asks it for C^T = B^T A^T, so its m is our N.
``parse`` returns the tile in *our* row-major orientation (tile_m along Gemm.m) for GEMMs; for a
convolution the xmma tile is already (output pixels x output channels) = (M x N) of the implicit GEMM.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NVJET = re.compile(
    r"nvjet_sm(?P<sm>\d+)_(?P<types>[a-z]+)_(?P<a>\d+)x(?P<b>\d+)_(?P<tk>\d+)x(?P<stages>\d+)_"
    r"(?P<ca>\d+)x(?P<cb>\d+)_(?P<raster>[hv])_(?P<rest>\w+)"
)
_CUTLASS = re.compile(
    r"cutlass_(?:(?P<sm>\d+)_)?(?P<kind>[a-z_]+?)_.*?(?P<a>\d+)x(?P<b>\d+)(?:_(?P<tk>\d+)x(?P<stages>\d+))?_"
    r"(?P<layout>[nt]{2}|nhwc)(?:_align(?P<align>\d+))?"
)
_XMMA = re.compile(
    r"sm(?P<sm>\d+)_xmma_(?P<op>gemm|fprop_implicit_gemm\w*?)_(?P<types>[a-z0-9_]+?)_.*?"
    r"tilesize(?P<a>\d+)x(?P<b>\d+)x(?P<tk>\d+)(?:_stage(?P<stages>\d+))?"
)
_GEMV = re.compile(r"gemmSN_NN_kernel|gemv|splitKreduce|reduce_kernel|memset")


@dataclass(frozen=True)
class KernelName:
    family: str          # "nvjet", "cutlass", "xmma", "xmma_conv", "cutlass_conv", "aux", "other"
    tile_m: int = 0      # our orientation (rows of C = Gemm.m; output pixels for a conv)
    tile_n: int = 0
    tile_k: int = 0
    stages: int = 0
    cluster_m: int = 1
    cluster_n: int = 1
    split_k: bool = False
    cooperative: bool = False
    alignment: int = 0   # operand alignment in elements the kernel needs (0 when the name says nothing)
    math: str = "tensor"

    @property
    def tile(self) -> str:
        return f"{self.tile_m}x{self.tile_n}"


def parse(name: str, conv: bool = False) -> KernelName:
    """Tiling of one kernel from its name; family "aux" for memsets and reductions."""
    if name == "memset" or "splitKreduce" in name or "reduce_kernel" in name:
        return KernelName("aux")
    m = _NVJET.search(name)
    if m:
        a, b, ca, cb = (int(m[x]) for x in ("a", "b", "ca", "cb"))
        rest = m["rest"]
        # nvjet's AxB is column-major (m x n): A runs along our N (output channels for a conv)
        tm, tn, cm, cn = b, a, cb, ca
        return KernelName("nvjet", tm, tn, int(m["tk"]), int(m["stages"]), cm, cn,
                          split_k="splitK" in rest, cooperative="coop" in rest, alignment=8)
    m = _XMMA.search(name)
    if m:
        a, b = int(m["a"]), int(m["b"])
        is_conv = m["op"].startswith("fprop")
        math = "simt" if "ffma" in name else "tensor"
        align = re.search(r"aligna(\d+)", name)
        tm, tn = (a, b) if (is_conv or conv) else (b, a)
        return KernelName("xmma_conv" if is_conv else "xmma", tm, tn, int(m["tk"]),
                          int(m["stages"] or 0), math=math, alignment=int(align[1]) if align else 0)
    m = _CUTLASS.search(name)
    if m:
        a, b = int(m["a"]), int(m["b"])
        tm, tn = (a, b) if conv else (b, a)
        math = "simt" if "simt" in m["kind"] else "tensor"
        fam = "cutlass_conv" if ("fprop" in name or conv) else "cutlass"
        return KernelName(fam, tm, tn, int(m["tk"] or 32), int(m["stages"] or 2), math=math,
                          alignment=int(m["align"] or 0))
    if _GEMV.search(name):
        return KernelName("gemv" if "gemmSN" in name else "aux")
    return KernelName("other")


def main_kernel(names: str, conv: bool = False) -> tuple[str, KernelName]:
    """The tile-bearing kernel of a call (';'-joined names); ("", other) when there is none."""
    for n in names.split(";"):
        k = parse(n, conv)
        if k.family not in ("aux",):
            return n, k
    return "", KernelName("other")


def launches(names: str) -> int:
    """Kernels (memsets included) one call launches: each costs a launch in a CUDA graph."""
    return len([n for n in names.split(";") if n])
