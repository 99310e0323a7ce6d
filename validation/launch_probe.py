"""What one kernel of a CUDA graph costs beyond its CTAs' own run time, as the number of SMs it runs on grows.

A probe kernel whose CTAs each hold one SM (dynamic shared memory past half the SM's) spins on
``%globaltimer`` for a fixed time and then, optionally, stores a fixed number of bytes. Its CTAs do the
same work however many there are, so any growth of the per-call time with the CTA count is the cost of
starting and finishing a kernel on that many SMs, not of the work. Two measurements per point:

1. ``launch_probe.csv``: the per-call device time as the sweeps time it (``time_device``: CUDA-graph
   replays between CUDA events), for 1 to 132 CTAs (one per SM) and for two and three waves;
2. ``launch_gaps.csv``: a graph of ``--launches`` traced launches back to back; per launch, the
   ``%globaltimer`` (ns) of its first CTA start, last CTA start and last CTA end, and the SMs used.
   The gap between one launch's last CTA end and the next one's first CTA start is the kernel
   boundary: the previous kernel's completion and the next one's launch.

None of this touches the datasets; the model's fixed costs are read against it
(validation/data/h100-sxm/launch_probe/README.md).

Usage (on a GPU): PYTHONPATH=. python validation/launch_probe.py --out DIR
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CTAS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 132)
SPIN_NS = (0, 2000)
STORE_BYTES = (0, 16384)           # per CTA: a 128 x 64 fp16 output tile
THREADS = 128
WAVES = (2, 3)                     # multi-wave points: this many times the SM count
FIELDS = ("ctas", "sms", "spin_ns", "store_bytes_per_cta", "median_us", "p10_us", "p90_us",
          "launches_per_graph", "reps")
GAP_FIELDS = ("ctas", "spin_ns", "store_bytes_per_cta", "launch", "sms", "first_start_ns",
              "last_start_ns", "last_end_ns", "gap_to_next_ns")

SOURCE = r"""
extern "C" __global__ void probe(unsigned long long spin_ns, float4* out, int vec_per_cta,
                                 unsigned long long* trace) {
    extern __shared__ float4 hold[];            // only sized, to keep one CTA per SM
    unsigned long long t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    if (spin_ns) {
        do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); } while (t - t0 < spin_ns);
    }
    float4 v = make_float4(threadIdx.x, blockIdx.x, 1.f, 2.f);
    for (int i = threadIdx.x; i < vec_per_cta; i += blockDim.x)
        out[(size_t)blockIdx.x * vec_per_cta + i] = v;
    if (trace) {
        __syncthreads();
        if (threadIdx.x == 0) {
            unsigned int sm;
            asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
            asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
            trace[3 * blockIdx.x] = t0;
            trace[3 * blockIdx.x + 1] = t;
            trace[3 * blockIdx.x + 2] = sm;
        }
    }
}
"""


def build():
    import cupy

    fn = cupy.RawKernel(SOURCE, "probe", backend="nvrtc")
    fn.compile()
    dev = cupy.cuda.Device()
    smem_per_sm = dev.attributes["MaxSharedMemoryPerMultiprocessor"]
    smem = smem_per_sm // 2 + 8192                # past half the SM: one CTA per SM
    fn.max_dynamic_shared_size_bytes = smem
    return fn, smem, dev.attributes["MultiProcessorCount"]


def timed(fn, smem: int, ctas: int, spin_ns: int, store_bytes: int):
    import cupy

    from wavemodel.hardware.timing import time_device

    vec = store_bytes // 16
    out = cupy.empty(max(1, ctas * vec) * 4, dtype=cupy.float32)
    null = cupy.uint64(0)

    def launch(_i):
        fn((ctas,), (THREADS,), (cupy.uint64(spin_ns), out, cupy.int32(vec), null), shared_mem=smem)
    return time_device(launch, framework="cupy", budget_s=0.03)


def traced(fn, smem: int, ctas: int, spin_ns: int, store_bytes: int, launches: int) -> list[dict]:
    import cupy
    import numpy as np

    vec = store_bytes // 16
    out = cupy.empty(max(1, ctas * vec) * 4, dtype=cupy.float32)
    trace = cupy.zeros((launches, ctas, 3), dtype=cupy.uint64)
    stream = cupy.cuda.Stream(non_blocking=True)
    args = lambda i: (cupy.uint64(spin_ns), out, cupy.int32(vec), trace[i])  # noqa: E731
    with stream:
        for i in range(2):                        # warm-up, outside the graph
            fn((ctas,), (THREADS,), args(i), shared_mem=smem)
        stream.begin_capture()
        for i in range(launches):
            fn((ctas,), (THREADS,), args(i), shared_mem=smem)
        graph = stream.end_capture()
        graph.upload(stream)
        for _ in range(3):                        # the last replay is kept
            graph.launch(stream)
        stream.synchronize()
    t = cupy.asnumpy(trace).astype(np.int64)
    rows = []
    for i in range(launches):
        start, end, sm = t[i, :, 0], t[i, :, 1], t[i, :, 2]
        nxt = int(t[i + 1, :, 0].min() - end.max()) if i + 1 < launches else ""
        rows.append(dict(ctas=ctas, spin_ns=spin_ns, store_bytes_per_cta=store_bytes, launch=i,
                         sms=len(set(sm.tolist())), first_start_ns=int(start.min()),
                         last_start_ns=int(start.max()), last_end_ns=int(end.max()), gap_to_next_ns=nxt))
    base = rows[0]["first_start_ns"]
    for r in rows:                                # relative to the graph's first CTA start
        for k in ("first_start_ns", "last_start_ns", "last_end_ns"):
            r[k] -= base
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--launches", type=int, default=16, help="traced launches per graph")
    args = ap.parse_args(argv)
    from wavemodel.hardware.device import environment

    fn, smem, sm_count = build()
    args.out.mkdir(parents=True, exist_ok=True)
    points = [c for c in CTAS if c <= sm_count] + [w * sm_count for w in WAVES]
    with open(args.out / "launch_probe.csv", "w", newline="") as f, \
            open(args.out / "launch_gaps.csv", "w", newline="") as g:
        w = csv.DictWriter(f, fieldnames=FIELDS, lineterminator="\n")
        wg = csv.DictWriter(g, fieldnames=GAP_FIELDS, lineterminator="\n")
        w.writeheader()
        wg.writeheader()
        for spin in SPIN_NS:
            for store in STORE_BYTES:
                for ctas in points:
                    gaps = traced(fn, smem, ctas, spin, store, args.launches)
                    t = timed(fn, smem, ctas, spin, store)
                    w.writerow(dict(ctas=ctas, sms=gaps[-1]["sms"], spin_ns=spin, store_bytes_per_cta=store,
                                    median_us=round(t.median_s * 1e6, 4), p10_us=round(t.p10_s * 1e6, 4),
                                    p90_us=round(t.p90_s * 1e6, 4), launches_per_graph=t.launches_per_graph,
                                    reps=t.reps))
                    wg.writerows(gaps)
                    f.flush()
                    g.flush()
                    print(f"spin {spin} ns, store {store} B, {ctas} CTAs: {t.median_s * 1e6:.3f} us",
                          file=sys.stderr, flush=True)
    env = environment(" ".join(sys.argv), threads_per_cta=THREADS, dynamic_smem_bytes=smem,
                      launches_per_traced_graph=args.launches)
    (args.out / "launch_probe_env.json").write_text(json.dumps(env, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
