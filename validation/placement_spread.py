"""How far one row's latency moves with where its buffers lie, from ``remeasure.py --placements`` logs.

    python validation/placement_spread.py validation/data/h100-sxm/placements

For each ``<name>_own_windows.csv`` log in the folder (``name``: conv_own, gemm_own), each window of a
row placed its buffers afresh. Prints, per family of our kernels: the rows, the median, p90 and
largest spread of a row's windows (``max / min - 1``), and how far the committed row
(``validation/data/h100-sxm/<name>.csv``, one placement: the one its file's order of allocations
gave it) lies from the median over placements (``|committed / median - 1|``: median and p90).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation import remeasure as R  # noqa: E402

COMMITTED = Path(__file__).resolve().parent / "data" / "h100-sxm"
FAMILIES = ("conv", "simt", "tc")


def window_latencies(log: Path) -> dict[int, list[float]]:
    """Row number -> its windows' median latencies (us), in log order."""
    return {row: [float(t["latency_us_median"]) for t in ts] for row, ts in R.read_windows([log]).items()}


def spread_table(folder: Path, committed: Path = COMMITTED) -> dict[str, dict[str, float]]:
    """Per family: rows, spread median / p90 / max and committed offset median / p90 (fractions)."""
    per: dict[str, tuple[list, list]] = {f: ([], []) for f in FAMILIES}
    for name in ("conv_own", "gemm_own"):
        log = folder / f"{name}_own_windows.csv"
        if not log.exists():
            continue
        _, rows = R.read(committed / f"{name}.csv")
        for row, lat in window_latencies(log).items():
            family = rows[row]["kernel"].split("_")[0]
            med = float(np.median(lat))
            per[family][0].append(max(lat) / min(lat) - 1)
            per[family][1].append(abs(float(rows[row]["latency_us_median"]) / med - 1))
    return {f: {"rows": len(s), "spread_median": float(np.median(s)),
                "spread_p90": float(np.percentile(s, 90)), "spread_max": max(s),
                "committed_median": float(np.median(d)), "committed_p90": float(np.percentile(d, 90))}
            for f, (s, d) in per.items() if s}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    args = ap.parse_args(argv)
    print("family  rows  spread median %  p90 %  max %  |committed / median - 1| median %  p90 %")
    for family, t in spread_table(args.folder).items():
        pct = {k: 100 * v for k, v in t.items() if k != "rows"}
        print(f"{family:6s} {t['rows']:5d} {pct['spread_median']:16.2f} {pct['spread_p90']:6.2f}"
              f" {pct['spread_max']:6.2f} {pct['committed_median']:36.2f} {pct['committed_p90']:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
