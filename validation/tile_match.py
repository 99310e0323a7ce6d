"""How often the library model's selection rule picks the tile the profiler saw (issue 4, item 2).

For every evaluation-set row of a library dataset with a kernel name, the predicted configuration's
CTA tile is compared with the tile of the main kernel the profiler recorded (``kernel_names``), per
dtype and alignment class. Rows whose graph replay lasted under 0.5 ms are left out as in validate.

Usage: PYTHONPATH=. python validation/tile_match.py [DATA_DIR] [--gpu h100-sxm]
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

import wavemodel as wm
from wavemodel import calibration
from wavemodel import datasets as D
from wavemodel.kernel_names import main_kernel
from wavemodel.latency import config_latency


def tile_match(rows, gpu) -> dict[str, tuple[int, int]]:
    """family -> (rows with a tiled main kernel, rows whose predicted tile equals it)."""
    out = collections.defaultdict(lambda: [0, 0])
    for r in rows:
        _, seen = main_kernel(r.kernel, conv=r.kind == "conv")
        if not seen.tile_m:
            continue
        shape = D.shape_of([r])
        cfg = wm.predict_latency(shape, gpu, r.backend).config.ravel()[0]
        tile_m = cfg.tile_m
        if cfg.tile_m_granule:      # the problem-sized M tile the model runs for this shape
            g = shape.gemm() if isinstance(shape, wm.Conv2d) else shape
            tile_m = int(np.ravel(config_latency(g, cfg, gpu, calibration.profile_for(gpu, r.backend),
                                                 shape)["tile_m"])[0])
        fam = D.family_of(r) if r.backend == "cudnn" else f"{D.family_of(r)}_{r.dtype}"
        out[fam][0] += 1
        out[fam][1] += (tile_m, cfg.tile_n) == (seen.tile_m, seen.tile_n)
    return {k: tuple(v) for k, v in sorted(out.items())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("data", nargs="?", default="validation/data/h100-sxm")
    ap.add_argument("--gpu", default="h100-sxm")
    args = ap.parse_args()
    gpu = wm.gpu(args.gpu)
    loaded = D.load_dir(Path(args.data))
    rows = D.drop_short_replays(D.select(loaded.rows, set="evaluation", backends=("cublas", "cudnn")))[0]
    stats = tile_match(rows, gpu)
    print(f"predicted tile == profiled tile, evaluation set, {gpu.display_name}")
    for fam, (n, hit) in stats.items():
        print(f"  {fam:28s} n={n:5d}  {100 * hit / n:5.1f}%")
    for lib in ("cublas", "cudnn"):
        n = sum(v[0] for k, v in stats.items() if k.startswith(lib))
        hit = sum(v[1] for k, v in stats.items() if k.startswith(lib))
        if n:
            print(f"  {lib + ' (all)':28s} n={n:5d}  {100 * hit / n:5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
