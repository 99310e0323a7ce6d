"""Does the order in which the CTAs are dealt move our conv kernels' time? A probe, not a dataset.

    PYTHONPATH=. python validation/raster_probe.py --out DIR [--shapes FILE]

tc_f16_conv deals its CTAs along the output channels first (``blockIdx.x`` is the tile column), so the
CTAs that run together share their A panels (the input pixels' taps) and each reads its own filter
panel. This builds each of our conv kernels a second time with ``-DRASTER_M`` (``<name>_raster_m``:
``blockIdx.x`` walks the pixel tiles, so the CTAs that run together share a filter panel instead),
checks the variants against the reference conv like the registered kernels, and times both on the
shapes (space-separated ``n,c,h,w,k,r,s,stride,padding``; default ``SHAPES``) in three windows with the
harness (``remeasure.time_and_write``): ``DIR/raster.csv`` (set "probe"), ``DIR/raster_env.json`` and
the window log. The registered kernels are not changed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation.extra_calibration import own_conv_kernels  # noqa: E402
from wavemodel.hardware import calibration_sweep as S  # noqa: E402
from wavemodel.hardware import kernels as K  # noqa: E402

# small-C 3x3 convs with many output channels (the model's largest misses,
# validation/data/h100-sxm/ncu_conv_small_c_wide/), then wider convs as controls
SHAPES = ("2,8,112,112,1656,3,3,1,1 32,8,112,112,448,3,3,1,1 2,16,112,112,1656,3,3,1,1 "
          "2,32,112,112,1656,3,3,1,1 2,8,112,112,1656,1,1,1,0 32,128,56,56,128,3,3,1,1 "
          "8,256,56,56,512,3,3,1,1 32,256,28,28,512,1,1,1,0")
SUFFIX = "_raster_m"
WINDOWS = 3


@dataclasses.dataclass(frozen=True)
class RasterM(K.OwnKernel):
    """A conv kernel built with -DRASTER_M: its grid is (pixel tiles, output-channel tiles)."""

    def grid(self, m: int, n: int, batch: int = 1) -> tuple[int, int, int]:
        gx, gy, gz = super().grid(m, n, batch)
        return gy, gx, gz


def variant(name: str) -> RasterM:
    """The -DRASTER_M build of conv kernel ``name``."""
    base = K.get(name)
    if base.kind != "conv":
        raise ValueError(f"kernel: {name!r} is a {base.kind} kernel; the probe swaps a conv kernel's raster")
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    return RasterM(**fields | {"name": name + SUFFIX, "defines": (*base.defines, ("RASTER_M", 1))})


def jobs(shapes: list[tuple[int, ...]], names: list[str]) -> list[S.Job]:
    """Each shape on each kernel and on its variant, side by side."""
    return [S.Job("conv", "own", kernel, "fp16", shape, "raster_probe")
            for shape in shapes for name in names for kernel in (name, name + SUFFIX)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--shapes", type=Path, help="a file of space-separated n,c,h,w,k,r,s,stride,padding")
    args = ap.parse_args(argv)
    text = args.shapes.read_text() if args.shapes else SHAPES
    shapes = [tuple(int(v) for v in s.split(",")) for s in text.split()]
    names = own_conv_kernels()
    for name in names:                 # registered in this process only, so the harness can build them
        K.KERNELS[name + SUFFIX] = variant(name)
    from validation.remeasure import time_and_write

    time_and_write(args.out, jobs(shapes, names), WINDOWS, {"conv": "raster.csv"}, "probe", "raster_env.json",
                   {"variants": {n + SUFFIX: "-DRASTER_M=1" for n in names}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
