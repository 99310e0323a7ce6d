"""Do our convs write C faster where its rows fill whole 128-byte lines? K staircases across multiples of 64.

    python validation/line_probe.py predict --out DIR     # the model's predictions, before the run
    PYTHONPATH=. python validation/line_probe.py time --out DIR       # on a GPU: the harness
    python validation/line_probe.py compare DIR           # measured against both predictions

Where rows of C start off 128-byte lines (fp16 ``K % 64 != 0``) the model charges C's writes
``partial_line_write_factor`` times their write time (``latency.partial_line_write_s``): the fit gives
conv_f16_128x64 about 1.2-1.3 and conv_f16_128x128 about 1. The shapes here are output-heavy convs
at K = 64 j - 16 ... 64 j + 16 in steps of 8 (one on lines, four off), on both conv kernels. ``predict``
writes, per shape, the shipped model's latency and the same profile's with the factor set to 1;
``compare`` prints the measured rows against both and against the model shipped now (the profile that
wrote the predictions is kept beside them, ``profile_predicted.json``) and, per series, the measured
and predicted ratio of the on-line point to the mean of its neighbours. The shapes are checked
against the committed datasets first (none may be one), and the rows go to the set "evaluation": no
fit reads them.
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
from wavemodel import calibration  # noqa: E402
from wavemodel import datasets as D  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "h100-sxm"
KERNELS = ("conv_f16_128x64", "conv_f16_128x128")
SERIES = {  # name: (the shape but for K, the K values)
    "1x1 C64 K256": (dict(n=16, c=64, h=56, w=56, r=1, s=1, stride=1, padding=0), (240, 248, 256, 264, 272)),
    "1x1 C64 K512": (dict(n=32, c=64, h=56, w=56, r=1, s=1, stride=1, padding=0), (496, 504, 512, 520, 528)),
    "1x1 C128 K1024": (dict(n=32, c=128, h=28, w=28, r=1, s=1, stride=1, padding=0),
                       (1008, 1016, 1024, 1032, 1040)),
    "3x3 s2 C32 K256": (dict(n=16, c=32, h=112, w=112, r=3, s=3, stride=2, padding=1),
                        (240, 248, 256, 264, 272)),
}
COLUMNS = ("n", "c", "h", "w", "k", "r", "s", "stride", "padding")
PREDICTIONS = "line_probe_predictions.csv"
PREDICTED_WITH = "profile_predicted.json"   # the profile shipped when the predictions were written


def shapes() -> list[tuple[str, str, wm.Conv2d]]:
    """(kernel, series, shape) of every probe row."""
    return [(kernel, name, wm.Conv2d(k=k, **dims)) for kernel in KERNELS
            for name, (dims, ks) in SERIES.items() for k in ks]


def predict(kernel: str, shape: wm.Conv2d, factor: float | None = None, profile=None) -> float:
    """The model's latency in us with ``profile`` (the shipped one by default); with ``factor``, every conv
    family's partial_line_write_factor set to it (1: no charge)."""
    if factor is not None:
        base = profile or calibration.profile_for(wm.gpu("h100-sxm"), "own")
        fams = {f: ({**p, "partial_line_write_factor": factor} if f.startswith("conv") else p)
                for f, p in base.families.items()}
        profile = dataclasses.replace(base, families=fams)
    return float(wm.predict_latency(shape, "h100-sxm", kernel, profile=profile).latency_s) * 1e6


def write_predictions(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / PREDICTIONS
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("kernel", "series", *COLUMNS, "predicted_us", "predicted_without_us"))
        for kernel, name, sh in shapes():
            w.writerow((kernel, name, *(getattr(sh, c) for c in COLUMNS), f"{predict(kernel, sh):.3f}",
                        f"{predict(kernel, sh, factor=1.0):.3f}"))
    return path


def jobs():
    from wavemodel.hardware import calibration_sweep as S

    return [S.Job("conv", "own", kernel, "fp16", tuple(int(getattr(sh, c)) for c in COLUMNS), "line_probe")
            for kernel, _, sh in shapes()]


def time_rows(out: Path, windows: int) -> None:
    from validation.remeasure import held_out, time_and_write

    time_and_write(out, held_out(jobs(), DATA), windows, {"conv": "conv_own_lines.csv"}, "evaluation",
                   "conv_own_lines_env.json", {"set": "evaluation (no fit saw these rows)"})


def comparison(folder: Path) -> list[dict]:
    """Per probe row: measured and both predictions (us), with the series and K."""
    with open(folder / PREDICTIONS, newline="") as f:
        pred = {(r["kernel"], tuple(int(r[c]) for c in COLUMNS)): r for r in csv.DictReader(f)}
    out = []
    for row in D.read_csv(folder / "conv_own_lines.csv"):
        p = pred[row.kernel, row.shape]
        out.append(dict(kernel=row.kernel, series=p["series"], k=row.dims["k"], measured=row.latency_us,
                        predicted=float(p["predicted_us"]), without=float(p["predicted_without_us"])))
    return out


def with_model_now(rows: list[dict]) -> list[dict]:
    """``rows`` with the shipped model's latency (us) added as ``now``."""
    by = {(kernel, name, sh.k): sh for kernel, name, sh in shapes()}
    return [{**r, "now": predict(r["kernel"], by[r["kernel"], r["series"], r["k"]])} for r in rows]


def line_ratios(rows: list[dict]) -> dict:
    """Per (kernel, series): the on-line point over the mean of its four off-line neighbours, measured,
    under both predictions and, where the rows carry it (``with_model_now``), under the model now."""
    out = {}
    for kernel in KERNELS:
        for name in SERIES:
            mine = [r for r in rows if r["kernel"] == kernel and r["series"] == name]
            on = [r for r in mine if r["k"] % 64 == 0]
            off = [r for r in mine if r["k"] % 64 != 0]
            if len(on) == 1 and off:
                out[kernel, name] = {key: on[0][key] / float(np.mean([r[key] for r in off]))
                                     for key in ("measured", "predicted", "without", "now") if key in on[0]}
    return out


def compare(folder: Path) -> None:
    rows = with_model_now(comparison(folder))
    print("kernel            series            K     measured  model (error)      without (error)    "
          "now (error)")
    for r in rows:
        e, e0, en = (r[key] / r["measured"] - 1 for key in ("predicted", "without", "now"))
        print(f"{r['kernel']:17s} {r['series']:16s} {r['k']:5d}  {r['measured']:8.1f}  {r['predicted']:8.1f} "
              f"({100 * e:+6.1f} %)  {r['without']:8.1f} ({100 * e0:+6.1f} %)  {r['now']:8.1f} "
              f"({100 * en:+6.1f} %)")
    print("on-line point / mean of its neighbours: measured, model, without, now")
    for (kernel, name), v in line_ratios(rows).items():
        print(f"{kernel:17s} {name:16s} {v['measured']:.3f} {v['predicted']:.3f} {v['without']:.3f} "
              f"{v['now']:.3f}")
    for key in ("predicted", "without", "now"):
        err = np.abs([r[key] / r["measured"] - 1 for r in rows]) * 100
        print(f"{key}: median |error| {np.median(err):.1f} %, p90 {np.percentile(err, 90):.1f} %, "
              f"{int((err > 8).sum())} of {len(err)} past 8 %")


def main(argv=None) -> int:
    from validation.remeasure import probe_main

    return probe_main(argv, __doc__, write_predictions, time_rows, compare)


if __name__ == "__main__":
    sys.exit(main())
