"""Shape sets of the sweeps (pure, deterministic): what a user runs through cuBLAS / cuDNN, and
staircases plus random shapes for our own kernels.

A GEMM shape is ``dict(group, dtype, batch, m, n, k)`` (row-major A[m,k] @ B[k,n]); a conv shape is
``dict(group, dtype, n, c, h, w, k, r, s, stride, padding)`` (NHWC fp16, dilation 1). Sizes are set
so ``validation/sweep.py --suite all`` runs in about 6-7 minutes on an H100 (see ``sweep.py``).
"""

from __future__ import annotations

import math

import numpy as np

# (N, K) of linear layers: y[tokens, N] = x[tokens, K] @ W[K, N]
LLM_LAYERS = {
    "gpt2": [(2304, 768), (768, 768), (3072, 768), (768, 3072), (50257, 768)],
    "bert_large": [(3072, 1024), (1024, 1024), (4096, 1024), (1024, 4096)],
    "llama7b": [(12288, 4096), (4096, 4096), (22016, 4096), (11008, 4096), (4096, 11008), (32000, 4096)],
    "llama70b": [(10240, 8192), (8192, 8192), (28672, 8192), (8192, 28672), (1024, 8192), (32000, 8192)],
}
LLAMA_NK = [(4096, 4096), (12288, 4096), (11008, 4096), (4096, 11008), (22016, 4096), (8192, 8192),
            (28672, 8192), (8192, 28672), (10240, 8192), (32000, 4096), (768, 768), (3072, 768), (768, 3072),
            (1024, 1024), (4096, 1024), (1024, 4096), (2304, 768), (50257, 768)]
PREFILL_TOKENS = (128, 512, 2048, 8192)
DECODE_M = (1, 2, 4, 8, 16, 32, 64, 128, 256)
ATTENTION = ((96, 128, 64), (96, 512, 64), (384, 512, 64), (256, 1024, 128), (64, 2048, 128),
             (128, 4096, 128), (32, 384, 64), (48, 256, 64))      # (batch*heads, seq, head_dim)
SQUARES = (128, 256, 384, 512, 768, 1000, 1024, 1536, 2048, 2560, 3072, 4096, 5120, 6144, 8192, 10240,
           12288, 16384)

RESNET50_CONVS = [  # (c, h, k, r, stride, padding) at batch 32, 224x224 input
    (3, 224, 64, 7, 2, 3),
    (64, 56, 64, 1, 1, 0), (64, 56, 64, 3, 1, 1), (64, 56, 256, 1, 1, 0), (256, 56, 64, 1, 1, 0),
    (256, 56, 128, 1, 1, 0), (128, 56, 128, 3, 2, 1), (128, 28, 512, 1, 1, 0), (256, 56, 512, 1, 2, 0),
    (512, 28, 128, 1, 1, 0), (128, 28, 128, 3, 1, 1), (512, 28, 256, 1, 1, 0), (256, 28, 256, 3, 2, 1),
    (256, 14, 1024, 1, 1, 0), (512, 28, 1024, 1, 2, 0), (1024, 14, 256, 1, 1, 0), (256, 14, 256, 3, 1, 1),
    (1024, 14, 512, 1, 1, 0), (512, 14, 512, 3, 2, 1), (512, 7, 2048, 1, 1, 0), (1024, 14, 2048, 1, 2, 0),
    (2048, 7, 512, 1, 1, 0), (512, 7, 512, 3, 1, 1),
]
VGG16_CONVS = [(3, 224, 64), (64, 224, 64), (64, 112, 128), (128, 112, 128), (128, 56, 256), (256, 56, 256),
               (256, 28, 512), (512, 28, 512), (512, 14, 512)]        # (c, h, k), 3x3, stride 1, pad 1
CONV_STAIRS = ((64, 56, 256, 3, 1, 1), (256, 14, 1024, 1, 1, 0), (512, 7, 2048, 1, 1, 0),
               (128, 28, 512, 3, 1, 1), (256, 56, 512, 1, 2, 0))   # (c, h, k_max, r, stride, padding)

