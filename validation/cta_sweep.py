"""Time our kernels at fixed work per CTA while the number of CTAs grows from 1 to two waves: a held-out
check of the model's fixed costs (``cta_dispatch_s``, ``straggler_s``), on shapes no dataset holds.

Each kernel runs one tile column (GEMM: N = tile_n; conv: 1x1 over 16 x 16 images, two 128-pixel tiles
per image, K = tile_n output channels), so the CTA count is the tile count along M and every CTA
does the same work. Every shape runs in ``--windows`` interleaved windows (one full pass over the
shapes per window); the row keeps its median window. Each kernel is checked against cuBLAS / a
reference conv on fresh random inputs before it is timed (``calls.Runner``).

Usage (on a GPU): PYTHONPATH=. python validation/cta_sweep.py --out DIR
Writes DIR/cta_sweep_gemm.csv and DIR/cta_sweep_conv.csv (the columns of gemm_own.csv and
conv_own.csv; set "probe", group "cta_sweep") and DIR/cta_sweep_env.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation.remeasure import held_out, time_and_write  # noqa: E402
from wavemodel.hardware import calibration_sweep as S  # noqa: E402

CTAS = (1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 132, 198, 264)
GEMMS = {  # kernel -> (dtype, tile_m, n, k)
    "tc_f16_128x128": ("fp16", 128, 128, 768),
    "tc_f16_256x128": ("fp16", 256, 128, 768),
    "simt_f32_128x64": ("fp32", 128, 64, 384),
}
CONVS = {  # kernel -> (c, k): 1x1 stride 1 over 16 x 16 images, two CTAs per image
    "conv_f16_128x64": (96, 64),
    "conv_f16_128x128": (96, 128),
}
GROUP = "cta_sweep"


def jobs() -> list[S.Job]:
    out = [S.gemm(GROUP, dtype, tm * t, n, k, backend="own", kernel=name)
           for name, (dtype, tm, n, k) in GEMMS.items() for t in CTAS]
    out += [S.conv(GROUP, t // 2, c, 16, k, 1, 1, 0, backend="own", kernel=name)
            for name, (c, k) in CONVS.items() for t in CTAS if t % 2 == 0]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--data", type=Path, default=Path("validation/data/h100-sxm"),
                    help="committed datasets the sweep's shapes must stay out of")
    ap.add_argument("--windows", type=int, default=3)
    args = ap.parse_args(argv)
    todo = held_out(jobs(), args.data)
    time_and_write(args.out, todo, args.windows, {k: f"cta_sweep_{k}.csv" for k in ("gemm", "conv")},
                   "probe", "cta_sweep_env.json")
    print(f"wrote {args.out}: {len(todo)} shapes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
