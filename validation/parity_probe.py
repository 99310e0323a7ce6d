"""Does a strided conv's pixel parity show in its latency? C staircases at stride 1 and 2 on our convs.

    python validation/parity_probe.py predict --out DIR     # the model's predictions, before the run
    PYTHONPATH=. python validation/parity_probe.py time --out DIR         # on a GPU: the harness
    python validation/parity_probe.py compare DIR           # measured against both counts

Where a conv's channel rows start off 32-byte sectors (fp16 ``C % 16 == 8``) the model charges its
panels the sectors its thread pairs touch (``latency.channel_sector_ratios``). At stride 1 half of
a tap's pixels start off a sector; at stride 2 each tap reads pixels of one parity, so a 1x1 stride-2
conv over an even image reads every input row on a sector. The shapes here are C = 192 ... 240 in
steps of 8 (on, off, on, ... sectors) for 1x1 and 3x3 filters at stride 1 (56x56 images) and stride 2
(112x112, the same output), on both conv kernels. ``predict`` writes, per shape, the shipped model's
latency and the same model's with every tap's pixels taken as mixed in parity (the count before
commit 33bae61, with today's profile); ``compare`` prints the measured off-sector rows against both.
The shapes are checked against the committed datasets first (none may be one), and the rows go to the
set "evaluation": no fit reads them.
"""

from __future__ import annotations

import csv
import dataclasses
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import wavemodel as wm  # noqa: E402
from wavemodel import datasets as D  # noqa: E402
from wavemodel import latency as L  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "h100-sxm"
KERNELS = ("conv_f16_128x64", "conv_f16_128x128")
CHANNELS = tuple(range(192, 241, 8))
SERIES = {  # name: the shape but for C
    "1x1 s1": dict(n=32, h=56, w=56, k=512, r=1, s=1, stride=1, padding=0),
    "1x1 s2": dict(n=32, h=112, w=112, k=512, r=1, s=1, stride=2, padding=0),
    "3x3 s1": dict(n=16, h=56, w=56, k=256, r=3, s=3, stride=1, padding=1),
    "3x3 s2": dict(n=16, h=112, w=112, k=256, r=3, s=3, stride=2, padding=1),
}
COLUMNS = ("n", "c", "h", "w", "k", "r", "s", "stride", "padding")
PREDICTIONS = "parity_probe_predictions.csv"


def shapes() -> list[tuple[str, str, wm.Conv2d]]:
    """(kernel, series, shape) of every probe row."""
    return [(kernel, name, wm.Conv2d(c=c, **dims)) for kernel in KERNELS for name, dims in SERIES.items()
            for c in CHANNELS]


def _mixed_parity(shape, dtype):
    """The count with every tap's pixels of mixed parity (stride 1's), as before 33bae61."""
    return _RATIOS(dataclasses.replace(shape, stride=1), dtype)


_RATIOS = L.channel_sector_ratios


PREDICTED_WITH = "profile_predicted.json"   # the profile shipped when the predictions were written


def predict(kernel: str, shape: wm.Conv2d, mixed: bool = False, profile=None) -> float:
    """The model's latency in us, with ``profile`` (the shipped one by default); ``mixed``: with every
    tap's parity taken as mixed."""
    if mixed:
        L.channel_sector_ratios = _mixed_parity
    try:
        return float(wm.predict_latency(shape, "h100-sxm", kernel, profile=profile).latency_s) * 1e6
    finally:
        L.channel_sector_ratios = _RATIOS


def write_predictions(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / PREDICTIONS
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("kernel", "series", *COLUMNS, "predicted_us", "predicted_mixed_parity_us"))
        for kernel, name, sh in shapes():
            w.writerow((kernel, name, *(getattr(sh, c) for c in COLUMNS), f"{predict(kernel, sh):.3f}",
                        f"{predict(kernel, sh, mixed=True):.3f}"))
    return path


def time_rows(out: Path, windows: int) -> None:
    from validation.remeasure import held_out, time_and_write
    from wavemodel.hardware import calibration_sweep as S

    jobs = [S.Job("conv", "own", kernel, "fp16", tuple(int(getattr(sh, c)) for c in COLUMNS),
                  f"parity_{name.replace(' ', '_')}") for kernel, name, sh in shapes()]
    time_and_write(out, held_out(jobs, DATA), windows, {"conv": "conv_own_parity.csv"}, "evaluation",
                   "conv_own_parity_env.json", {"set": "evaluation (no fit saw these rows)"})


def comparison(folder: Path) -> list[dict]:
    """Per probe row: measured and both predictions (us), with the series and C."""
    with open(folder / PREDICTIONS, newline="") as f:
        pred = {(r["kernel"], tuple(int(r[c]) for c in COLUMNS)): r for r in csv.DictReader(f)}
    out = []
    for row in D.read_csv(folder / "conv_own_parity.csv"):
        p = pred[row.kernel, row.shape]
        out.append(dict(kernel=row.kernel, series=p["series"], c=row.dims["c"], measured=row.latency_us,
                        predicted=float(p["predicted_us"]), mixed=float(p["predicted_mixed_parity_us"])))
    return out


def compare(folder: Path) -> None:
    rows = comparison(folder)
    print("kernel            series  C    measured  model (error)      mixed parity (error)")
    for r in rows:
        e, em = r["predicted"] / r["measured"] - 1, r["mixed"] / r["measured"] - 1
        print(f"{r['kernel']:17s} {r['series']:7s} {r['c']:3d}  {r['measured']:8.1f}  {r['predicted']:8.1f} "
              f"({100 * e:+6.1f} %)  {r['mixed']:8.1f} ({100 * em:+6.1f} %)")
    off = [r for r in rows if r["c"] % 16 == 8 and r["series"].endswith("s2")]
    for key in ("predicted", "mixed"):
        err = np.abs([r[key] / r["measured"] - 1 for r in off]) * 100
        print(f"stride-2 off-sector rows ({len(off)}), {key}: median |error| {np.median(err):.1f} %, "
              f"max {err.max():.1f} %")


def main(argv=None) -> int:
    from validation.remeasure import probe_main

    return probe_main(argv, __doc__, write_predictions, time_rows, compare)


if __name__ == "__main__":
    sys.exit(main())