# the largest problem (2*m*n*k flops) a random or square shape may have, per dtype: ~1-3 ms on an H100
MAX_FLOPS = {"fp16": 1.5e12, "bf16": 1.5e12, "fp8": 2.5e12, "tf32": 0.6e12, "fp32": 0.1e12}
OWN_MAX_FLOPS = {"simt": 0.04e12, "tensor": 0.4e12}
OWN_CONV_MAX_FLOPS = 0.2e12

# how many shapes each part of the sweep has (the one place to resize the sweeps)
SIZES = {
    "cublas_random": {"fp16": (900, 300), "bf16": (300, 100), "fp32": (160, 60), "tf32": (160, 60),
                      "fp8": (200, 0)},                 # (aligned, misaligned) per dtype
    "cublas_random_batched": {"fp16": 160, "bf16": 60},
    "own_stair_points": {"n": 96, "m": 64, "k": 40},   # per own GEMM kernel
    "own_random": 200,                                  # per own kernel family, timed on every kernel of it
    "own_conv_stair_points": 40,                        # per layer in CONV_STAIRS
    "cudnn_random": 320,
}


def gemm(group, dtype, m, n, k, batch=1) -> dict:
    return dict(group=group, dtype=dtype, batch=int(batch), m=int(m), n=int(n), k=int(k))


def conv(group, n, c, h, k, r, stride, padding, w=None, s=None, dtype="fp16") -> dict:
    return dict(group=group, dtype=dtype, n=int(n), c=int(c), h=int(h), w=int(h if w is None else w),
                k=int(k), r=int(r), s=int(r if s is None else s), stride=int(stride), padding=int(padding))


def gemm_flops(s: dict) -> float:
    return 2.0 * s["batch"] * s["m"] * s["n"] * s["k"]


def conv_out(s: dict) -> tuple[int, int]:
    p = (s["h"] + 2 * s["padding"] - s["r"]) // s["stride"] + 1
    q = (s["w"] + 2 * s["padding"] - s["s"]) // s["stride"] + 1
    return p, q


def conv_flops(s: dict) -> float:
    p, q = conv_out(s)
    return 2.0 * s["n"] * p * q * s["k"] * s["c"] * s["r"] * s["s"]


