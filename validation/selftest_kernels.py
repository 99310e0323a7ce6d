"""Device self-test of our kernels: compile, attributes vs own.toml, correctness, speed vs cuBLAS.

    PYTHONPATH=. python3 validation/selftest_kernels.py [--explore] [--skip-timing]

For every kernel in wavemodel.hardware.kernels.KERNELS:
1. compile it (NVRTC through CuPy) and print its attributes (registers, static/dynamic/local memory,
   blocks per SM from the CUDA occupancy API and from wavemodel's calculator) next to own.toml's;
2. check it against cuBLAS (float64 reference) at aligned, odd and batched shapes
   (wavemodel.hardware.correctness);
3. time it at 4096^3 (GEMMs) or on a ResNet layer (convs): a CuPy CUDA graph of 20 launches,
   replayed 7 times between CUDA events (median per launch); cuBLAS: 20 back-to-back cupy.matmul
   calls between events (host overhead is hidden at this size), median of 7. TF32 stays off.
   The % of cuBLAS uses a cuBLAS measurement taken right after the kernel's: on the H100 the same
   tensor-core kernel measured 7-13% faster when timed after a pause (compiling, checking) than
   inside a stretch of back-to-back timings (likely power and clock state), so only adjacent
   numbers are compared.
``--explore`` also builds and times a few unregistered tile variants (tuning candidates).

Prints a table (kernel, TFLOP/s, % of cuBLAS) last; writes it and a JSON of every number to $OUT
when OUT is set. Exit status: 1 if any correctness check failed, 2 if only attributes differ from
own.toml, else 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
import traceback

os.environ.setdefault("CUPY_TF32", "0")       # cuBLAS SGEMM in plain fp32

from wavemodel.configs import own_kernels  # noqa: E402
from wavemodel.gpus import gpu as lookup_gpu  # noqa: E402
from wavemodel.hardware import correctness  # noqa: E402
from wavemodel.hardware.kernels import KERNELS, OwnKernel, conv_output_hw  # noqa: E402

GRAPH_LAUNCHES = 20
REPLAYS = 7
SIZE = 4096

GEMM_SHAPES = {  # (m, n, k, batch, broadcast_b)
    "simt": [(4096, 4096, 4096, 1, False), (1000, 1000, 1000, 1, False), (1, 8, 8, 1, False),
             (1, 1, 1, 1, False), (127, 136, 264, 1, False), (37, 5, 3, 1, False), (129, 257, 33, 1, False),
             (200, 300, 100, 3, False), (65, 130, 70, 4, True)],
    "tensor": [(4096, 4096, 4096, 1, False), (1000, 1000, 1000, 1, False), (1, 8, 8, 1, False),
               (127, 136, 264, 1, False), (333, 264, 520, 1, False), (129, 392, 40, 1, False),
               (257, 136, 264, 4, False), (100, 72, 1032, 3, True)],
}
CONV_SHAPES = [  # (n, c, h, w, k, r, s, stride, padding)
    (2, 64, 56, 56, 64, 3, 3, 1, 1),       # ResNet-50 conv2_x 3x3
    (2, 64, 56, 56, 128, 3, 3, 2, 1),      # downsampling 3x3, stride 2
    (2, 256, 28, 28, 64, 1, 1, 1, 0),      # 1x1 reduce
    (2, 128, 28, 28, 256, 1, 1, 2, 0),     # 1x1 projection, stride 2
    (3, 24, 17, 13, 40, 3, 3, 1, 1),       # odd N/H/W and channels
    (3, 32, 27, 27, 72, 1, 1, 2, 0),       # odd H/W, 1x1 stride 2
    (1, 16, 15, 9, 24, 3, 3, 2, 1),        # odd, 3x3 stride 2
    (2, 8, 11, 11, 8, 3, 3, 1, 0),         # no padding, C = K = 8
    (2, 8, 32, 32, 64, 7, 7, 2, 3),        # 7x7 stem (channels padded to 8)
]
CONV_TIMED = (32, 128, 56, 56, 128, 3, 3, 1, 1)

EXPLORE = [  # unregistered variants (name, base kernel, defines that change or are added), timed next to
    # the registered ones: earlier choices and near neighbours, to keep the registered choice honest
    ("tc_f16_128x256_k32s4", "tc_f16_128x256", {"BK": 32, "STAGES": 4}),
    ("tc_f16_128x256_k64s4", "tc_f16_128x256", {"STAGES": 4}),
    ("tc_f16_256x128_k64s3", "tc_f16_256x128", {"BK": 64}),
    ("tc_f16_128x128_g8", "tc_f16_128x128", {"RASTER_GROUP": 8}),
    ("tc_f16_128x256_g8", "tc_f16_128x256", {"RASTER_GROUP": 8}),
    ("simt_f32_128x128_k8", "simt_f32_128x128", {"BK": 8}),
    ("simt_f32_64x64_mb1", "simt_f32_64x64", {"MIN_BLOCKS": 1}),
]
EXPLORE_CHECKS = {"tensor": [(333, 264, 520, 1), (257, 136, 264, 3), (1000, 1000, 1000, 1)],
                  "simt": [(333, 265, 521, 1), (129, 257, 33, 3), (1000, 1000, 1000, 1)]}


# ------------------------------------------------------------------------------------------- timing


def time_graph_s(launch) -> float:
    """Median device time of one ``launch(stream)`` from replays of a graph of GRAPH_LAUNCHES."""
    import cupy

    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        launch(stream)
        stream.synchronize()
        stream.begin_capture()
        for _ in range(GRAPH_LAUNCHES):
            launch(stream)
        graph = stream.end_capture()
        graph.launch(stream)
        stream.synchronize()
        return _event_median_s(lambda: graph.launch(stream), stream) / GRAPH_LAUNCHES


def time_eager_s(call) -> float:
    """Median device time of one ``call()`` from event-timed loops of GRAPH_LAUNCHES eager calls."""
    import cupy

    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        for _ in range(3):
            call()
        stream.synchronize()

        def loop():
            for _ in range(GRAPH_LAUNCHES):
                call()

        return _event_median_s(loop, stream) / GRAPH_LAUNCHES


def _event_median_s(body, stream) -> float:
    import cupy

    samples = []
    for _ in range(REPLAYS):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record(stream)
        body()
        stop.record(stream)
        stop.synchronize()
        samples.append(cupy.cuda.get_elapsed_time(start, stop) * 1e-3)
    return statistics.median(samples)


def gemm_operands(kernel: OwnKernel, m, n, k):
    import cupy

    rng = cupy.random.RandomState(1)
    a = rng.uniform(-1, 1, (m, k), dtype=cupy.float32).astype(kernel.np_dtype)
    b = rng.uniform(-1, 1, (k, n), dtype=cupy.float32).astype(kernel.np_dtype)
    c = cupy.empty((m, n), dtype=kernel.np_dtype)
    return a, b, c


def time_gemm(kernel: OwnKernel, size=SIZE) -> dict:
    a, b, c = gemm_operands(kernel, size, size, size)
    t = time_graph_s(lambda s: kernel.launch(a, b, c, stream=s))
    return {"seconds": t, "tflops": 2 * size**3 / t / 1e12}


def time_cublas(dtype: str, size=SIZE) -> dict:
    import cupy

    kernel = next(k for k in KERNELS.values() if k.dtype == dtype and k.kind == "gemm")
    a, b, c = gemm_operands(kernel, size, size, size)
    t = time_eager_s(lambda: cupy.matmul(a, b, out=c))
    return {"seconds": t, "tflops": 2 * size**3 / t / 1e12}


def time_conv(kernel: OwnKernel, shape=CONV_TIMED) -> dict:
    import cupy

    n, c, h, w, k, r, s, stride, pad = shape
    p, q = conv_output_hw(h, w, r, s, stride, pad)
    rng = cupy.random.RandomState(2)
    x = rng.uniform(-1, 1, (n, h, w, c), dtype=cupy.float32).astype(cupy.float16)
    f = rng.uniform(-1, 1, (k, r, s, c), dtype=cupy.float32).astype(cupy.float16)
    y = cupy.empty((n, p, q, k), dtype=cupy.float16)
    t = time_graph_s(lambda st: kernel.launch_conv(x, f, y, stride, pad, stream=st))
    flops = 2 * n * p * q * k * r * s * c
    out = {"seconds": t, "tflops": flops / t / 1e12}
    ref = time_torch_conv(x, f, stride, pad)
    if ref:
        out["cudnn_tflops"] = flops / ref / 1e12
    return out


def time_torch_conv(x, f, stride, pad) -> float | None:
    """cuDNN (through torch, channels_last fp16) on the same tensors; None without torch."""
    try:
        import torch
    except ImportError:
        return None
    xt = torch.from_dlpack(x).permute(0, 3, 1, 2)            # NCHW view of NHWC memory
    wt = torch.from_dlpack(f).permute(0, 3, 1, 2)
    torch.backends.cudnn.benchmark = True
    for _ in range(3):
        torch.nn.functional.conv2d(xt, wt, stride=stride, padding=pad)
    torch.cuda.synchronize()
    samples = []
    for _ in range(REPLAYS):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(GRAPH_LAUNCHES):
            torch.nn.functional.conv2d(xt, wt, stride=stride, padding=pad)
        stop.record()
        stop.synchronize()
        samples.append(start.elapsed_time(stop) * 1e-3 / GRAPH_LAUNCHES)
    return statistics.median(samples)


# ------------------------------------------------------------------------------------------- checks


def attributes_row(kernel: OwnKernel, catalogue, gpu) -> tuple[dict, list[str]]:
    attrs = kernel.attributes()
    cfg = kernel.config
    row = {
        "num_regs": attrs["num_regs"], "static_smem": attrs["shared_size_bytes"],
        "dynamic_smem": kernel.dynamic_smem_bytes, "local_bytes": attrs["local_size_bytes"],
        "blocks_per_sm_cuda": kernel.blocks_per_sm(), "blocks_per_sm_model": cfg.occupancy(gpu).blocks_per_sm,
    }
    problems = []
    toml = catalogue.get(kernel.name)
    if toml is None:
        problems.append("missing from own.toml")
    else:
        for field in ("regs_per_thread", "smem_per_block_bytes", "threads", "tile_m", "tile_n", "tile_k",
                      "stages"):
            if getattr(toml, field) != getattr(cfg, field):
                problems.append(f"{field}: device {getattr(cfg, field)} != own.toml {getattr(toml, field)}")
    if row["blocks_per_sm_cuda"] != row["blocks_per_sm_model"]:
        problems.append(f"blocks/SM: CUDA {row['blocks_per_sm_cuda']} != model {row['blocks_per_sm_model']}")
    if attrs["local_size_bytes"]:
        problems.append(f"local memory (spills) {attrs['local_size_bytes']} bytes")
    return row, problems


def correctness_runs(kernel: OwnKernel) -> list[dict]:
    results = []
    if kernel.kind == "gemm":
        jobs = [("gemm", s) for s in GEMM_SHAPES[kernel.math]]
    else:
        jobs = [("conv", s) for s in CONV_SHAPES]
    for kind, shape in jobs:
        try:
            if kind == "gemm":
                m, n, k, batch, bcast = shape
                res = correctness.check_gemm(kernel.name, m, n, k, batch=batch, broadcast_b=bcast)
            else:
                n, c, h, w, k, r, s, stride, pad = shape
                res = correctness.check_conv(kernel.name, n, c, h, w, k, r, s, stride, pad)
            print(f"  {res}")
            results.append(res.as_dict())
        except AssertionError as e:
            print(f"  {e}")
            results.append({"kernel": kernel.name, "shape": list(shape), "passed": False, "error": str(e)})
        except Exception as e:  # noqa: BLE001 - a crash is a failure of this check, report and go on
            print(f"  FAIL {kernel.name} shape={shape}: {type(e).__name__}: {e}")
            results.append({"kernel": kernel.name, "shape": list(shape), "passed": False,
                            "error": f"{type(e).__name__}: {e}"})
    return results


def explore_kernels() -> list[OwnKernel]:
    out = []
    for name, base, changes in EXPLORE:
        k = KERNELS[base]
        d = dict(k.defines) | changes
        defines = tuple(d.items())
        threads = d["WM"] * d["WN"] * 32 if "WM" in d else k.threads
        out.append(dataclasses.replace(k, name=name, defines=defines, threads=threads,
                                       stages=d.get("STAGES", k.stages), tile_k=d.get("BK", k.tile_k)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--explore", action="store_true", help="also time unregistered tile variants")
    ap.add_argument("--skip-timing", action="store_true")
    args = ap.parse_args(argv)

    import cupy

    from wavemodel.hardware import kernels as kernels_mod

    props = cupy.cuda.runtime.getDeviceProperties(0)
    dev_name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    print(f"device: {dev_name}, {props['multiProcessorCount']} SMs, CuPy {cupy.__version__}, "
          f"CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}, NVRTC {cupy.cuda.nvrtc.getVersion()}")
    gpu = lookup_gpu("local")
    catalogue = own_kernels()
    report = {"device": dev_name, "kernels": {}, "cublas": {}, "explore": {}}
    failed = mismatched = False

    for name, kernel in KERNELS.items():
        print(f"\n== {name}: tile {kernel.tile_m}x{kernel.tile_n}x{kernel.tile_k}, {kernel.threads} threads, "
              f"{kernel.stages} stages, {' '.join(kernel.options)}")
        entry = report["kernels"][name] = {}
        t0 = time.perf_counter()
        try:
            row, problems = attributes_row(kernel, catalogue, gpu)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            entry["error"] = f"{type(e).__name__}: {e}"
            failed = True
            continue
        entry["attributes"] = row
        entry["compile_s"] = time.perf_counter() - t0
        toml = catalogue.get(name)
        print(f"  attributes: {row}; own.toml: regs {getattr(toml, 'regs_per_thread', None)}, "
              f"smem {getattr(toml, 'smem_per_block_bytes', None)}")
        for p in problems:
            print(f"  MISMATCH {p}")
        mismatched |= bool(problems)
        entry["problems"] = problems
        entry["correctness"] = correctness_runs(kernel)
        failed |= not all(r["passed"] for r in entry["correctness"])

    if not args.skip_timing:
        for dtype in ("fp32", "fp16"):
            report["cublas"][dtype] = time_cublas(dtype)
        for name, kernel in KERNELS.items():
            if "attributes" not in report["kernels"][name]:
                continue
            try:
                timing = time_gemm(kernel) if kernel.kind == "gemm" else time_conv(kernel)
                if kernel.kind == "gemm":       # cuBLAS again right after, under the same conditions
                    timing["cublas_tflops"] = time_cublas(kernel.dtype)["tflops"]
            except Exception as e:  # noqa: BLE001
                timing = {"error": f"{type(e).__name__}: {e}"}
            report["kernels"][name]["timing"] = timing
        if args.explore:
            for kernel in explore_kernels():
                kernels_mod.KERNELS[kernel.name] = kernel         # registered for this process only
                try:
                    row = {"regs": kernel.attributes()["num_regs"], "blocks_per_sm": kernel.blocks_per_sm()}
                    row["local_bytes"] = kernel.attributes()["local_size_bytes"]
                    for m, n, k, batch in EXPLORE_CHECKS[kernel.math]:
                        correctness.check_gemm(kernel.name, m, n, k, batch=batch)
                    row.update(time_gemm(kernel))
                    row["cublas_tflops"] = time_cublas(kernel.dtype)["tflops"]
                except Exception as e:  # noqa: BLE001
                    row = {"error": f"{type(e).__name__}: {e}"}
                report["explore"][kernel.name] = row

    lines = table(report)
    print("\n" + "\n".join(lines))
    status = 1 if failed else 2 if mismatched else 0
    print(f"\ncorrectness: {'FAILED' if failed else 'all passed'}; own.toml: "
          f"{'MISMATCH' if mismatched else 'matches'}; exit {status}")
    out_dir = os.environ.get("OUT")
    if out_dir:
        with open(os.path.join(out_dir, "selftest_kernels.txt"), "w") as fh:
            fh.write("\n".join(lines) + "\n")
        with open(os.path.join(out_dir, "selftest_kernels.json"), "w") as fh:
            json.dump(report, fh, indent=1, default=str)
    return status


def _row(name, regs="", smem="", bps="", checks="", tflops=float("nan"), pct="", note="") -> str:
    return f"{name:22s} {regs!s:>4} {smem!s:>7} {bps!s:>3} {checks:>7s} {tflops:8.1f} {pct:>8s}  {note}"


def _pct(timing: dict, dtype, cublas) -> str:
    """% of cuBLAS measured right after this kernel (else of the first cuBLAS measurement)."""
    ref = timing.get("cublas_tflops") or cublas.get(dtype, {}).get("tflops")
    return f"{100 * timing['tflops'] / ref:.1f}" if ref else ""


def table(report) -> list[str]:
    cublas = report["cublas"]
    lines = [f"{'kernel':22s} {'regs':>4s} {'smem_B':>7s} {'bps':>3s} {'checks':>7s} {'TFLOP/s':>8s} "
             f"{'% cuBLAS':>8s}  note"]
    for name, e in report["kernels"].items():
        attrs = e.get("attributes", {})
        checks = e.get("correctness", [])
        ok = sum(1 for r in checks if r.get("passed"))
        t = e.get("timing", {})
        kernel = KERNELS[name]
        pct, note = "", t.get("error", e.get("error", ""))[:60]
        if "tflops" in t and kernel.kind == "gemm":
            pct = _pct(t, kernel.dtype, cublas)
            note = "4096^3"
        elif "tflops" in t:
            note = "conv " + "x".join(map(str, CONV_TIMED))
            if "cudnn_tflops" in t:
                ratio = 100 * t["tflops"] / t["cudnn_tflops"]
                note += f", cuDNN {t['cudnn_tflops']:.1f} TFLOP/s (ours {ratio:.0f}%)"
        smem = attrs.get("static_smem", 0) + attrs.get("dynamic_smem", 0) if attrs else ""
        lines.append(_row(name, attrs.get("num_regs", ""), smem, attrs.get("blocks_per_sm_cuda", ""),
                          f"{ok}/{len(checks)}", t.get("tflops", float("nan")), pct, note))
    for dtype, t in cublas.items():
        lines.append(_row(f"cublas_{dtype}", tflops=t["tflops"], pct="100.0", note="4096^3 cupy.matmul"))
    for name, row in report.get("explore", {}).items():
        dtype = "fp32" if name.startswith("simt") else "fp16"
        pct = _pct(row, dtype, cublas) if "tflops" in row else ""
        local = f"local={row['local_bytes']}B " if row.get("local_bytes") else ""
        lines.append(_row(name, row.get("regs", ""), bps=row.get("blocks_per_sm", ""),
                          tflops=row.get("tflops", float("nan")), pct=pct,
                          note="explore " + local + row.get("error", "")[:50]))
    return lines


if __name__ == "__main__":
    sys.exit(main())
