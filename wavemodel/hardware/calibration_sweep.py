"""Calibration sweep of ``wavemodel calibrate --measure``: a fixed, representative shape set timed on
the local GPU within a wall-clock budget, written as dataset CSVs (DESIGN.md section 5).

The set covers what the fit needs: cuBLAS GEMMs in every regime (squares, a staircase along N, split-K
shapes, LLM decode and prefill layers, batched attention, random aligned and misaligned shapes) in
fp16, bf16, fp32, tf32 and fp8 where the card has it; cuDNN NHWC fp16 convs (ResNet-50 and VGG-16
layers, an output-channel staircase, random convs) when PyTorch is there; and staircases along N, M,
K plus random shapes for each of our kernels when CuPy is there. Shapes are deterministic (seeded).
``plan`` thins every category evenly until the estimated time fits the budget and interleaves the
categories, so a sweep that the budget stops early still covers all of them; ``measure`` stops
at the budget whatever the estimate said.

Every row is timed by ``wavemodel.hardware.timing.time_device`` (CUDA-graph replays, inputs rotated
past 2x L2) through ``wavemodel.hardware.calls.Runner``; library rows carry the profiler's kernel
names. All rows are calibration rows (``set`` = calibration). torch and CuPy are imported inside
functions only.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..datasets import CONV_COLUMNS, GEMM_COLUMNS, SHAPE_COLUMNS
from ..gpus import GPUSpec

LATENCY = ("latency_us_median", "latency_us_p10", "latency_us_p90", "reps")
EXTRA = ("set", "group", "pass", "host_overhead_us", "launches_per_graph", "rotation_sets", "kernel_us_cupti",
         "kernel_launch")
HEADERS = {kind: ("kernel", "backend", "dtype", *cols, *LATENCY, *EXTRA)
           for kind, cols in (("gemm", GEMM_COLUMNS), ("conv", CONV_COLUMNS))}
FILES = {("gemm", "cublas"): "gemm_cublas.csv", ("conv", "cudnn"): "conv_cudnn.csv",
         ("gemm", "own"): "gemm_own.csv", ("conv", "own"): "conv_own.csv"}
ROW_BUDGET_S = 0.02            # time_device budget of one row (as the validation sweeps)
CHUNK = 16                     # rows per profiler pass
BUDGET_SHARE = 0.9             # the plan's estimate fills at most this share of the budget
SEED = 20261201

# cost model of the estimate, seconds (validation/sweep.py's, measured on an H100)
ROW_OVERHEAD_S = 0.010
CUDNN_AUTOTUNE_S = 0.045
OWN_KERNEL_SETUP_S = 1.6
PROCESS_SETUP_S = 3.0
PEAK_FLOPS = {"fp16": 989e12, "bf16": 989e12, "fp8": 1979e12, "tf32": 494e12, "fp32": 67e12}
IN_BYTES = {"fp16": 2, "bf16": 2, "fp8": 1, "tf32": 4, "fp32": 4}
MAX_FLOPS = {"fp16": 1.5e12, "bf16": 1.5e12, "fp8": 2.5e12, "tf32": 0.6e12, "fp32": 0.1e12}


class NoDevice(Exception):  # noqa: N818 - the reason the sweep cannot run here
    """No usable GPU stack (CuPy or PyTorch with CUDA) on this machine."""


@dataclass(frozen=True)
class Job:
    """One row to measure (the interface ``calls.Runner`` expects)."""

    kind: str                  # "gemm" | "conv"
    backend: str               # "own" | "cublas" | "cudnn"
    kernel: str                # our kernel's name for "own", "" for a library
    dtype: str
    shape: tuple[int, ...]     # in SHAPE_COLUMNS[kind] order
    group: str

    @property
    def shape_dict(self) -> dict[str, int]:
        return dict(zip(SHAPE_COLUMNS[self.kind], self.shape, strict=True))


def gemm(group: str, dtype: str, m: int, n: int, k: int, batch: int = 1, backend: str = "cublas",
         kernel: str = "") -> Job:
    return Job("gemm", backend, kernel, dtype, (int(batch), int(m), int(n), int(k)), group)


def conv(group: str, n: int, c: int, h: int, k: int, r: int, stride: int, padding: int,
         backend: str = "cudnn", kernel: str = "") -> Job:
    return Job("conv", backend, kernel, "fp16", (int(n), int(c), int(h), int(h), int(k), int(r), int(r),
                                                 int(stride), int(padding)), group)


# ------------------------------------------------------------------------------------------- shapes


LLM_NK = ((4096, 4096), (11008, 4096), (4096, 11008), (12288, 4096), (8192, 8192), (28672, 8192))
ATTENTION = ((96, 512, 64), (384, 512, 64), (64, 2048, 128), (32, 384, 64))   # (batch*heads, seq, head)
RESNET50 = (                                                              # (c, h, k, r, stride, padding)
    (3, 224, 64, 7, 2, 3), (64, 56, 64, 1, 1, 0), (64, 56, 64, 3, 1, 1), (64, 56, 256, 1, 1, 0),
    (256, 56, 64, 1, 1, 0), (256, 56, 128, 1, 1, 0), (128, 56, 128, 3, 2, 1), (128, 28, 512, 1, 1, 0),
    (256, 56, 512, 1, 2, 0), (512, 28, 128, 1, 1, 0), (128, 28, 128, 3, 1, 1), (512, 28, 256, 1, 1, 0),
    (256, 28, 256, 3, 2, 1), (256, 14, 1024, 1, 1, 0), (512, 28, 1024, 1, 2, 0), (1024, 14, 256, 1, 1, 0),
    (256, 14, 256, 3, 1, 1), (1024, 14, 512, 1, 1, 0), (512, 14, 512, 3, 2, 1), (512, 7, 2048, 1, 1, 0),
    (1024, 14, 2048, 1, 2, 0), (2048, 7, 512, 1, 1, 0), (512, 7, 512, 3, 1, 1),
)
VGG16 = ((64, 224, 64), (64, 112, 128), (128, 112, 128), (128, 56, 256), (256, 56, 256), (256, 28, 512),
         (512, 28, 512), (512, 14, 512))                                      # (c, h, k), 3x3, pad 1
CONV_STAIRS = ((64, 56, 256, 3, 1, 1), (256, 14, 1024, 1, 1, 0))             # (c, h, k_max, r, stride, pad)


def _logu(rng, lo: float, hi: float) -> int:
    return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def random_gemms(rng, count: int, dtype: str, *, align: int = 8, misaligned: bool = False, hi: int = 16384,
                 max_flops: float | None = None, backend: str = "cublas", kernel: str = "") -> list[Job]:
    """``count`` log-uniform shapes under ``max_flops``: multiples of ``align``, or (misaligned) with
    at least one dimension that is not a multiple of 8."""
    out, limit = [], max_flops if max_flops is not None else MAX_FLOPS[dtype]
    group = "random_misaligned" if misaligned else "random_aligned"
    while len(out) < count:
        m, n, k = (_logu(rng, 8, hi) for _ in range(3))
        if misaligned:
            if m % 8 == 0 and n % 8 == 0 and k % 8 == 0:
                k += 1 + int(rng.integers(7))
        else:
            m, n, k = (max(align, v // align * align) for v in (m, n, k))
        if 2.0 * m * n * k <= limit:
            out.append(gemm(group, dtype, m, n, k, backend=backend, kernel=kernel))
    return out


def random_batched(rng, count: int, dtype: str) -> list[Job]:
    out = []
    while len(out) < count:
        b = _logu(rng, 2, 256)
        m, n, k = (max(8, _logu(rng, 16, 4096) // 8 * 8) for _ in range(3))
        if 2.0 * b * m * n * k <= MAX_FLOPS[dtype]:
            out.append(gemm("random_batched", dtype, m, n, k, batch=b))
    return out


def random_convs(rng, count: int, backend: str = "cudnn", kernel: str = "", max_flops: float = 0.2e12
                 ) -> list[Job]:
    out = []
    while len(out) < count:
        n = int(rng.choice([1, 2, 4, 8, 16, 32, 64]))
        h = int(rng.choice([7, 14, 28, 56, 112]))
        c, k = max(8, _logu(rng, 8, 1024) // 8 * 8), max(8, _logu(rng, 8, 2048) // 8 * 8)
        r, stride = int(rng.choice([1, 3])), int(rng.choice([1, 1, 2]))
        p = (h + 2 * (r // 2) - r) // stride + 1
        if 2.0 * n * p * p * k * c * r * r <= max_flops:
            out.append(conv("random", n, c, h, k, r, stride, r // 2, backend, kernel))
    return out


def has_fp8(gpu: GPUSpec) -> bool:
    """fp8 GEMMs (torch._scaled_mm) need sm_89 or later and an fp8 tensor-core rate."""
    return gpu.peak_flops_per_s.get("fp8", 0) > 0 and int(gpu.arch.split("_")[1]) >= 89


def cublas_jobs(gpu: GPUSpec, seed: int = SEED) -> list[Job]:
    """cuBLAS GEMMs across the regimes and dtypes."""
    rng = np.random.default_rng(seed)
    jobs = [gemm("square", "fp16", s, s, s) for s in (256, 512, 1024, 2048, 3072, 4096, 6144, 8192)]
    jobs += [gemm("stair_n", "fp16", 4096, n, 4096) for n in range(256, 8193, 256)]
    jobs += [gemm("stair_k_small", "fp16", 1024, 1024, k) for k in range(512, 8193, 512)]   # split-K
    jobs += [gemm("decode", "fp16", m, n, k) for m in (1, 8, 32, 128) for n, k in LLM_NK]
    jobs += [gemm("llm_prefill", "fp16", t, n, k) for t in (512, 2048) for n, k in LLM_NK]
    for bh, s, d in ATTENTION:
        jobs += [gemm("attention_qk", "fp16", s, s, d, bh), gemm("attention_pv", "fp16", s, d, s, bh)]
    jobs += random_gemms(rng, 200, "fp16") + random_gemms(rng, 80, "fp16", misaligned=True)
    jobs += random_batched(rng, 40, "fp16")
    jobs += [gemm("square", "bf16", s, s, s) for s in (512, 1024, 2048, 4096, 8192)]
    jobs += [gemm("decode", "bf16", m, n, k) for m in (1, 32) for n, k in LLM_NK]
    jobs += random_gemms(rng, 80, "bf16") + random_gemms(rng, 20, "bf16", misaligned=True)
    for dtype, side in (("fp32", 1024), ("tf32", 2048)):
        jobs += [gemm("square", dtype, s, s, s) for s in (256, 512, 1024, 2048, 3072)
                 if 2.0 * s**3 <= 2 * MAX_FLOPS[dtype]]
        jobs += [gemm("stair_n", dtype, side, n, side) for n in range(256, 4097, 256)]
        jobs += random_gemms(rng, 60, dtype) + random_gemms(rng, 20, dtype, misaligned=True)
    if has_fp8(gpu):
        jobs += [gemm("square", "fp8", s, s, s) for s in (512, 1024, 2048, 4096, 8192)]
        jobs += [gemm("stair_n", "fp8", 4096, n, 4096) for n in range(512, 8193, 512)]
        jobs += random_gemms(rng, 60, "fp8", align=16)
    return jobs


def cudnn_jobs(seed: int = SEED) -> list[Job]:
    """NHWC fp16 convs: ResNet-50 (batch 32) and VGG-16 (batch 8) layers, staircases, random."""
    rng = np.random.default_rng(seed + 1)
    jobs = [conv("resnet50", 32, c, h, k, r, st, pad) for c, h, k, r, st, pad in RESNET50]
    jobs += [conv("vgg16", 8, c, h, k, 3, 1, 1) for c, h, k in VGG16]
    for c, h, kmax, r, st, pad in CONV_STAIRS:
        step = max(8, kmax // 16 // 8 * 8)
        jobs += [conv("stair_k", 32, c, h, k, r, st, pad) for k in range(step, kmax + 1, step)]
    return jobs + random_convs(rng, 120)


def own_gemm_jobs(name: str, cfg, gpu: GPUSpec, seed: int = SEED) -> list[Job]:
    """Staircases along N, M and K crossing several wave boundaries, and random shapes, for one kernel."""
    dtype = cfg.dtypes[0]
    align = max(cfg.alignment_elements, 8 if dtype == "fp16" else 1)
    wave = gpu.sm_count * cfg.occupancy(gpu).blocks_per_sm
    k_fixed = 256 if dtype == "fp32" else 1024
    tm, tn = cfg.tile_m, cfg.tile_n
    step_n, step_m = max(align, tn // 4), max(1, tm // 2)
    m = tm * max(1, math.ceil(5 * wave / math.ceil(24 * step_n / tn)))
    n = max(align, tn * max(1, math.ceil(5 * wave / math.ceil(16 * step_m / tm))) // align * align)
    side = math.ceil(math.sqrt(1.5 * wave))
    step_k = max(align, cfg.tile_k // 2, 2048 // 12 // 8 * 8)
    g = lambda grp, mm, nn, kk: gemm(grp, dtype, mm, nn, kk, backend="own", kernel=name)  # noqa: E731
    jobs = [g("stair_n", m, j * step_n, k_fixed) for j in range(1, 25)]
    jobs += [g("stair_m", j * step_m, n, k_fixed) for j in range(1, 17)]
    n_k = max(align, side * tn // align * align)
    jobs += [g("stair_k", side * tm, n_k, j * step_k) for j in range(1, 13)]
    rng = np.random.default_rng([seed, sum(map(ord, name))])
    flops = 0.04e12 if cfg.math == "simt" else 0.4e12
    return jobs + random_gemms(rng, 40, dtype, align=align, hi=8192, max_flops=flops, backend="own",
                               kernel=name)


def own_conv_jobs(name: str, seed: int = SEED) -> list[Job]:
    rng = np.random.default_rng([seed, sum(map(ord, name))])
    jobs = [conv("resnet50", 32, c, h, k, r, st, pad, "own", name) for c, h, k, r, st, pad in RESNET50
            if c % 8 == 0 and r in (1, 3)]
    c, h, kmax, r, st, pad = CONV_STAIRS[0]
    jobs += [conv("stair_k", 32, c, h, k, r, st, pad, "own", name) for k in range(16, kmax + 1, 16)]
    return jobs + random_convs(rng, 40, "own", name)


def own_jobs(configs: dict, gpu: GPUSpec) -> list[Job]:
    out = []
    for name, cfg in sorted(configs.items()):
        out += own_conv_jobs(name) if cfg.kind == "conv" else own_gemm_jobs(name, cfg, gpu)
    return out


# --------------------------------------------------------------------------------------------- plan


def call_time_s(job: Job) -> float:
    """Roofline guess of one call's device time (for the estimate only)."""
    d = job.shape_dict
    if job.kind == "gemm":
        flops = 2.0 * d["batch"] * d["m"] * d["n"] * d["k"]
        io = d["batch"] * (d["m"] * d["k"] + d["k"] * d["n"] + d["m"] * d["n"]) * IN_BYTES[job.dtype]
    else:
        p = (d["h"] + 2 * d["padding"] - d["r"]) // d["stride"] + 1
        flops = 2.0 * d["n"] * p * p * d["k"] * d["c"] * d["r"] * d["s"]
        io = 2 * (d["n"] * d["h"] * d["w"] * d["c"] + d["k"] * d["c"] * d["r"] * d["s"]
                  + d["n"] * p * p * d["k"])
    eff = 0.35 if job.backend == "own" else 0.7
    return 3e-6 + max(flops / (PEAK_FLOPS[job.dtype] * eff), io / 2.4e12)