def _logu(rng, lo, hi) -> int:
    return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def random_gemms(rng, count, dtype, *, align=1, misaligned=False, lo=8, hi=16384, max_flops=None,
                 group=None) -> list[dict]:
    """``count`` log-uniform shapes; aligned to ``align``, or (misaligned) with at least one dim not a
    multiple of 8; resampled until under ``max_flops``."""
    out = []
    limit = max_flops if max_flops is not None else MAX_FLOPS[dtype]
    grp = group or f"random_{'misaligned' if misaligned else 'aligned'}"
    while len(out) < count:
        m, n, k = (_logu(rng, lo, hi) for _ in range(3))
        if misaligned:
            if m % 8 == 0 and n % 8 == 0 and k % 8 == 0:
                k += 1 + int(rng.integers(7))
        else:
            m, n, k = (max(align, v // align * align) for v in (m, n, k))
        if 2.0 * m * n * k <= limit:
            out.append(gemm(grp, dtype, m, n, k))
    return out


def cublas_shapes(seed: int = 20261125) -> list[dict]:
    """What users run through cuBLAS: staircases, squares, LLM layers, decode, attention, random."""
    rng = np.random.default_rng(seed)
    rows = []
    rows += [gemm("stair_n", "fp16", 4096, n, 4096) for n in range(64, 8193, 64)]
    rows += [gemm("stair_m", "fp16", m, 4096, 4096) for m in range(64, 8193, 64)]
    rows += [gemm("stair_k", "fp16", 4096, 4096, k) for k in range(128, 8193, 128)]
    rows += [gemm("stair_n_small", "fp16", 1024, n, 1024) for n in range(32, 4097, 32)]
    rows += [gemm("stair_k_small", "fp16", 1024, 1024, k) for k in range(64, 8193, 64)]    # split-K
    rows += [gemm("stair_n", "bf16", 4096, n, 4096) for n in range(128, 8193, 128)]
    rows += [gemm("stair_n", "fp8", 4096, n, 4096) for n in range(128, 8193, 128)]
    rows += [gemm("stair_n", "tf32", 2048, n, 2048) for n in range(128, 8193, 128)]
    rows += [gemm("stair_n", "fp32", 1024, n, 1024) for n in range(128, 8193, 128)]
    for dtype in ("fp16", "bf16", "fp8", "tf32", "fp32"):
        rows += [gemm("square", dtype, s, s, s) for s in SQUARES
                 if 2.0 * s**3 <= MAX_FLOPS[dtype] * 2 and (dtype != "fp8" or s % 16 == 0)]
    for dtype in ("fp16", "bf16"):
        for model, layers in LLM_LAYERS.items():
            for tokens in PREFILL_TOKENS:
                rows += [gemm(f"llm_{model}", dtype, tokens, n, k) for n, k in layers
                         if 2.0 * tokens * n * k <= 4e12]
    rows += [gemm("decode", "fp16", m, n, k) for m in DECODE_M for n, k in LLAMA_NK[:10]]
    rows += [gemm("decode", "bf16", m, n, k) for m in DECODE_M for n, k in LLAMA_NK[:10]]
    for dtype in ("fp16", "bf16"):
        for bh, s, d in ATTENTION:
            rows.append(gemm("attention_qk", dtype, s, s, d, batch=bh))
            rows.append(gemm("attention_pv", dtype, s, d, s, batch=bh))
    for dtype, (n_al, n_mis) in SIZES["cublas_random"].items():
        align = 16 if dtype == "fp8" else 8
        rows += random_gemms(rng, n_al, dtype, align=align)
        if n_mis:
            rows += random_gemms(rng, n_mis, dtype, misaligned=True)
    for dtype, count in SIZES["cublas_random_batched"].items():
        rows += random_batched(rng, count, dtype)
    return rows


def random_batched(rng, count, dtype, align=8) -> list[dict]:
    """Batched GEMMs (torch.bmm): batch 2..256 log-uniform, aligned dims 16..4096."""
    out = []
    while len(out) < count:
        b = _logu(rng, 2, 256)
        m, n, k = (max(align, _logu(rng, 16, 4096) // align * align) for _ in range(3))
        if 2.0 * b * m * n * k <= MAX_FLOPS[dtype]:
            out.append(gemm("random_batched", dtype, m, n, k, batch=b))
    return out


def cudnn_shapes(seed: int = 20261126) -> list[dict]:
    """ResNet-50 and VGG-16 layers at batch 32 (and 8, 64 / 8), output-channel staircases, random convs
    (NHWC fp16)."""
    rng = np.random.default_rng(seed)
    rows = [conv("resnet50", b, c, h, k, r, st, pad) for b in (32, 8, 64)
            for c, h, k, r, st, pad in RESNET50_CONVS]
    rows += [conv("vgg16", b, c, h, k, 3, 1, 1) for b in (32, 8) for c, h, k in VGG16_CONVS]
    rows += conv_staircases(SIZES["own_conv_stair_points"])
    rows += random_convs(rng, SIZES["cudnn_random"])
    return rows


def conv_staircases(points: int, align: int = 8) -> list[dict]:
    rows = []
    for c, h, kmax, r, st, pad in CONV_STAIRS:
        step = max(align, kmax // points // align * align)
        rows += [conv("stair_k", 32, c, h, k, r, st, pad) for k in range(step, kmax + 1, step)]
    return rows


def random_convs(rng, count, align: int = 8, max_flops: float = 0.4e12, group: str = "random") -> list[dict]:
    rows = []
    while len(rows) < count:
        n = int(rng.choice([1, 2, 4, 8, 16, 32, 64]))
        h = int(rng.choice([7, 14, 28, 56, 112]))
        c = max(align, _logu(rng, 8, 1024) // align * align)
        k = max(align, _logu(rng, 8, 2048) // align * align)
        r = int(rng.choice([1, 3]))
        stride = int(rng.choice([1, 1, 2]))
        s = conv(group, n, c, h, k, r, stride, r // 2)
        if conv_flops(s) <= max_flops:
            rows.append(s)
    return rows


# ------------------------------------------------------------------------------------ own kernels


def _down(x: int, a: int) -> int:
    return max(a, x // a * a)


def own_gemm_staircases(tile_m: int, tile_n: int, tile_k: int, wave_tiles: int, dtype: str,
                        align: int = 1, points: dict | None = None) -> list[dict]:
    """Staircases along N, M and K for one kernel tile: fine steps (tile/4 along N, tile/2 along M,
    tile_k/2 or more along K, up to K ~ 2048) over ranges that cross at least ~5 wave boundaries
    (``wave_tiles`` = SMs x blocks per SM)."""
    pts = points or SIZES["own_stair_points"]
    k_fixed = 256 if dtype == "fp32" else 1024
    rows = []
    step_n = max(align, tile_n // 4)
    col_tiles = math.ceil(pts["n"] * step_n / tile_n)
    m = tile_m * max(1, math.ceil(5 * wave_tiles / col_tiles))
    rows += [gemm("stair_n", dtype, m, j * step_n, k_fixed) for j in range(1, pts["n"] + 1)]
    step_m = max(1, tile_m // 2)
    row_tiles = math.ceil(pts["m"] * step_m / tile_m)
    n = _down(tile_n * max(1, math.ceil(5 * wave_tiles / row_tiles)), align)
    rows += [gemm("stair_m", dtype, j * step_m, n, k_fixed) for j in range(1, pts["m"] + 1)]
    step_k = max(align, tile_k // 2, 2048 // pts["k"] // 8 * 8)   # k-tile boundaries at varied phases
    side = math.ceil(math.sqrt(1.5 * wave_tiles))           # ~1.5 waves of tiles
    rows += [gemm("stair_k", dtype, side * tile_m, _down(side * tile_n, align), j * step_k)
             for j in range(1, pts["k"] + 1)]
    return rows


def own_rng(family: str, seed: int):
    """The random generator of one of our kernel families' random shapes (shared by its kernels)."""
    return np.random.default_rng([seed, sum(map(ord, family))])


def own_gemm_random(family: str, dtype: str, math_unit: str, align: int = 1, count: int | None = None,
                    seed: int = 20261127) -> list[dict]:
    """The random shapes of one kernel family (the same for every kernel of it)."""
    rng = own_rng(family, seed)
    n = SIZES["own_random"] if count is None else count
    return random_gemms(rng, n, dtype, align=max(1, align), hi=8192, max_flops=OWN_MAX_FLOPS[math_unit],
                        group="random")


def own_conv_shapes(family: str, align: int = 8, count: int | None = None,
                    seed: int = 20261128) -> list[dict]:
    """ResNet-50 / VGG-16 layers with C a multiple of ``align``, output-channel staircases, random convs."""
    rng = own_rng(family, seed)
    rows = [conv("resnet50", 32, c, h, k, r, st, pad) for c, h, k, r, st, pad in RESNET50_CONVS
            if c % align == 0 and r in (1, 3)]
    rows += [conv("vgg16", 32, c, h, k, 3, 1, 1) for c, h, k in VGG16_CONVS if c % align == 0]
    rows += conv_staircases(SIZES["own_conv_stair_points"], align)
    n = SIZES["own_random"] if count is None else count
    rows += random_convs(rng, n, align, max_flops=OWN_CONV_MAX_FLOPS)
    return rows
