"""Do the model's worst misses on our convs reproduce on another card and day, or are they noise?

    python validation/reproduce_misses.py select --out DIR        # the misses and as many controls
    PYTHONPATH=. python validation/remeasure.py DIR/conv_own_misses_controls.csv --backend own \\
        --windows 3 --out DIR                                     # on a GPU: the same harness again
    python validation/reproduce_misses.py compare DIR             # old and new, against the model

``select`` takes every pass-1 row of conv_own.csv that the shipped model misses by more than 8 %
(``MISS``) and, per kernel, as many rows it predicts within 8 %, drawn with a fixed seed. ``compare``
reads the re-timed windows (the median window of each row) and prints, for misses and controls apart,
how far the new times lie from the committed ones and what the model's error becomes against them.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation import remeasure as R  # noqa: E402
from wavemodel import datasets as D  # noqa: E402
from wavemodel import validate as V  # noqa: E402
from wavemodel.gpus import gpu  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "h100-sxm"
NAME, MISS, SEED = "conv_own_misses_controls.csv", 0.08, 20261126


def _errors(rows) -> np.ndarray:
    return V.evaluate(rows, gpu("h100-sxm")).relative_error


def select(out: Path) -> None:
    rows = [r for r in D.read_csv(DATA / "conv_own.csv") if r.backend == "own" and r.pass_ == "1"]
    miss = np.abs(_errors(rows)) > MISS
    kernels = np.array([r.kernel for r in rows])
    rng = np.random.default_rng(SEED)
    keep = miss.copy()
    for k in np.unique(kernels):
        pool = np.flatnonzero(~miss & (kernels == k))
        keep[rng.choice(pool, int((miss & (kernels == k)).sum()), replace=False)] = True
    with open(DATA / "conv_own.csv") as fh:
        src = list(csv.reader(fh))
    own = [line for line in src[1:] if line[1] == "own" and line[src[0].index("pass")] == "1"]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / NAME, "w", newline="") as fh:
        csv.writer(fh).writerows([src[0]] + [line for line, k in zip(own, keep, strict=True) if k])
    print(f"{int(miss.sum())} misses and {int(keep.sum() - miss.sum())} controls -> {out / NAME}")


def compare(folder: Path) -> None:
    rows = D.read_csv(folder / NAME)
    windows = R.read_windows([folder / NAME.replace(".csv", "_own_windows_part0of1.csv")])
    old = np.array([r.latency_us for r in rows])
    new = np.array([float(np.median([float(t["latency_us_median"]) for t in windows[i]]))
                    for i in range(len(rows))])
    err_old = _errors(rows)
    predicted = old * (1 + err_old)
    err_new = predicted / new - 1
    miss = np.abs(err_old) > MISS
    for label, sel in (("misses", miss), ("controls", ~miss)):
        moved = np.abs(new[sel] / old[sel] - 1) * 100
        a, b = np.abs(err_old[sel]) * 100, np.abs(err_new[sel]) * 100
        print(f"{label:8s} {int(sel.sum()):4d} rows: re-timed vs committed |diff| median "
              f"{np.median(moved):.2f} % p90 {np.percentile(moved, 90):.2f} %; "
              f"model error median {np.median(a):.2f} -> "
              f"{np.median(b):.2f} %, p90 {np.percentile(a, 90):.2f} -> {np.percentile(b, 90):.2f} %, "
              f"over 8 %: {int((a > 8).sum())} -> {int((b > 8).sum())}")
    print(f"misses: error keeps its sign in {np.mean(np.sign(err_old[miss]) == np.sign(err_new[miss])):.0%}, "
          f"correlation of old and new error {np.corrcoef(err_old[miss], err_new[miss])[0, 1]:.2f}")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("select").add_argument("--out", type=Path, required=True)
    sub.add_parser("compare").add_argument("folder", type=Path)
    args = ap.parse_args(argv)
    select(args.out) if args.cmd == "select" else compare(args.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
