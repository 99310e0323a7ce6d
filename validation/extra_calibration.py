"""More calibration rows: random NHWC fp16 convs, all in the calibration set, for cuDNN or our conv kernels.

The cuDNN fit has 51 parameters (eight per kernel family) for about 450 calibration rows, and its
held-out error moves with its data by about its margin: 2-fold CV puts a half-set fit at a median 10.6
and 11.3 % on the other half, and different starts of the same fit move the held-out median from 9.5
to 14.8 % on one fold. This measures more calibration rows from the same distribution as the committed
random group (``shapesets.random_convs``, another seed). Every new shape is checked against the committed
datasets, so that none of them is an evaluation (or calibration) shape already; the evaluation set is
left as it is.

Our two conv kernels have 14 parameters each and 196 calibration rows each, of which 99 are one
staircase and only 85 are random shapes. ``--backend own`` measures ``--count`` more random shapes (the
generator of ``shapesets.own_conv_shapes``' random group, another seed) on both kernels. Each row is
timed in three windows and keeps its median window, as the committed rows were (``remeasure.py``).

Usage (on a GPU):
    PYTHONPATH=. python validation/extra_calibration.py --out DIR [--count 300]
        writes DIR/conv_cudnn_extra.csv (the columns of conv_cudnn.csv; set "calibration", group
        "random_extra", kernel names from the profiler) one row at a time, skipping rows already there
        (a rerun resumes), and DIR/conv_cudnn_extra_env.json;
    PYTHONPATH=. python validation/extra_calibration.py --backend own --out DIR [--count 800]
            [--seed S] [--set evaluation]
        writes DIR/conv_own_extra.csv (set "calibration" or the one given, group "random_extra") and
        DIR/conv_own_extra_env.json (every window's latency) once every window has finished; every
        timing goes to DIR/conv_own_extra_windows.csv as it is taken, and a rerun times only what that
        log lacks (remeasure.time_and_write).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation import shapesets  # noqa: E402
from wavemodel.hardware import calibration_sweep as S  # noqa: E402

FILE = "conv_cudnn_extra.csv"
OWN_FILE = "conv_own_extra.csv"
GROUP = "random_extra"
SEED = 20261127                 # the committed random group used 20261126
OWN_SEED = 20261129             # our kernels' committed random group used 20261128
OWN_WINDOWS = 3                 # as the committed rows of our kernels (remeasure.py --windows 3)
COLUMNS = S.SHAPE_COLUMNS["conv"]


def committed_convs(data_dir: Path) -> set[tuple[int, ...]]:
    """Shapes of every conv row in ``data_dir``'s conv CSVs (either set, either backend)."""
    out = set()
    for path in sorted(data_dir.glob("conv_*.csv")):
        with open(path, newline="") as f:
            out |= {tuple(int(r[c]) for c in COLUMNS) for r in csv.DictReader(f)}
    return out


def new_shapes(count: int, data_dir: Path, rng, **random_convs) -> list[tuple[int, ...]]:
    """``count`` random convs (``shapesets.random_convs`` with these keywords) not in ``data_dir``'s
    conv datasets, and no repeats."""
    seen = committed_convs(data_dir)
    shapes: list[tuple[int, ...]] = []
    while len(shapes) < count:
        for s in shapesets.random_convs(rng, count - len(shapes), group=GROUP, **random_convs):
            shape = tuple(int(s[c]) for c in COLUMNS)
            if shape not in seen:
                seen.add(shape)
                shapes.append(shape)
    return shapes


def new_jobs(count: int, data_dir: Path, seed: int = SEED) -> list[S.Job]:
    """``count`` random convs not in ``data_dir`` (and no repeats), as cuDNN jobs."""
    return [S.Job("conv", "cudnn", "", "fp16", shape, GROUP)
            for shape in new_shapes(count, data_dir, np.random.default_rng(seed))]


def own_conv_kernels() -> list[str]:
    from wavemodel.hardware.kernels import KERNELS

    return [name for name, k in KERNELS.items() if k.kind == "conv"]


