"""The DRAM rates a streaming kernel reaches on this GPU: read, write and copy, as fractions of the
catalogue's DRAM bandwidth.

Three grid-stride kernels over 16-byte vectors: one reads a buffer and keeps a per-thread sum (one
float per thread is written), one writes a buffer, one copies a buffer to another. The buffer is far
larger than the L2, so every byte comes from or goes to DRAM. Each kernel is timed as the sweeps time
ours (``time_device``: CUDA-graph replays between CUDA events) at several grid sizes, and the fastest
grid is kept. The read fraction is what ``bandwidth_efficiency`` stands for in the model: the share of
the DRAM bandwidth a kernel's streams reach.

Usage (on a GPU): PYTHONPATH=. python validation/dram_probe.py --out DIR
Writes DIR/dram_probe.csv and DIR/dram_probe_env.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BUFFER_BYTES = 2 << 30
THREADS = 256
BLOCKS_PER_SM = (4, 8, 16, 32)
SOURCE = r"""
extern "C" __global__ void rd(const float4* __restrict__ x, long long n, float* __restrict__ out) {
    float s = 0.f;
    const long long step = (long long)gridDim.x * blockDim.x;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += step) {
        float4 v = x[i];
        s += v.x + v.y + v.z + v.w;
    }
    out[blockIdx.x * blockDim.x + threadIdx.x] = s;
}
extern "C" __global__ void wr(float4* __restrict__ y, long long n) {
    float4 v = make_float4(1.f, 2.f, 3.f, 4.f);
    const long long step = (long long)gridDim.x * blockDim.x;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += step)
        y[i] = v;
}
extern "C" __global__ void cp(const float4* __restrict__ x, float4* __restrict__ y, long long n) {
    const long long step = (long long)gridDim.x * blockDim.x;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += step)
        y[i] = x[i];
}
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    import cupy

    from wavemodel.hardware.device import environment, local_gpu_spec
    from wavemodel.hardware.timing import time_device

    spec = local_gpu_spec()
    mod = cupy.RawModule(code=SOURCE, backend="nvrtc")
    rd, wr, cp = (mod.get_function(n) for n in ("rd", "wr", "cp"))
    n = BUFFER_BYTES // 16
    x = cupy.random.default_rng(0).standard_normal(BUFFER_BYTES // 4, dtype=cupy.float32)
    y = cupy.empty_like(x)
    sms = cupy.cuda.Device().attributes["MultiProcessorCount"]
    out = cupy.empty(sms * max(BLOCKS_PER_SM) * THREADS, dtype=cupy.float32)
    nn = cupy.int64(n)
    kernels = {
        "read": (lambda g: rd((g,), (THREADS,), (x, nn, out)), BUFFER_BYTES),
        "write": (lambda g: wr((g,), (THREADS,), (y, nn)), BUFFER_BYTES),
        "copy": (lambda g: cp((g,), (THREADS,), (x, y, nn)), 2 * BUFFER_BYTES),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, (launch, moved) in kernels.items():
        for per_sm in BLOCKS_PER_SM:
            grid = sms * per_sm
            t = time_device(lambda _i, g=grid, f=launch: f(g), framework="cupy", budget_s=0.2)
            rate = moved / t.median_s
            rows.append(dict(kernel=name, blocks_per_sm=per_sm, bytes=moved,
                             median_us=round(t.median_s * 1e6, 3),
                             p10_us=round(t.p10_s * 1e6, 3), p90_us=round(t.p90_s * 1e6, 3),
                             bytes_per_s=f"{rate:.4e}",
                             fraction_of_catalogue=round(rate / spec.dram_bandwidth_bytes_per_s, 4)))
            print(f"{name} {per_sm}/SM: {rate / 1e12:.3f} TB/s", file=sys.stderr, flush=True)
    with open(args.out / "dram_probe.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    env = environment(" ".join(sys.argv), buffer_bytes=BUFFER_BYTES, threads=THREADS,
                      catalogue_dram_bytes_per_s=spec.dram_bandwidth_bytes_per_s)
    (args.out / "dram_probe_env.json").write_text(json.dumps(env, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
