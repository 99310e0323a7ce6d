"""Run the occupancy calculator against CUDA on the local GPU; write the grid to validation/data/<gpu>/.

Usage (on a GPU): PYTHONPATH=. python validation/occupancy_check.py [--out DIR]
Exits 1 if any row disagrees.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

import wavemodel as wm
from wavemodel.hardware.device import write_environment
from wavemodel.hardware.occupancy_probe import measure_grid


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=None, help="folder for occupancy.csv (default validation/data/<gpu>)")
    args = ap.parse_args()
    gpu = wm.gpu("local")
    out = args.out or os.path.join("validation", "data", gpu.name)
    os.makedirs(out, exist_ok=True)
    rows = measure_grid(gpu)
    path = os.path.join(out, "occupancy.csv")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    write_environment(os.path.join(out, "occupancy_env.json"), spec={
        k: getattr(gpu, k) for k in ("sm_count", "smem_per_sm_bytes", "max_smem_per_block_bytes",
                                     "smem_reserved_per_block_bytes", "max_blocks_per_sm", "regs_per_sm")})
    bad = [r for r in rows if r["blocks_per_sm_cuda"] != r["blocks_per_sm_model"]]
    print(f"occupancy: {len(rows)} combinations on {gpu.display_name}, {len(bad)} disagree -> {path}")
    for r in bad[:20]:
        print("  MISMATCH", r)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
