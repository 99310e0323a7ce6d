"""Measured datasets: resumable CSV sweeps of device time (DESIGN.md sections 5 and 6).

    PYTHONPATH=. python3 validation/sweep.py --suite own|cublas|cudnn|all --out DIR \
        [--budget-s S] [--limit N] [--passes 2] [--dry-run]

Files under DIR (each with ``<stem>_env.json`` beside it, and ``<stem>_failed.jsonl`` for shapes that
raised):
  gemm_own.csv    our GEMM kernels (staircases along M, N, K per kernel, random shapes per family) and
                  the same shapes through cuBLAS (staircases thinned to every other point)
  conv_own.csv    our implicit-GEMM conv kernels and the same convs through cuDNN
  gemm_cublas.csv what users run through cuBLAS (validation/shapesets.py), fp16/bf16/fp32/tf32/fp8
  conv_cudnn.csv  NHWC fp16 convs through cuDNN (torch, channels_last, cudnn.benchmark=True)

Every row is one shape timed by wavemodel.hardware.timing.time_device (CUDA-graph replays, events;
inputs rotated so the working set exceeds ``--rotation-factor`` x L2). Library rows get the kernel
names of one call from the profiler (';'-joined, memsets included). Rows are appended one at a time
(flush + fsync); a rerun skips the shapes already in the file (key: backend, own kernel name, dtype,
shape, pass) and refuses a file whose header differs. ``--passes 2`` repeats a hash-chosen subset at
the end; the median / p90 relative difference between the passes (the noise floor) is printed and
stored in the env.json.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import hashlib
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation import shapesets as S  # noqa: E402

GEMM_SHAPE = ("batch", "m", "n", "k")
CONV_SHAPE = ("n", "c", "h", "w", "k", "r", "s", "stride", "padding")
LATENCY = ("latency_us_median", "latency_us_p10", "latency_us_p90", "reps")
EXTRA = ("set", "group", "pass", "host_overhead_us", "launches_per_graph", "rotation_sets", "kernel_us_cupti",
         "kernel_launch")
HEADERS = {
    "gemm": ("kernel", "backend", "dtype", *GEMM_SHAPE, *LATENCY, *EXTRA),
    "conv": ("kernel", "backend", "dtype", *CONV_SHAPE, *LATENCY, *EXTRA),
}
SHAPE_COLS = {"gemm": GEMM_SHAPE, "conv": CONV_SHAPE}
CALIBRATION_PERCENT = 40
DEFAULT_BUDGET_S = 0.02
SUITES = ("own", "cublas", "cudnn")


class SkipRow(Exception):  # noqa: N818 - a signal, not an error
    """Raised (as a result) for a row not measured now but not to be marked failed (e.g. the kernel
    failed its correctness check: a fixed kernel should be measured on the next run)."""


@dataclass(frozen=True)
class Job:
    """One row to measure. ``kernel`` is our kernel's name for backend "own", "" for a library."""

    kind: str                  # "gemm" | "conv"
    backend: str               # "own" | "cublas" | "cudnn"
    kernel: str
    dtype: str
    shape: tuple[int, ...]     # in SHAPE_COLS[kind] order
    group: str
    pass_: int = 1

    @property
    def key(self) -> tuple[str, ...]:
        return make_key(self.backend, self.kernel, self.dtype, self.shape, self.pass_)

    @property
    def shape_dict(self) -> dict:
        return dict(zip(SHAPE_COLS[self.kind], self.shape, strict=True))


def make_key(backend, kernel, dtype, shape, pass_) -> tuple[str, ...]:
    return (str(backend), str(kernel) if backend == "own" else "", str(dtype), *map(str, shape), str(pass_))


def row_key(row: dict, kind: str) -> tuple[str, ...]:
    return make_key(row["backend"], row["kernel"], row["dtype"], [row[c] for c in SHAPE_COLS[kind]],
                    row.get("pass") or 1)


def job_from_shape(kind: str, backend: str, kernel: str, shape: dict) -> Job:
    return Job(kind, backend, kernel, shape["dtype"], tuple(int(shape[c]) for c in SHAPE_COLS[kind]),
               shape.get("group", ""))