def new_own_jobs(count: int, data_dir: Path, seed: int = OWN_SEED) -> list[S.Job]:
    """``count`` random convs not in ``data_dir``, drawn as the committed random group of our conv
    kernels is (``shapesets.own_conv_shapes``), each on every one of our conv kernels."""
    kernels = own_conv_kernels()
    family = kernels[0].rsplit("_", 1)[0]           # as sweep.own_kernel_jobs names it: "conv_f16"
    shapes = new_shapes(count, data_dir, shapesets.own_rng(family, seed), align=8,
                        max_flops=shapesets.OWN_CONV_MAX_FLOPS)
    return [S.Job("conv", "own", kernel, "fp16", shape, GROUP) for shape in shapes for kernel in kernels]


def measure_own(out: Path, count: int, data_dir: Path, seed: int = OWN_SEED, set_name: str = "calibration"
                ) -> None:
    from validation.remeasure import held_out, time_and_write

    jobs = held_out(new_own_jobs(count, data_dir, seed), data_dir)
    print(f"{len(jobs)} rows ({count} shapes on each conv kernel), {OWN_WINDOWS} windows", file=sys.stderr,
          flush=True)
    time_and_write(out, jobs, OWN_WINDOWS, {"conv": OWN_FILE}, set_name, "conv_own_extra_env.json",
                   {"seed": seed, "count": count, "set": f"{set_name} (every row)"})


def done_shapes(path: Path) -> set[tuple[int, ...]]:
    if not path.exists():
        return set()
    with open(path, newline="") as f:
        return {tuple(int(r[c]) for c in COLUMNS) for r in csv.DictReader(f)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="the datasets folder (the file goes beside them)")
    ap.add_argument("--data", type=Path, default=Path("validation/data/h100-sxm"),
                    help="committed datasets the new shapes must stay out of")
    ap.add_argument("--count", type=int, default=300, help="new shapes (for --backend own: on each kernel)")
    ap.add_argument("--backend", choices=("cudnn", "own"), default="cudnn")
    ap.add_argument("--seed", type=int, default=None,
                    help=f"--backend own: the shapes' seed (default {OWN_SEED}, the committed rows')")
    ap.add_argument("--set", dest="set_name", choices=("calibration", "evaluation"), default="calibration",
                    help="--backend own: the rows' set (evaluation: a fresh check that no fit reads, "
                         "written to a folder of its own)")
    args = ap.parse_args(argv)
    if args.backend == "own":
        measure_own(args.out, args.count, args.data, OWN_SEED if args.seed is None else args.seed,
                    args.set_name)
        return 0
    if args.seed is not None or args.set_name != "calibration":
        ap.error("--seed and --set are for --backend own")
    out = args.out / FILE
    jobs = new_jobs(args.count, args.data)
    done = done_shapes(out)
    todo = [j for j in jobs if j.shape not in done]
    print(f"{len(jobs)} shapes, {len(done)} already in {out}, {len(todo)} to measure", file=sys.stderr)
    from wavemodel.hardware.calls import Runner

    runner = Runner()
    args.out.mkdir(parents=True, exist_ok=True)
    new = not out.exists()
    failed = 0
    with open(out, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=S.HEADERS["conv"], lineterminator="\n")
        if new:
            w.writeheader()
        for start in range(0, len(todo), S.CHUNK):
            for job, result in runner.measure(todo[start:start + S.CHUNK]):
                if isinstance(result, BaseException):
                    failed += 1
                    print(f"  {job.shape}: {type(result).__name__}: {result}", file=sys.stderr)
                    continue
                w.writerow(S.make_row(job, result))     # set "calibration", pass 1
                f.flush()
            print(f"  {min(start + S.CHUNK, len(todo))}/{len(todo)}", file=sys.stderr, flush=True)
    env = runner.environment(" ".join(sys.argv)) | {"seed": SEED, "count": args.count, "failed": failed,
                                                     "set": "calibration (every row)"}
    (args.out / "conv_cudnn_extra_env.json").write_text(json.dumps(env, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
