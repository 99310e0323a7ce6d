"""Does a conv row's latency depend on what the harness timed before it, or on where its buffers lie?

The committed stair of conv_f16_128x64, 3x3 (32, 128, 28x28), reads 74-83 us at K = 264-320 on five
H100 timings (the committed one and validation/data/h100-sxm/boards/), each a full pass over the
rows in file order (validation/remeasure.py). Nsight Compute's single launches (ncu_conv_misses/),
the block timelines' registered timing (block_trace_conv_tails/) and the dataset's own pass 2 read
69.8-72.5 us there, with the model (71.4 us at K = 296). This probe times those rows, and a few of
the convs' other misses, the way remeasure.py does (build, warm, ``time_call``, one row at a time),
in several contexts, in one process:

- ``stair``: the whole stair, K = 8 ... 512 in file order, as the dataset's pass 1 was timed;
- ``alone``: the probe rows only, each in a fresh memory pool (``free_all_blocks`` first);
- ``reverse``: the probe rows in reverse order, pool as left;
- ``spacer<i>``: the probe rows, each after a seeded spacer allocation (0-64 MiB, kept alive while the
  row is timed) that moves its buffers;
- ``stair_again``: the whole stair once more, last.

    PYTHONPATH=. python validation/order_probe.py --out DIR

writes ``DIR/order_probe.csv`` (context, kernel, shape, the timing columns, the input's device
address) row by row, and ``DIR/order_probe_env.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wavemodel.hardware import calibration_sweep as S  # noqa: E402

STAIR = ("conv_f16_128x64", (32, 128, 28, 28), range(8, 513, 8))
PROBE = [("conv_f16_128x64", (32, 128, 28, 28, k, 3, 3, 1, 1)) for k in (248, 256, 264, 280, 296, 312, 320,
                                                                           328, 344, 392)]
PROBE += [("conv_f16_128x128", (32, 64, 56, 56, k, 3, 3, 1, 1)) for k in (240, 248)]
PROBE += [(kernel, shape) for kernel in ("conv_f16_128x64", "conv_f16_128x128") for shape in (
    (2, 400, 112, 112, 576, 3, 3, 2, 1), (64, 120, 112, 112, 64, 1, 1, 1, 0),
    (16, 48, 112, 112, 64, 3, 3, 1, 1), (64, 152, 14, 14, 1840, 3, 3, 1, 1),
    (32, 24, 7, 7, 1472, 3, 3, 1, 1))]
SPACERS = 3
COLUMNS = ("context", "kernel", "n", "c", "h", "w", "k", "r", "s", "stride", "padding", "latency_us_median",
           "latency_us_p10", "latency_us_p90", "reps", "launches_per_graph", "rotation_sets", "x_address")


def stair_rows():
    kernel, (n, c, h, w), ks = STAIR
    return [(kernel, (n, c, h, w, k, 3, 3, 1, 1)) for k in ks]


def job(kernel: str, shape: tuple) -> S.Job:
    return S.Job("conv", "own", kernel, "fp16", tuple(shape), "probe")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    import cupy as cp

    from wavemodel.hardware.calls import Runner

    runner = Runner()
    pool = cp.get_default_memory_pool()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "order_probe.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)

        def time_rows(context: str, rows, fresh_pool: bool = False, spacer_seed: int | None = None):
            rng = random.Random(spacer_seed)
            for kernel, shape in rows:
                if fresh_pool:
                    pool.free_all_blocks()
                spacer = None if spacer_seed is None else cp.empty(rng.randrange(0, 64 << 20, 512), cp.uint8)
                call = runner.build(job(kernel, shape))
                runner.warm(call)
                t = runner.time_call(call)
                x_address = call.keep[0][0].data.ptr
                del call, spacer
                w.writerow([context, kernel, *shape, *(t[c] for c in COLUMNS[11:17]), x_address])
                f.flush()
            print(f"{context}: {len(rows)} rows", file=sys.stderr, flush=True)

        time_rows("stair", stair_rows())
        time_rows("alone", PROBE, fresh_pool=True)
        time_rows("reverse", PROBE[::-1])
        for i in range(SPACERS):
            time_rows(f"spacer{i}", PROBE, spacer_seed=i)
        time_rows("stair_again", stair_rows())
    env = runner.environment(" ".join(sys.argv)) | {"contexts": __doc__.split("in one process:")[1].strip()}
    (args.out / "order_probe_env.json").write_text(json.dumps(env, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
