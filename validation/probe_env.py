"""First look at a device: versions, graph capture of cupy/torch GEMMs, two ceilings (copy, big GEMM).

Usage (on a GPU): PYTHONPATH=. python validation/probe_env.py --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def _graph_time_torch(torch, fn, launches=20, replays=10):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(launches):
            fn()
    g.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3 / launches)
    times.sort()
    return times[len(times) // 2]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    import cupy
    import torch

    from wavemodel.hardware.device import environment

    out = {"env": environment()}
    # torch graph timing of GEMMs
    res = {}
    for n in (256, 1024, 4096, 8192):
        a = torch.randn(n, n, device="cuda", dtype=torch.float16)
        b = torch.randn(n, n, device="cuda", dtype=torch.float16)
        t = _graph_time_torch(torch, lambda a=a, b=b: torch.mm(a, b))
        res[f"torch_fp16_{n}"] = dict(latency_us=t * 1e6, tflops=2 * n**3 / t / 1e12)
    # host cost per Python call
    a = torch.randn(256, 256, device="cuda", dtype=torch.float16)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(2000):
        torch.mm(a, a)
    torch.cuda.synchronize()
    res["torch_host_us_per_call_256"] = (time.perf_counter() - t0) / 2000 * 1e6
    # copy bandwidth
    x = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    t = _graph_time_torch(torch, lambda: y.copy_(x), launches=5)
    res["copy_GBps_read_plus_write"] = 2 * x.numel() / t / 1e9
    # cupy capture of cupy.matmul on a cupy stream
    try:
        ca = cupy.random.standard_normal((4096, 4096), dtype=cupy.float32).astype(cupy.float16)
        stream = cupy.cuda.Stream(non_blocking=True)
        with stream:
            cupy.matmul(ca, ca)
            stream.begin_capture()
            for _ in range(10):
                cupy.matmul(ca, ca)
            graph = stream.end_capture()
            graph.launch()
            stream.synchronize()
            e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
            e0.record(stream)
            graph.launch(stream)
            e1.record(stream)
            e1.synchronize()
        ms = cupy.cuda.get_elapsed_time(e0, e1) / 10
        res["cupy_graph_fp16_4096"] = dict(latency_us=ms * 1e3, tflops=2 * 4096**3 / (ms / 1e3) / 1e12)
    except Exception as e:  # noqa: BLE001 - a probe reports what fails
        res["cupy_graph_fp16_4096"] = f"FAILED {type(e).__name__}: {e}"
    out["results"] = res
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "probe_env.json"), "w") as f:
        json.dump(out, f, indent=2, default=str)
    print(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
