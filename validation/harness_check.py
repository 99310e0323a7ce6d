"""Check the timing harness on a GPU against known numbers, and measure what one sweep row costs.

    PYTHONPATH=. python3 validation/harness_check.py [--out FILE.json]

For a few shapes (cuBLAS fp16 GEMMs from 256^3 to 4096^3, one of our kernels, one cuDNN conv) prints the
harness' device time (median, p10, p90, launches per graph, replays), the summed CUPTI kernel time of
one call from the profiler, the host overhead of one eager call, and the wall time the harness spent
on the row; then back-to-back eager calls timed with events (which measure the host, not the GPU),
the spread between budgets, and the cost of one profiler pass over a chunk of calls.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation import shapesets as S  # noqa: E402
from validation.sweep import job_from_shape  # noqa: E402


def _row(runner, job, budget_s=None):
    if budget_s is not None:
        runner.budget_s = budget_s
    t0 = time.perf_counter()
    call = runner.build(job)
    t1 = time.perf_counter()
    names = runner.kernel_names([call])[0] if job.backend != "own" else None
    t2 = time.perf_counter()
    res = runner.time_call(call)
    t3 = time.perf_counter()
    res.update(build_s=t1 - t0, profile_s=t2 - t1, time_s=t3 - t2, job=f"{job.backend} {job.kernel} "
               f"{job.dtype} {job.shape}")
    if names is not None:
        res.update(kernel=names.kernel, kernel_us_cupti=names.kernel_us_median)
    flops = S.gemm_flops(job.shape_dict) if job.kind == "gemm" else S.conv_flops(job.shape_dict)
    res["tflops"] = flops / res["latency_us_median"] / 1e6
    print(json.dumps(res), flush=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from validation.sweep_gpu import Runner
    from wavemodel.hardware.profiler import profile_calls

    runner = Runner(budget_s=0.1)
    torch = runner.torch
    out = {"device": torch.cuda.get_device_name(0), "l2_bytes": runner.l2_bytes, "rows": []}
    g = lambda dt, m, n, k, b=1: job_from_shape("gemm", "cublas", "", S.gemm("check", dt, m, n, k, b))  # noqa: E731
    jobs = [g("fp16", 256, 256, 256), g("fp16", 1024, 1024, 1024), g("fp16", 4096, 4096, 4096),
            g("fp32", 4096, 4096, 4096), g("tf32", 4096, 4096, 4096), g("fp8", 4096, 4096, 4096),
            g("fp16", 1, 4096, 4096), g("fp16", 4095, 4095, 4095), g("fp16", 512, 512, 64, 96),
            job_from_shape("conv", "cudnn", "", S.conv("check", 32, 64, 56, 64, 3, 1, 1))]
    try:
        import cupy  # noqa: F401

        from wavemodel.hardware.kernels import KERNELS

        for name in ("tc_f16_128x128", "simt_f32_128x128", "conv_f16_128x128"):
            if name in KERNELS:
                kind = KERNELS[name].kind
                if kind == "conv":
                    jobs.append(job_from_shape("conv", "own", name, S.conv("check", 32, 64, 56, 64, 3, 1, 1)))
                else:
                    dt = KERNELS[name].dtype
                    jobs.append(job_from_shape("gemm", "own", name, S.gemm("check", dt, 4096, 4096, 4096)))
                    jobs.append(job_from_shape("gemm", "own", name, S.gemm("check", dt, 256, 256, 256)))
    except Exception as e:  # noqa: BLE001
        print(f"own kernels not checked: {type(e).__name__}: {e}", flush=True)
    for job in jobs:
        try:
            out["rows"].append(_row(runner, job, 0.02))
        except Exception as e:  # noqa: BLE001
            print(f"FAILED {job}: {type(e).__name__}: {e}", flush=True)
            out["rows"].append({"job": str(job), "error": f"{type(e).__name__}: {e}"})
    # budget sensitivity on the 4096^3 fp16 GEMM
    out["budget"] = {str(b): _row(runner, jobs[2], b)["latency_us_median"] for b in (0.02, 0.1, 0.25)}
    # back-to-back eager calls timed with events: the host, not the GPU
    a = torch.randn(256, 256, device="cuda", dtype=torch.float16)
    torch.mm(a, a)
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(200):
        torch.mm(a, a)
    e1.record()
    torch.cuda.synchronize()
    out["eager_back_to_back_us_256"] = e0.elapsed_time(e1) * 1e3 / 200
    # one profiler pass over 32 small calls
    calls = [runner.build(g("fp16", 64 * (i + 1), 512, 512)) for i in range(32)]
    for c in calls:
        c.launch(0)
    t0 = time.perf_counter()
    profile_calls([(lambda c=c: c.launch(0)) for c in calls])
    out["profiler_pass_32_calls_s"] = time.perf_counter() - t0
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=1), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