def row_cost_s(job: Job, budget_s: float = ROW_BUDGET_S) -> float:
    t = call_time_s(job)
    replay = max(1.5e-3, 5 * t)
    cost = ROW_OVERHEAD_S + max(budget_s, 5 * replay) + 2 * replay + 10 * t
    return cost + (CUDNN_AUTOTUNE_S if job.backend == "cudnn" else 0.0)


def estimate_s(jobs: Sequence[Job]) -> float:
    kernels = {j.kernel for j in jobs if j.backend == "own"}
    return PROCESS_SETUP_S + OWN_KERNEL_SETUP_S * len(kernels) + sum(row_cost_s(j) for j in jobs)


def spread(items: Sequence, n: int) -> list:
    """``n`` items evenly spread over ``items`` (deterministic)."""
    if n >= len(items):
        return list(items)
    return [items[int(i * len(items) / n)] for i in range(max(n, 0))]


def interleave(categories: Sequence[Sequence[Job]], chunk: int = CHUNK) -> list[Job]:
    """Chunks of ``chunk`` jobs taken from each category in turn (so an early stop covers them all)."""
    out, pos = [], [0] * len(categories)
    while any(p < len(c) for p, c in zip(pos, categories, strict=True)):
        for i, c in enumerate(categories):
            out += c[pos[i]:pos[i] + chunk]
            pos[i] += chunk
    return out


