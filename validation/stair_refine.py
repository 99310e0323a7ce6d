"""Measure the points inside each staircase interval where ``wavemodel validate`` sees a rise it cannot
explain, to tell a jump from a slope.

The validation flags two neighbouring points of a staircase when the measured latency rises by more
than 5 % between them with no wave or tile boundary of the model in between. Where the committed
points lie 16-64 apart, such a rise can be one jump or a steady climb across the interval; only
points inside it tell which. For every such interval of our kernels (over every committed row),
this times the shapes at every ``--step`` inside it: 8 elements for fp16, 4 for fp32, which keeps each
operand's alignment class. Each shape is timed in ``--windows`` interleaved windows (one full pass
per window), and the row keeps its median window. Each kernel is checked against cuBLAS / the
reference conv on fresh random inputs before it is timed (``calls.Runner``).

The rows go to ``gemm_own_refine.csv`` and ``conv_own_refine.csv`` in the dataset format, with the
series' group and set "evaluation". No fit has seen them. They join their staircases in
``wavemodel validate`` and count in the evaluation errors like any other held-out row.

Usage (on a GPU): PYTHONPATH=. python validation/stair_refine.py --data validation/data/h100-sxm --out DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation.remeasure import time_and_write  # noqa: E402
from wavemodel.hardware import calibration_sweep as S  # noqa: E402

FILES = {"gemm": "gemm_own_refine.csv", "conv": "conv_own_refine.csv"}


def step_for(dtype: str) -> int:
    """Points 16 bytes apart: every operand row keeps the alignment class of the interval's ends."""
    return 4 if dtype == "fp32" else 8


def refine_jobs(data_dir: Path) -> list[S.Job]:
    """The interior points of every unexplained staircase rise of our kernels (every committed row)."""
    from wavemodel import datasets as D
    from wavemodel import validate as V
    from wavemodel.gpus import gpu

    loaded = D.load_dir(data_dir)
    rows, _ = D.drop_short_replays(D.select(loaded.rows, set=None, pass_="1", backends=("own",)))
    ev = V.evaluate(rows, gpu("h100-sxm"))
    series = V.staircase_series(rows)
    flagged = {(v.series, v.x_before, v.x_after) for v in V.staircase_violations(ev, series)}
    seen = {(r.kernel, r.kind, tuple(r.shape)) for r in loaded.rows}
    jobs = []
    for s in series:
        kind = rows[s.index[0][0]].kind
        kernel = rows[s.index[0][0]].kernel
        step = step_for(s.dtype)
        for a, b in zip(s.x[:-1], s.x[1:], strict=True):
            if (s.label, int(a), int(b)) not in flagged:
                continue
            for x in range(int(a) + step - int(a) % step, int(b), step):
                dims = dict(s.fixed) | {s.dim: x}
                shape = tuple(int(dims[c]) for c in S.SHAPE_COLUMNS[kind])
                if (kernel, kind, shape) in seen:
                    continue
                jobs.append(S.Job(kind, "own", kernel, s.dtype, shape, s.group))
    return jobs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("validation/data/h100-sxm"))
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--windows", type=int, default=3)
    args = ap.parse_args(argv)
    todo = refine_jobs(args.data)
    print(f"{len(todo)} interior points", file=sys.stderr, flush=True)
    time_and_write(args.out, todo, args.windows, FILES, "evaluation", "own_refine_env.json",
                   {"set": "evaluation (no fit saw these rows)"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
