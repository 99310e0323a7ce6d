"""Time our SIMT GEMMs on write-bound shapes with C's rows 16-byte aligned and not, to measure the rate at
which the memory system takes element-wise C writes (``scalar_write_bytes_per_s``).

Where N % 4 != 0 our SIMT kernels store C one float at a time. Nsight Compute on the H100 shows those
stores reaching the L2 as about 2.7x the write sectors of the aligned call, with the DRAM writes
unchanged: an L2 cost, the same for every SIMT kernel (simt_f32_64x64 and 128x64 at 3827 x 6042 x 9:
106.0 and 110.2 us against 40.8 and 43.4 us at N 6044; 1.4 TB/s of extra output for both). The
calibration set holds few calls large enough to pin that rate down (each kernel's own fit put it
anywhere from 4e11 to 1e14 B/s between two halves of the set), so it is measured here on dedicated
shapes: none of them is in the committed datasets, so neither the calibration nor the evaluation set
sees them.

Every shape runs in ``--windows`` interleaved windows (one full pass over the shapes per window); the
row keeps its median window. Each kernel is checked against cuBLAS on fresh random inputs before it
is timed (``calls.Runner``).

Usage (on a GPU): PYTHONPATH=. python validation/write_rate_probe.py --out validation/data/h100-sxm/write_rate
Writes OUT/write_rate_probe.csv (the columns of gemm_own.csv; set "probe", group "write_rate") and
OUT/write_rate_probe_env.json. The shipped profile is not fitted to it: adding its rows to the SIMT
fit pins the rate (three kernels' rates 8.5e11-2e12 B/s in both halves of the calibration set) but
leaves the held-out error no better (validation/data/h100-sxm/write_rate/README.md).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation.remeasure import held_out, time_and_write  # noqa: E402
from wavemodel.hardware import calibration_sweep as S  # noqa: E402

KERNELS = ("simt_f32_64x64", "simt_f32_128x64", "simt_f32_128x128")
MS = (1500, 4500)
NS = ((2000, 1998, 1999), (6000, 5998, 5999))     # aligned, N % 4 == 2, N % 4 == 3
KS = (8, 32)
FILE = "write_rate_probe.csv"
GROUP = "write_rate"


def jobs() -> list[S.Job]:
    return [S.gemm(GROUP, "fp32", m, n, k, backend="own", kernel=kern)
            for kern, m, ns, k in itertools.product(KERNELS, MS, NS, KS) for n in ns]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--data", type=Path, default=Path("validation/data/h100-sxm"),
                    help="committed datasets the probe's shapes must stay out of")
    ap.add_argument("--windows", type=int, default=3)
    args = ap.parse_args(argv)
    todo = held_out(jobs(), args.data)
    time_and_write(args.out, todo, args.windows, {"gemm": FILE}, "probe", "write_rate_probe_env.json")
    print(f"wrote {args.out / FILE}: {len(todo)} shapes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