def plan(categories: Sequence[Sequence[Job]], budget_s: float) -> list[Job]:
    """The categories thinned by one common fraction until the estimate fits ``BUDGET_SHARE`` of the
    budget (each keeps at least one row), then interleaved."""
    cats = [list(c) for c in categories if c]
    total = estimate_s([j for c in cats for j in c])
    target = BUDGET_SHARE * budget_s
    if total > target:
        fixed = PROCESS_SETUP_S + OWN_KERNEL_SETUP_S * len({j.kernel for c in cats for j in c
                                                             if j.backend == "own"})
        frac = max(0.0, target - fixed) / max(total - fixed, 1e-9)
        cats = [spread(c, max(1, int(len(c) * frac))) for c in cats]
    return interleave(cats)


# ------------------------------------------------------------------------------------------ writing


def fmt(v) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def make_row(job: Job, result: dict) -> dict:
    """One CSV row (every column of HEADERS[job.kind]) of a measured job."""
    row = {"kernel": job.kernel if job.backend == "own" else result.get("kernel", ""), "backend": job.backend,
           "dtype": job.dtype, **job.shape_dict, "set": "calibration", "group": job.group, "pass": 1}
    return {c: fmt(row[c] if c in row else result.get(c, "")) for c in HEADERS[job.kind]}