def split_of(kind: str, dtype: str, shape: Sequence[int], percent: int = CALIBRATION_PERCENT) -> str:
    """'calibration' or 'evaluation', by a stable hash of the shape (backend-independent)."""
    h = hashlib.sha256(f"{kind}|{dtype}|{'x'.join(map(str, shape))}".encode()).digest()
    return "calibration" if int.from_bytes(h[:4], "big") % 100 < percent else "evaluation"


def second_pass(jobs: Sequence[Job], fraction: float = 0.1) -> list[Job]:
    """A hash-chosen ``fraction`` of ``jobs``, as pass 2 (timed after every pass-1 row)."""
    out = []
    for j in jobs:
        h = hashlib.sha256("|".join(j.key).encode()).digest()
        if int.from_bytes(h[:4], "big") % 10000 < fraction * 10000:
            out.append(Job(j.kind, j.backend, j.kernel, j.dtype, j.shape, j.group, 2))
    return out


def spread(items: Sequence, n: int | None) -> list:
    """``n`` items evenly spread over ``items`` (deterministic), all of them if n is None."""
    if n is None or n >= len(items):
        return list(items)
    if n <= 0:
        return []
    return [items[int(i * len(items) / n)] for i in range(n)]


def dedupe(jobs: Iterable[Job]) -> list[Job]:
    seen, out = set(), []
    for j in jobs:
        if j.key not in seen:
            seen.add(j.key)
            out.append(j)
    return out


# ------------------------------------------------------------------------------------------ files


def env_path(csv_path: Path) -> Path:
    return csv_path.with_name(csv_path.stem + "_env.json")


def failed_path(csv_path: Path) -> Path:
    return csv_path.with_name(csv_path.stem + "_failed.jsonl")


def read_rows(path: Path, header: Sequence[str]) -> list[dict]:
    """Rows of an existing dataset; ValueError if its header is not ``header``."""
    if not path.exists() or path.stat().st_size == 0:
        return []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        found = next(reader, None)
        if found is None:
            return []
        if tuple(found) != tuple(header):
            raise ValueError(f"{path}: header differs from this sweep's, refusing to append\n"
                             f"  file:  {','.join(found)}\n  sweep: {','.join(header)}")
        return [dict(zip(header, r, strict=False)) for r in reader if r]


def repair_tail(path: Path) -> int:
    """Cut a partial last line (a row whose write a hard kill interrupted); returns bytes removed."""
    if not path.exists():
        return 0
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        pos = size
        while pos > 0:
            step = min(4096, pos)
            f.seek(pos - step)
            chunk = f.read(step)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                keep = pos - step + nl + 1
                break
            pos -= step
        else:
            keep = 0
        f.truncate(keep)
        return size - keep


