"""Does a 1x1 strided conv read its input in whole 128-byte lines? DRAM reads under Nsight Compute.

    python validation/dram_lines_probe.py predict --out DIR       # the model's bytes, before the run
    S64="$(python validation/dram_lines_probe.py shapes)" S128=... PYTHONPATH=. OUT=DIR \\
        bash validation/ncu_conv_misses.sh                        # on a GPU
    python validation/dram_lines_probe.py compare DIR             # ncu's DRAM reads against both counts

``latency.strided_window_bytes`` counts the 128-byte lines a row's filter windows touch where they
leave gaps (a 1x1 filter at stride 2 or more). It was set from the six 1x1 stride-2 shapes of
``data/h100-sxm/ncu_conv_parity/``; the shapes here are new: other channel counts (pixels of 16 to
288 bytes), strides 3 and 4, and image widths whose rows do not start on a line. ``predict`` writes,
per shape, the model's DRAM read bytes (input and filter) and the bytes of the pixels the windows use.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import wavemodel as wm  # noqa: E402
from validation import conv_l2_sectors as CS  # noqa: E402
from wavemodel import latency as L  # noqa: E402

KERNEL_SHAPES = {  # tile_n: shapes n,c,h,w,k,r,s,stride,padding (K = 64: the output is small)
    64: ["16,8,56,56,64,1,1,2,0", "16,40,56,56,64,1,1,2,0", "16,56,56,56,64,1,1,2,0",
         "16,64,56,56,64,1,1,2,0", "16,96,56,56,64,1,1,2,0", "16,144,56,56,64,1,1,2,0",
         "8,72,57,57,64,1,1,2,0", "8,120,29,29,64,1,1,2,0", "16,64,57,57,64,1,1,3,0",
         "16,24,56,56,64,1,1,3,0", "16,48,56,56,64,1,1,4,0", "8,16,113,113,64,1,1,2,0"],
    128: ["16,40,56,56,64,1,1,2,0", "16,96,56,56,64,1,1,2,0"],
}
PREDICTIONS = "dram_lines_predictions.csv"


def shape_of(spec: str) -> wm.Conv2d:
    n, c, h, w, k, r, s, stride, pad = (int(v) for v in spec.split(","))
    return wm.Conv2d(n=n, c=c, h=h, w=w, k=k, r=r, s=s, stride=stride, padding=pad)


def read_bytes(sh: wm.Conv2d) -> tuple[float, float]:
    """(the model's DRAM read bytes: input and filter; the bytes of the pixels the windows use + filter)."""
    filt = float(sh.k * sh.r * sh.s * sh.c * 2)
    used = float(sh.n * sh.p * sh.q * sh.c * 2) + filt
    return float(L.dram_bytes(sh)) - float(sh.n * sh.p * sh.q * sh.k * 2), used


def write_predictions(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / PREDICTIONS, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("tile_n", "shape", "model_read_bytes", "used_pixel_bytes"))
        for tile_n, specs in KERNEL_SHAPES.items():
            for spec in specs:
                model, used = read_bytes(shape_of(spec))
                w.writerow((tile_n, spec, f"{model:.0f}", f"{used:.0f}"))
    return out / PREDICTIONS


def comparison(folder: Path) -> list[dict]:
    """Per shape: ncu's DRAM read bytes against the predictions written before the run."""
    with open(folder / PREDICTIONS, newline="") as f:
        pred = {(int(r["tile_n"]), r["shape"]): r for r in csv.DictReader(f)}
    out = []
    for tile_n, spec, _, met in CS.ncu_shapes(folder):
        p = pred[tile_n, spec]
        out.append(dict(tile_n=tile_n, shape=spec, ncu=met["dram__bytes_read.sum"],
                        model=float(p["model_read_bytes"]), used=float(p["used_pixel_bytes"])))
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("predict", "shapes", "compare"))
    ap.add_argument("folder", nargs="?", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--tile-n", type=int, default=64)
    a = ap.parse_args(argv)
    if a.what == "predict":
        print(write_predictions(a.out))
    elif a.what == "shapes":
        print(" ".join(KERNEL_SHAPES[a.tile_n]))
    else:
        print("kernel           shape                     ncu MB  model MB (error)  used pixels MB (error)")
        for r in comparison(a.folder):
            model, used = (100 * (r[key] / r["ncu"] - 1) for key in ("model", "used"))
            print(f"conv_f16_128x{r['tile_n']:<3d} {r['shape']:24s} {r['ncu'] / 1e6:7.3f}  "
                  f"{r['model'] / 1e6:7.3f} ({model:+5.1f} %)  {r['used'] / 1e6:7.3f} ({used:+5.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
