#!/usr/bin/env bash
# Our conv kernels on shapes that differ only in C, on and off 32-byte sectors (C x 2 bytes % 32): each
# shape timed by the harness in three windows (remeasure.time_and_write; the kernels' correctness check
# first), then Nsight Compute's counters (validation/ncu_conv_misses.sh). On a GPU, from the repo root:
#   PYTHONPATH=. OUT=dir bash validation/ncu_conv_off_sector.sh [shapes file]
# The shapes file holds space-separated n,c,h,w,k,r,s,stride,padding (default: the committed
# validation/data/h100-sxm/ncu_conv_off_sector/shapes.txt). Writes timed.csv, timed_env.json and the
# window log, the ncu CSVs, smi.txt and smi_serial.txt (the board's serial) under OUT. Shapes that are
# committed rows of conv_own.csv keep their committed timing: only Nsight Compute reads them. GROUP
# names the timed rows' group (default off_sector_pairs).
set -e
SHAPES="${1:-validation/data/h100-sxm/ncu_conv_off_sector/shapes.txt}"
nvidia-smi --query-gpu=name,serial,clocks.sm,clocks.mem,temperature.gpu --format=csv > "$OUT/smi_serial.txt"
SHAPES="$SHAPES" python3 - <<'PY'
import os
from pathlib import Path

from validation.extra_calibration import own_conv_kernels
from validation.remeasure import committed_own_shapes, held_out, time_and_write
from wavemodel.hardware import calibration_sweep as S

shapes = [tuple(map(int, s.split(","))) for s in Path(os.environ["SHAPES"]).read_text().split()]
kernels = own_conv_kernels()
data = Path("validation/data/h100-sxm")
committed = committed_own_shapes(data)     # already timed: Nsight Compute only
jobs = held_out([S.Job("conv", "own", k, "fp16", sh, os.environ.get("GROUP", "off_sector_pairs"))
                 for sh in shapes for k in kernels if (k, *sh) not in committed], data)
time_and_write(Path(os.environ["OUT"]), jobs, 3, {"conv": "timed.csv"}, "probe", "timed_env.json",
               {"shapes": os.environ["SHAPES"]})
PY
S="$(cat "$SHAPES")" S64="$(cat "$SHAPES")" S128="$(cat "$SHAPES")" bash validation/ncu_conv_misses.sh
