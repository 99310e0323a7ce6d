"""Which kernels do cuBLAS and cuDNN run, shape by shape? A profiler pass over a broad shape set.

For every shape: warm up (cuDNN autotunes here), then, under torch.profiler, launch a marker kernel,
``REPS`` calls, and another marker; the kernels between a pair of markers belong to that shape. Writes
one CSV row per shape with the kernel names of one call (';'-joined, in launch order) and the median
over the reps of the summed kernel durations CUPTI reports (device time of the kernels alone, without
launch gaps; the timing harness measures the full call time separately).

Usage (on a GPU): PYTHONPATH=. python validation/discover_kernels.py --out DIR [--groups gemm,conv]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

import numpy as np

REPS = 3
GEMM_FIELDS = ["group", "op", "dtype", "batch", "m", "n", "k", "kernels", "kernel_us_median",
               "kernel_us_reps"]
CONV_FIELDS = ["group", "op", "dtype", "n", "c", "h", "w", "k", "r", "s", "stride", "padding", "kernels",
               "kernel_us_median", "kernel_us_reps"]

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from validation.shapesets import LLAMA_NK, RESNET50_CONVS, VGG16_CONVS  # noqa: E402  (one copy of the lists)


def gemm_shapes(rng: np.random.Generator) -> list[dict]:
    rows = []

    def add(group, dtype, m, n, k, batch=1, op="mm"):
        rows.append(dict(group=group, op=op, dtype=dtype, batch=int(batch), m=int(m), n=int(n), k=int(k)))

    def logu(lo, hi, size):
        return np.exp(rng.uniform(np.log(lo), np.log(hi), size)).astype(int)

    for dtype, n_al, n_mis in (("fp16", 420, 140), ("bf16", 140, 40), ("fp32", 120, 30), ("tf32", 120, 30)):
        for aligned, count in ((True, n_al), (False, n_mis)):
            ms, ns, ks = logu(8, 16384, count), logu(8, 16384, count), logu(8, 16384, count)
            for m, n, k in zip(ms, ns, ks, strict=True):
                if aligned:
                    m, n, k = max(8, m // 8 * 8), max(8, n // 8 * 8), max(8, k // 8 * 8)
                if 2.0 * m * n * k > 1.2e12:
                    continue
                add(f"random_{'aligned' if aligned else 'misaligned'}", dtype, m, n, k)
    for n in range(64, 8193, 64):
        add("stair_n", "fp16", 4096, n, 4096)
    for m in range(64, 8193, 128):
        add("stair_m", "fp16", m, 4096, 4096)
    for k in range(64, 8193, 256):
        add("stair_k", "fp16", 4096, 4096, k)
    for m in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        for n, k in LLAMA_NK[:10]:
            add("decode", "fp16", m, n, k)
    for tokens in (512, 2048, 8192):
        for n, k in LLAMA_NK:
            add("llm_prefill", "fp16", tokens, n, k)
    for bh, s, d in ((96, 128, 64), (96, 512, 64), (384, 512, 64), (256, 1024, 128), (64, 2048, 128),
                     (128, 4096, 128), (32, 384, 64), (48, 256, 64)):
        add("attention_qk", "fp16", s, s, d, batch=bh, op="bmm")
        add("attention_pv", "fp16", s, d, s, batch=bh, op="bmm")
    for m, n, k in zip(logu(16, 8192, 60), logu(16, 8192, 60), logu(16, 8192, 60), strict=True):
        add("random_aligned", "fp8", max(16, m // 16 * 16), max(16, n // 16 * 16), max(16, k // 16 * 16))
    for m, n, k in ((4096, 4096, 4096), (1000, 1000, 1000), (4096, 1024, 4096), (128, 4096, 4096)):
        add("cupy_vs_torch", "fp16", m, n, k, op="cupy")
        add("cupy_vs_torch", "fp16", m, n, k, op="mm")
    return rows


def conv_shapes() -> list[dict]:
    rows = []
    for c, h, k, r, stride, pad in RESNET50_CONVS:
        rows.append(dict(group="resnet50", op="conv", dtype="fp16", n=32, c=c, h=h, w=h, k=k, r=r, s=r,
                         stride=stride, padding=pad))
    for c, h, k in VGG16_CONVS:
        rows.append(dict(group="vgg16", op="conv", dtype="fp16", n=32, c=c, h=h, w=h, k=k, r=3, s=3,
                         stride=1, padding=1))
    for c, h, kmax, r, stride, pad in ((64, 56, 256, 3, 1, 1), (256, 14, 1024, 1, 1, 0),
                                       (512, 7, 2048, 1, 1, 0), (128, 28, 512, 3, 1, 1)):
        for k in range(8, kmax + 1, max(8, kmax // 48 // 8 * 8)):
            rows.append(dict(group="stair_k", op="conv", dtype="fp16", n=32, c=c, h=h, w=h, k=k, r=r, s=r,
                             stride=stride, padding=pad))
    return rows


def _torch_dtype(torch, dtype):
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32,
            "tf32": torch.float32}[dtype]


def make_call(row, torch):
    """Allocate fresh random inputs for ``row`` and return a zero-argument callable running it once."""
    dev = "cuda"
    if row["op"] == "conv":
        x = torch.randn(row["n"], row["c"], row["h"], row["w"], device=dev, dtype=torch.float16)
        x = x.to(memory_format=torch.channels_last)
        wt = torch.randn(row["k"], row["c"], row["r"], row["s"], device=dev, dtype=torch.float16)
        wt = wt.to(memory_format=torch.channels_last)
        return lambda: torch.nn.functional.conv2d(x, wt, stride=row["stride"], padding=row["padding"])
    m, n, k, b = row["m"], row["n"], row["k"], row["batch"]
    if row["dtype"] == "fp8":
        a = torch.randn(m, k, device=dev).to(torch.float8_e4m3fn)
        bt = torch.randn(n, k, device=dev).to(torch.float8_e4m3fn)
        one = torch.ones((), device=dev)
        return lambda: torch._scaled_mm(a, bt.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    dt = _torch_dtype(torch, row["dtype"])
    if row["op"] == "cupy":
        import cupy

        a = cupy.random.standard_normal((m, k), dtype=cupy.float32).astype(cupy.float16)
        bb = cupy.random.standard_normal((k, n), dtype=cupy.float32).astype(cupy.float16)
        return lambda: cupy.matmul(a, bb)
    if row["op"] == "bmm":
        a = torch.randn(b, m, k, device=dev, dtype=dt)
        bb = torch.randn(b, k, n, device=dev, dtype=dt)
        return lambda: torch.bmm(a, bb)
    a = torch.randn(m, k, device=dev, dtype=dt)
    bb = torch.randn(k, n, device=dev, dtype=dt)
    return lambda: torch.mm(a, bb)


def profile_rows(rows, torch, log=print):
    """Run every row under the profiler; return rows with kernel names and durations added."""
    from wavemodel.hardware.profiler import profile_calls

    calls = []
    t0 = time.time()
    for i, row in enumerate(rows):
        torch.backends.cuda.matmul.allow_tf32 = row["dtype"] == "tf32"
        try:
            f = make_call(row, torch)
            f()
            f()
            calls.append(f)
        except Exception as e:  # noqa: BLE001 - recorded per row, the sweep goes on
            row["kernels"] = f"ERROR {type(e).__name__}: {str(e)[:120]}"
            calls.append(None)
        if i % 200 == 0:
            log(f"  warm {i}/{len(rows)} {time.time() - t0:.0f}s")
    setup = [(lambda tf32=(row["dtype"] == "tf32"): setattr(torch.backends.cuda.matmul, "allow_tf32", tf32))
             for row in rows]
    found = profile_calls(calls, reps=REPS, setup=setup)
    for row, ck in zip(rows, found, strict=True):
        if ck is None:
            continue
        row["kernels"] = ck.kernel
        row["kernel_us_median"] = ck.kernel_us_median
        row["kernel_us_reps"] = " ".join(f"{d:.2f}" for d in ck.kernel_us_reps)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--groups", default="gemm,conv")
    ap.add_argument("--seed", type=int, default=20261125)
    args = ap.parse_args()
    import torch

    torch.backends.cudnn.benchmark = True
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for grp, rows, fields in (("gemm", gemm_shapes(rng), GEMM_FIELDS), ("conv", conv_shapes(), CONV_FIELDS)):
        if grp not in args.groups:
            continue
        t = time.time()
        print(f"{grp}: {len(rows)} shapes", flush=True)
        rows = profile_rows(rows, torch)
        path = os.path.join(args.out, f"discovery_{grp}.csv")
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        names = {}
        for r in rows:
            for kname in str(r.get("kernels", "")).split(";"):
                names[kname[:90]] = names.get(kname[:90], 0) + 1
        print(f"{grp}: {time.time() - t:.0f}s, {len(names)} distinct kernels -> {path}")
        for kname, c in sorted(names.items(), key=lambda x: -x[1])[:60]:
            print(f"  {c:5d} {kname}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