class Sink:
    """Dataset CSVs in one folder, opened on their first row, one row appended (and flushed) at a time."""

    def __init__(self, folder: Path):
        self.folder, self.files, self.counts = Path(folder), {}, {}

    def write(self, job: Job, result: dict) -> None:
        name = FILES[(job.kind, job.backend)]
        if name not in self.files:
            f = open(self.folder / name, "w", newline="")  # noqa: SIM115 - closed in close()
            w = csv.DictWriter(f, fieldnames=HEADERS[job.kind], lineterminator="\n")
            w.writeheader()
            self.files[name] = (f, w)
        f, w = self.files[name]
        w.writerow(make_row(job, result))
        f.flush()
        self.counts[name] = self.counts.get(name, 0) + 1

    def close(self) -> None:
        for f, _ in self.files.values():
            f.close()


def data_dir_for(profile_path) -> Path:
    """Where ``--measure`` writes its CSVs: ``<profile stem>_data/`` beside the profile."""
    p = Path(profile_path)
    return p.with_name(p.stem + "_data")


# ------------------------------------------------------------------------------------------ running


def _usable(module: str) -> bool:
    if importlib.util.find_spec(module) is None:
        return False
    try:
        if module == "torch":
            import torch

            return bool(torch.cuda.is_available())
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - any failure means not usable
        return False