def read_failed(path: Path) -> set[tuple[str, ...]]:
    if not path.exists():
        return set()
    out = set()
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                out.add(tuple(json.loads(line)["key"]))
    return out


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def record_env(path: Path, base_env: Callable[[], dict], params: dict, rows_before: int) -> dict:
    """Write env.json for a new dataset; for an existing one keep it and add a ``resumed`` entry."""
    if path.exists():
        with open(path) as f:
            env = json.load(f)
        now = base_env()
        env.setdefault("resumed", []).append({
            "date_utc": now.get("date_utc", _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")),
            "command": now.get("command", ""), "rows_before": rows_before, "sweep": params,
            "gpu": now.get("gpu"), "nvidia_smi": now.get("nvidia_smi")})
    else:
        env = base_env()
        env["sweep"] = params
    _write_json(path, env)
    return env


def fmt(v) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def make_row(job: Job, result: dict, header: Sequence[str]) -> dict:
    row = {"kernel": job.kernel if job.backend == "own" else result.get("kernel", ""),
           "backend": job.backend, "dtype": job.dtype, **job.shape_dict,
           "set": split_of(job.kind, job.dtype, job.shape), "group": job.group, "pass": job.pass_}
    for col in header:
        if col not in row:
            row[col] = result.get(col, "")
    return {c: fmt(row[c]) for c in header}


# ------------------------------------------------------------------------------------------ noise


def noise_floor(rows: Sequence[dict], kind: str) -> dict:
    """Median and p90 of |pass2 - pass1| / pass1 over shapes measured in both passes."""
    first, diffs = {}, []
    for r in rows:
        if str(r.get("pass", "1")) == "1":
            first[row_key(r, kind)[:-1]] = float(r["latency_us_median"])
    for r in rows:
        if str(r.get("pass", "1")) == "2":
            a = first.get(row_key(r, kind)[:-1])
            if a:
                diffs.append(abs(float(r["latency_us_median"]) - a) / a)
    if not diffs:
        return {"pairs": 0}
    diffs.sort()
    q = lambda p: diffs[min(len(diffs) - 1, int(round(p * (len(diffs) - 1))))]  # noqa: E731
    return {"pairs": len(diffs), "median_rel_diff": q(0.5), "p90_rel_diff": q(0.9), "max_rel_diff": diffs[-1]}


# ------------------------------------------------------------------------------------------ engine


def _eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s"


def run_file(path, kind: str, jobs: Sequence[Job], measure, *, base_env: Callable[[], dict], params: dict,
             log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
             fsync: bool = True, chunk: int = 32, estimate_s: Callable[[Job], float] | None = None) -> dict:
    """Measure the ``jobs`` not yet in ``path`` and append them row by row.

    ``measure(chunk_of_jobs)`` yields ``(job, result_dict_or_exception)`` for each job of the chunk; a
    result holds the latency columns (and, for a library row, ``kernel``). A job whose measurement
    raised is logged to ``<stem>_failed.jsonl`` and skipped on later runs; an exception raised by
    ``measure`` itself stops the sweep with every finished row kept.
    """
    path = Path(path)
    header = HEADERS[kind]
    read_rows(path, header)                                  # refuses a different header before any change
    cut = repair_tail(path)
    if cut:
        log(f"{path.name}: removed a partial last row ({cut} bytes) left by an interrupted run")
    existing = read_rows(path, header)
    done = {row_key(r, kind) for r in existing}
    failed = read_failed(failed_path(path))
    jobs = dedupe(jobs)
    pending = [j for j in jobs if j.key not in done and j.key not in failed]
    summary = {"file": str(path), "total": len(jobs), "before": len(existing), "pending": len(pending),
               "written": 0, "failed": 0}
    est = sum(estimate_s(j) for j in pending) if estimate_s else float("nan")
    log(f"{path.name}: {len(jobs)} shapes, {len(existing)} already measured, {len(failed)} failed before, "
        f"{len(pending)} to go (estimate {_eta(est)})")
    if not pending:
        return summary
    path.parent.mkdir(parents=True, exist_ok=True)
    record_env(env_path(path), base_env, params, len(existing))
    new_file = not path.exists() or path.stat().st_size == 0
    t0 = last = time.perf_counter()
    with open(path, "a", newline="") as f, open(failed_path(path), "a") as ff:
        w = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        if new_file:
            w.writeheader()
            f.flush()
        for start in range(0, len(pending), chunk):
            for job, result in measure(pending[start:start + chunk]):
                if isinstance(result, SkipRow):
                    summary["skipped"] = summary.get("skipped", 0) + 1
                    continue
                if isinstance(result, BaseException):
                    summary["failed"] += 1
                    ff.write(json.dumps({"key": list(job.key), "group": job.group,
                                         "error": f"{type(result).__name__}: {result}"[:500]}) + "\n")
                    ff.flush()
                    log(f"  FAILED {job.backend} {job.kernel} {job.dtype} {job.shape}: "
                        f"{type(result).__name__}: {str(result)[:200]}")
                    continue
                w.writerow(make_row(job, result, header))
                f.flush()
                if fsync:
                    os.fsync(f.fileno())
                summary["written"] += 1
                now = time.perf_counter()
                n = summary["written"] + summary["failed"] + summary.get("skipped", 0)
                if now - last > 5 or n == len(pending):
                    last = now
                    rate = (now - t0) / n
                    log(f"  {path.name}: {len(existing) + summary['written']}/{len(jobs)} rows "
                        f"({n}/{len(pending)} this run, {rate * 1e3:.0f} ms/row), "
                        f"ETA {_eta(rate * (len(pending) - n))}")
    summary["seconds"] = time.perf_counter() - t0
    summary["ms_per_row"] = 1e3 * summary["seconds"] / max(1, summary["written"] + summary["failed"])
    noise = noise_floor(read_rows(path, header), kind)
    if noise["pairs"]:
        summary["noise_floor"] = noise
        log(f"  {path.name}: noise floor over {noise['pairs']} shapes measured twice: median "
            f"{100 * noise['median_rel_diff']:.2f}%, p90 {100 * noise['p90_rel_diff']:.2f}%")
        env = json.loads(env_path(path).read_text())
        env["noise_floor"] = noise
        _write_json(env_path(path), env)
    return summary


# ----------------------------------------------------------------------------------------- suites


PEAK_FLOPS = {"fp16": 989e12, "bf16": 989e12, "fp8": 1979e12, "tf32": 494e12, "fp32": 67e12}
IN_BYTES = {"fp16": 2, "bf16": 2, "fp8": 1, "tf32": 4, "fp32": 4}
# cost model of the estimate (seconds), fitted to a --limit 24 sweep on the H100 (CUDA 13, torch 2.11):
# per row: building inputs, capture, profiler share; cuDNN's autotuning; once per own kernel: NVRTC
# compile and correctness checks; once per process: CUPTI start-up
ROW_OVERHEAD_S = {"own": 0.010, "cublas": 0.010, "cudnn": 0.010}
CUDNN_AUTOTUNE_S = 0.045
OWN_KERNEL_SETUP_S = 1.6
PROCESS_SETUP_S = 3.0


def call_time_s(job: Job) -> float:
    """Roofline guess of one call's device time (for the duration estimate only)."""
    d = job.shape_dict
    if job.kind == "gemm":
        flops = S.gemm_flops(d)
        io = d["batch"] * (d["m"] * d["k"] + d["k"] * d["n"] + d["m"] * d["n"]) * IN_BYTES[job.dtype]
    else:
        flops = S.conv_flops(d)
        p, q = S.conv_out(d)
        io = 2 * (d["n"] * d["h"] * d["w"] * d["c"] + d["k"] * d["c"] * d["r"] * d["s"]
                  + d["n"] * p * q * d["k"])
    eff = 0.35 if job.backend == "own" else 0.7
    return 3e-6 + max(flops / (PEAK_FLOPS[job.dtype] * eff), io / 2.4e12)


def row_cost_s(job: Job, budget_s: float) -> float:
    t = call_time_s(job)
    replay = max(1.5e-3, 5 * t)
    cost = ROW_OVERHEAD_S[job.backend] + max(budget_s, 5 * replay) + 2 * replay + 10 * t
    if job.backend == "cudnn":
        cost += CUDNN_AUTOTUNE_S
    return cost


def own_kernel_jobs(configs: dict, gpu) -> tuple[list[Job], list[Job]]:
    """(gemm jobs, conv jobs) of the own suite: each own row followed by its library reference row."""
    gemm_jobs, conv_jobs = [], []
    for name, cfg in configs.items():
        family = name.rsplit("_", 1)[0]
        align = max(1, cfg.alignment_elements)
        if cfg.kind == "conv":
            for s in S.own_conv_shapes(family, align=max(8, align)):
                conv_jobs.append(job_from_shape("conv", "own", name, s))
                conv_jobs.append(job_from_shape("conv", "cudnn", "", s))
            continue
        dtype = cfg.dtypes[0] if len(cfg.dtypes) == 1 else ("fp32" if cfg.math == "simt" else "fp16")
        if dtype == "fp16":
            align = max(align, 8)
        wave = gpu.sm_count * cfg.occupancy(gpu).blocks_per_sm
        stairs = S.own_gemm_staircases(cfg.tile_m, cfg.tile_n, cfg.tile_k, wave, dtype, align)
        rand = S.own_gemm_random(family, dtype, cfg.math, align)
        for i, s in enumerate(stairs):
            gemm_jobs.append(job_from_shape("gemm", "own", name, s))
            if i % 2 == 0:
                gemm_jobs.append(job_from_shape("gemm", "cublas", "", s))
        for s in rand:
            gemm_jobs.append(job_from_shape("gemm", "own", name, s))
            gemm_jobs.append(job_from_shape("gemm", "cublas", "", s))
    return dedupe(gemm_jobs), dedupe(conv_jobs)


def suite_files(suite: str, own_configs: Callable[[], dict] | None = None, gpu=None) -> list[tuple]:
    """[(file name, kind, jobs)] of a suite ("own", "cublas", "cudnn" or "all")."""
    suites = SUITES if suite == "all" else (suite,)
    out = []
    for s in suites:
        if s == "cublas":
            out.append(("gemm_cublas.csv", "gemm", [job_from_shape("gemm", "cublas", "", x)
                                                     for x in S.cublas_shapes()]))
        elif s == "cudnn":
            out.append(("conv_cudnn.csv", "conv", [job_from_shape("conv", "cudnn", "", x)
                                                    for x in S.cudnn_shapes()]))
        elif s == "own":
            configs = own_configs() if own_configs else {}
            g, c = own_kernel_jobs(configs, gpu)
            out.append(("gemm_own.csv", "gemm", g))
            out.append(("conv_own.csv", "conv", c))
        else:
            raise ValueError(f"suite: {s!r} is not one of own, cublas, cudnn, all")
    return out


def plan(files, limit: int | None, passes: int, fraction: float) -> list[tuple]:
    out = []
    for name, kind, jobs in files:
        jobs = spread(dedupe(jobs), limit)
        if passes >= 2:
            jobs = jobs + second_pass(jobs, fraction)
        out.append((name, kind, jobs))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="all", choices=(*SUITES, "all"))
    ap.add_argument("--out", required=True, help="directory of the datasets (e.g. validation/data/h100-sxm)")
    ap.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                    help="time budget of the timed replays per row (default %(default)s)")
    ap.add_argument("--limit", type=int, default=None, help="at most N shapes per file, evenly spread")
    ap.add_argument("--passes", type=int, default=1, choices=(1, 2))
    ap.add_argument("--pass2-fraction", type=float, default=0.1)
    ap.add_argument("--rotation-factor", type=float, default=2.0, help="working set > factor x L2")
    ap.add_argument("--max-sets", type=int, default=256, help="cap on rotated input sets")
    ap.add_argument("--chunk", type=int, default=32, help="rows per profiler pass")
    ap.add_argument("--gpu", default="h100-sxm", help="catalogue GPU for own-kernel staircases")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and the estimate, measure nothing")
    args = ap.parse_args(argv)

    import wavemodel as wm
    from validation import sweep_gpu

    gpu = wm.gpu(args.gpu)
    files = plan(suite_files(args.suite, sweep_gpu.own_configs, gpu), args.limit, args.passes,
                 args.pass2_fraction)
    total = PROCESS_SETUP_S
    for name, _kind, jobs in files:
        est = sum(row_cost_s(j, args.budget_s) for j in jobs)
        est += OWN_KERNEL_SETUP_S * len({j.kernel for j in jobs if j.backend == "own"})
        total += est
        print(f"{name}: {len(jobs)} rows, estimate {_eta(est)}", file=sys.stderr)
    print(f"total estimate (empty files, warm machine): {_eta(total)}", file=sys.stderr, flush=True)
    if args.dry_run:
        return 0
    args_used = [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]
    command = "PYTHONPATH=. python3 " + " ".join(shlex.quote(a) for a in args_used)
    params = {"suite": args.suite, "budget_s": args.budget_s, "limit": args.limit, "passes": args.passes,
              "pass2_fraction": args.pass2_fraction, "rotation_factor": args.rotation_factor,
              "max_sets": args.max_sets, "chunk": args.chunk,
              "timing": "CUDA-graph replays timed with CUDA events (wavemodel.hardware.timing.time_device); "
                        "per-call latency = replay time / launches_per_graph; warm-up untimed; host "
                        "overhead per eager call measured apart (host_overhead_us)",
              "rotation": f"inputs rotated over rotation_sets sets so the working set exceeds "
                          f"{args.rotation_factor} x L2 (capped at {args.max_sets} sets); every graph "
                          f"cycles through all sets",
              "kernel_column": "own: our kernel's name; library: profiler kernel names of one call, "
                               "';'-joined in launch order, memsets as 'memset'"}
    runner = sweep_gpu.Runner(budget_s=args.budget_s, rotation_factor=args.rotation_factor,
                              max_sets=args.max_sets)
    out = Path(args.out)
    results = []
    for name, kind, jobs in files:
        if not jobs:
            print(f"{name}: no shapes (no kernels registered?)", file=sys.stderr)
            continue
        base_env = lambda: runner.environment(command)  # noqa: E731
        results.append(run_file(out / name, kind, jobs, runner.measure, base_env=base_env, params=params,
                                chunk=args.chunk, estimate_s=lambda j: row_cost_s(j, args.budget_s)))
    print(json.dumps(results, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    # run as a script: use the importable module so that its classes are the ones sweep_gpu sees
    from validation.sweep import main as _main

    sys.exit(_main())
