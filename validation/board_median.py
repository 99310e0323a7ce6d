"""Our kernels' rows as the median of several timings (boards, sessions), and how far those timings differ.

    python validation/board_median.py validation/data/h100-sxm validation/data/h100-sxm/session3_own \
        validation/data/h100-sxm/boards/1* --out DIR

The first folder is the committed data. Each later folder holds the same pass-1 rows of our kernels
timed again (``remeasure.py``, one folder per board or session). Prints, per family, the p90 of
``|a / b - 1|`` over the rows for every pair of folders. Writes ``DIR/conv_own.csv`` and
``DIR/gemm_own.csv``: the committed files' header and pass-1 rows of our kernels, each row the one
of the folder whose latency is the median of the folders' (the lower middle for an even count, as
``remeasure.median_window`` picks among windows), so every row is one real measurement. A row that
some folder lacks is an error: the median is only taken over full coverage.
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

NAMES = ("conv_own.csv", "gemm_own.csv")
FAMILIES = (("conv", "conv_"), ("simt", "simt_"), ("tc", "tc_"))


def own_rows(path: Path) -> tuple[list[str], dict]:
    """The header and the pass-1 rows of our kernels in ``path``, by their job (kernel, shape, group)."""
    header, rows = R.read(path)
    kind = R.kind_of(header)
    return header, {R.job_of(rows[i], kind): rows[i] for i in R.todo_rows(rows, "own")}


def latencies(folders: list[Path], name: str) -> tuple[list[str], list[tuple], list[list[dict]]]:
    """The committed header, the row keys, and per folder its rows in the committed order."""
    header, base = own_rows(folders[0] / name)
    keys = list(base)
    per_folder = [[base[k] for k in keys]]
    for folder in folders[1:]:
        _, rows = own_rows(folder / name)
        missing = [k for k in keys if k not in rows]
        if missing:
            raise ValueError(f"{folder / name}: {len(missing)} of {len(keys)} rows missing, "
                             f"e.g. {missing[0]}")
        per_folder.append([rows[k] for k in keys])
    return header, keys, per_folder


def median_rows(per_folder: list[list[dict]]) -> tuple[list[dict], list[int]]:
    """Per row, the folder row ``remeasure.median_window`` picks (lower middle); and how many each
    folder gave."""
    out, picks = [], [0] * len(per_folder)
    for column in zip(*per_folder, strict=True):
        row = R.median_window(list(column))
        picks[next(i for i, r in enumerate(column) if r is row)] += 1
        out.append(row)
    return out, picks


def pairwise_p90(per_folder: list[list[dict]], prefix: str) -> np.ndarray:
    """p90 of |a / b - 1| between every two folders over the rows whose kernel starts with ``prefix``."""
    lat = np.array([[float(r["latency_us_median"]) for r in rows if r["kernel"].startswith(prefix)]
                    for rows in per_folder])
    n = len(per_folder)
    out = np.zeros((n, n))
    for a in range(n):
        for b in range(n):
            if a != b:
                out[a, b] = np.percentile(np.abs(lat[a] / lat[b] - 1), 90)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", help="the committed data folder first, then the re-timings")
    ap.add_argument("--out", required=True, help="folder for the median rows")
    args = ap.parse_args(argv)
    folders = [Path(f) for f in args.folders]
    if len(folders) < 2:
        ap.error("folders: need the committed folder and at least one re-timing")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    labels = [f.name for f in folders]
    for name in NAMES:
        header, keys, per_folder = latencies(folders, name)
        rows, picks = median_rows(per_folder)
        with open(out / name, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        print(f"{name}: {len(keys)} rows; median row from " + ", ".join(
            f"{lab} {p}" for lab, p in zip(labels, picks, strict=True)))
        for fam, prefix in FAMILIES:
            if not any(r["kernel"].startswith(prefix) for r in per_folder[0]):
                continue
            p = pairwise_p90(per_folder, prefix) * 100
            print(f"  {fam}: p90 % of |a / b - 1|, rows a, columns b in the order given")
            for lab, line in zip(labels, p, strict=True):
                print(f"    {lab[:16]:16s} " + " ".join(f"{v:5.2f}" for v in line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