def available() -> tuple[bool, bool]:
    """(PyTorch reaches a GPU, CuPy reaches a GPU)."""
    return _usable("torch"), _usable("cupy")


def local_gpu() -> GPUSpec:
    """The local device's GPUSpec: through CuPy, else matched by the name PyTorch reports."""
    from ..gpus import catalogue, gpu, match_device_name

    try:
        return gpu("local")
    except ValueError:
        if not _usable("torch"):
            raise
    import torch

    name = torch.cuda.get_device_name(0)
    key = match_device_name(name)
    if key is None:
        raise ValueError(f"gpu: the local device {name!r} is not in the catalogue; pass --gpu NAME")
    return catalogue()[key]


def jobs_for(gpu: GPUSpec, backends: Sequence[str], *, torch_ok: bool, cupy_ok: bool,
             own_configs: Callable[[], dict] | None = None, log: Callable[[str], None] = print
             ) -> list[list[Job]]:
    """The categories of jobs this machine can run: [cuBLAS, cuDNN, own]."""
    cats = []
    for b in ("cublas", "cudnn"):
        if b in backends:
            if torch_ok:
                cats.append(cublas_jobs(gpu) if b == "cublas" else cudnn_jobs())
            else:
                log(f"{b}: skipped (needs PyTorch with CUDA)")
    if "own" in backends:
        if cupy_ok:
            from .calls import own_configs as registry_configs

            cats.append(own_jobs((own_configs or registry_configs)(), gpu))
        else:
            log("own kernels: skipped (need CuPy)")
    return cats


def measure(data_dir, gpu: GPUSpec, *, budget_s: float, backends: Sequence[str] = ("own", "cublas", "cudnn"),
            log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True), runner=None,
            clock: Callable[[], float] = time.monotonic, torch_ok: bool | None = None,
            cupy_ok: bool | None = None, own_configs: Callable[[], dict] | None = None) -> dict:
    """Run the calibration sweep into ``data_dir`` (CSVs + env.json) within ``budget_s`` seconds.

    ``runner`` (a ``calls.Runner``), ``clock`` and the availability flags are for tests; by default
    they come from the machine. Raises NoDevice when neither PyTorch nor CuPy can reach a GPU and
    ValueError when ``data_dir`` already holds dataset CSVs.
    """
    start = clock()
    data_dir = Path(data_dir)
    if torch_ok is None or cupy_ok is None:
        torch_ok, cupy_ok = available()
    if not (torch_ok or cupy_ok):
        raise NoDevice("needs an NVIDIA GPU with PyTorch (cuBLAS, cuDNN) or CuPy (our kernels)")
    existing = sorted(p.name for p in data_dir.glob("*.csv")) if data_dir.is_dir() else []
    if existing:
        raise ValueError(f"--out: {data_dir} already holds {', '.join(existing)}; remove it or choose "
                         f"another --out")
    jobs = plan(jobs_for(gpu, backends, torch_ok=torch_ok, cupy_ok=cupy_ok, own_configs=own_configs, log=log),
                budget_s)
    if not jobs:
        raise NoDevice(f"nothing to measure for {', '.join(backends)} on this machine")
    log(f"calibration sweep: {len(jobs)} rows planned (estimate {estimate_s(jobs):.0f} s, budget "
        f"{budget_s:g} s) into {data_dir}")
    if runner is None:
        from .calls import Runner

        runner = Runner(budget_s=ROW_BUDGET_S)
    data_dir.mkdir(parents=True, exist_ok=True)
    sink, failed, done, last = Sink(data_dir), [], 0, start
    stopped = False
    try:
        for i in range(0, len(jobs), CHUNK):
            if clock() - start >= budget_s:
                stopped = True
                break
            for job, result in runner.measure(jobs[i:i + CHUNK]):
                if isinstance(result, BaseException):
                    failed.append({"job": [job.backend, job.kernel, job.dtype, *job.shape],
                                   "error": f"{type(result).__name__}: {result}"[:300]})
                else:
                    sink.write(job, result)
                done += 1
                now = clock()
                if now - last > 10:
                    last = now
                    log(f"  {done}/{len(jobs)} rows, {now - start:.0f} s")
                if now - start >= budget_s:
                    stopped = True
                    break
            if stopped:
                break
    finally:
        sink.close()
    seconds = clock() - start
    summary = {"planned": len(jobs), "measured": done - len(failed), "failed": len(failed),
               "stopped_by_budget": stopped, "seconds": round(seconds, 1), "budget_s": budget_s,
               "files": dict(sink.counts)}
    log(f"calibration sweep: {summary['measured']} rows measured, {len(failed)} failed in {seconds:.0f} s"
        + (" (stopped at the budget)" if stopped else ""))
    for f in failed[:5]:
        log(f"  FAILED {f['job']}: {f['error']}")
    env = _environment(runner, summary, failed)
    for name in sink.counts:
        (data_dir / (Path(name).stem + "_env.json")).write_text(json.dumps(env, indent=2, default=str) + "\n")
    return summary


def _environment(runner, summary: dict, failed: list) -> dict:
    command = " ".join(sys.argv)
    try:
        env = runner.environment(command)
    except Exception as e:  # noqa: BLE001 - the data stays usable without it
        env = {"command": command, "environment_error": f"{type(e).__name__}: {e}"}
    env["calibration_sweep"] = {**summary, "row_budget_s": ROW_BUDGET_S, "failed_rows": failed,
                                "timing": "CUDA-graph replays timed with CUDA events "
                                          "(wavemodel.hardware.timing.time_device)"}
    return env
