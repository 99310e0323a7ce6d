"""``wavemodel validate DATA_DIR``: the model against measured datasets, per family, with the bounds.

Reads every dataset CSV in DATA_DIR (``validation/data/<gpu>/``), keeps the evaluation set (shapes
never used for calibration; ``--set``), pass 1 and rows whose timed graph replay lasted at least
0.5 ms (shorter ones are a timing failure of an earlier harness: counted and reported, never used),
predicts each row with the GPU's shipped profile (or ``--profile FILE``), and prints per family the
median / mean / p90 absolute percentage error, the share within 10 %, the bias and the bound of
issues 3 and 4. Exit status: 0 when every family with a bound meets it, 1 otherwise (also for
staircase violations with ``--strict-staircase``), 2 on bad input. ``--plots DIR`` writes one
predicted-vs-measured staircase PNG per staircase series and one scatter PNG per family.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .. import calibration
from .. import datasets as D
from .. import validate as V
from ..gpus import gpu as lookup_gpu
from ..latency import predict_latency
from ..plot import save, staircase_figure
from ..shapes import Conv2d, Gemm
from . import add_gpu_argument, add_json_argument, print_json, table

SETS = ("evaluation", "calibration", "all")
SHOWN_VIOLATIONS = 10
MAX_GRID_POINTS = 4000


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "validate", help="prediction error per family on measured datasets; exit 1 past the bounds",
        description="Compare the model with the datasets in DATA_DIR (e.g. validation/data/h100-sxm): "
                    "per-family errors on the evaluation set, the bounds of issues 3 and 4, the staircase "
                    "check, and predicted-vs-measured plots.")
    p.add_argument("data_dir", metavar="DATA_DIR", help="folder of dataset CSVs (gemm_*.csv, conv_*.csv)")
    p.add_argument("--set", default="evaluation", choices=SETS,
                   help="rows to score (default evaluation: shapes the calibration never saw)")
    add_gpu_argument(p)
    p.add_argument("--profile", metavar="FILE",
                   help="a profile JSON written by 'wavemodel calibrate' (default: the profile shipped for "
                        "--gpu, or the uncalibrated model when none ships)")
    p.add_argument("--families", nargs="+", metavar="FAMILY",
                   help="only these families (names or patterns such as 'own_*'); default all")
    p.add_argument("--plots", metavar="OUT_DIR", help="write staircase and scatter PNGs to OUT_DIR")
    p.add_argument("--keep-short-replays", action="store_true",
                   help="keep rows whose timed graph replay lasted under 0.5 ms (dropped by default)")
    p.add_argument("--strict-staircase", action="store_true",
                   help="exit 1 also when a measured staircase jump has no model boundary")
    add_json_argument(p)


# -------------------------------------------------------------------------------------------- inputs


def read_profile(path, gpu_name: str | None = None) -> dict[str, calibration.Profile]:
    """Profiles per group ("own", "cublas", "cudnn") of a profile JSON; ValueError if it is not one
    (or was made for another GPU than ``gpu_name``)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"--profile: {path} is not JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("backends"), dict):
        raise ValueError(f"--profile: {path} has no 'backends' object (not a wavemodel profile)")
    if gpu_name is not None and doc.get("gpu") not in (None, gpu_name):
        raise ValueError(f"--profile: {path} is for GPU {doc.get('gpu')!r}, not {gpu_name!r} (use --gpu)")
    return {group: calibration.profile_from_dict(d) for group, d in doc["backends"].items() if d}


def select_rows(loaded: D.Loaded, set_name: str, keep_short: bool, families=None):
    """(rows, dropped short replays, chosen families) for the command's options."""
    rows = D.select(loaded.rows, set=None if set_name == "all" else set_name, pass_="1")
    dropped = []
    if not keep_short:
        rows, dropped = D.drop_short_replays(rows)
    if not rows:
        raise ValueError(f"DATA_DIR: no pass-1 rows in the {set_name} set")
    chosen = V.match_families([D.family_of(r) for r in rows], families)
    rows = [r for r in rows if D.family_of(r) in chosen]
    return rows, dropped, chosen


def model_source(gpu, args_profile, calibrated: np.ndarray) -> str:
    if args_profile:
        return f"profile {args_profile}"
    if calibrated.all():
        return f"shipped profile data/profiles/{gpu.name}.json"
    if calibrated.any():
        return f"shipped profile data/profiles/{gpu.name}.json (some backends uncalibrated)"
    return f"uncalibrated catalogue defaults (no profile ships for {gpu.name})"


# --------------------------------------------------------------------------------------------- plots


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def series_file(s: V.Series) -> str:
    fixed = "_".join(f"{k}{v}" for k, v in s.fixed if not (k == "batch" and v == 1))
    return _slug(f"stair_{s.backend}_{s.dtype}_{s.group}_{fixed}") + ".png"


def _grid(x: np.ndarray, step: int) -> np.ndarray:
    """``step``-spaced points over the range of ``x`` (coarser when that makes over MAX_GRID_POINTS)."""
    span = int(x[-1] - x[0])
    if span // step > MAX_GRID_POINTS:
        step *= -(-span // (MAX_GRID_POINTS * step))
    return np.arange(int(x[0]), int(x[-1]) + 1, step)


def _series_shape(s: V.Series, values: np.ndarray, kind: str) -> Gemm | Conv2d:
    dims = dict(s.fixed) | {s.dim: values}
    return Gemm(**dims, dtype=s.dtype) if kind == "gemm" else Conv2d(**dims, dtype=s.dtype)


def staircase_plot(s: V.Series, rows, gpu, profiles) -> Figure:
    """Predicted latency on a fine grid over the series' range (model boundaries as dotted lines) with
    the measured points on top."""
    kind = rows[s.index[0][0]].kind
    profile = (profiles or {}).get(calibration.group_of(s.backend))
    data_step = int(np.gcd.reduce(s.x.astype(np.int64)))
    try:       # a fine grid (multiples of 8 where the data is) ...
        grid = _grid(s.x, math.gcd(data_step, 8))
        p = predict_latency(_series_shape(s, grid, kind), gpu, s.backend, profile=profile)
    except ValueError:   # ... unless the backend needs coarser alignment (fp8): the data's own spacing
        grid = _grid(s.x, data_step)
        p = predict_latency(_series_shape(s, grid, kind), gpu, s.backend, profile=profile)
    lat = np.broadcast_to(np.asarray(p.latency_s, dtype=float), grid.shape)
    flops = np.broadcast_to(np.asarray(p.flops, dtype=float), grid.shape)
    names = np.broadcast_to(np.array([c.name for c in np.atleast_1d(p.config)]), grid.shape)
    keys = [np.broadcast_to(np.asarray(v), grid.shape) for v in (p.tiles, p.waves)] + [names]
    changed = np.zeros(grid.size - 1, dtype=bool)
    for k in keys:
        changed |= k[1:] != k[:-1]
    mx = np.array([s.x[j] for j, ix in enumerate(s.index) for _ in ix], dtype=float)
    m_us = np.array([rows[i].latency_us for ix in s.index for i in ix])
    fixed = " ".join(f"{k}={v}" for k, v in s.fixed)
    title = f"{gpu.display_name} · {s.backend} {s.dtype} · {s.group}: {fixed}"
    xlabel = "k (output channels)" if kind == "conv" and s.dim == "k" else s.dim
    return staircase_figure(grid, lat, flops, steps=grid[1:][changed], measured=(mx, m_us), xlabel=xlabel,
                            title=title, label="predicted")


def scatter_plot(family: str, measured_s, predicted_s, stats: V.FamilyStats) -> Figure:
    """Predicted against measured latency (log-log) with the identity line and a +-10 % band."""
    fig = Figure(figsize=(6.5, 6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    m_us, p_us = np.asarray(measured_s) * 1e6, np.asarray(predicted_s) * 1e6
    lo, hi = min(m_us.min(), p_us.min()) / 1.3, max(m_us.max(), p_us.max()) * 1.3
    line = np.array([lo, hi])
    ax.fill_between(line, line * 0.9, line * 1.1, color="0.85", label="±10 %")
    ax.plot(line, line, "-", color="0.4", lw=1, label="predicted = measured")
    ax.scatter(m_us, p_us, s=8, alpha=0.6, color="C0", label=f"{family} (n={stats.n})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured latency (µs)")
    ax.set_ylabel("predicted latency (µs)")
    ax.set_title(f"{family}: median {stats.median_pct:.1f} %, p90 {stats.p90_pct:.1f} %, "
                 f"within 10 %: {100 * stats.within_10_share:.0f} %", fontsize="medium")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left", fontsize="small")
    return fig


def write_plots(out_dir, ev: V.Evaluation, series, stats, gpu, profiles) -> list[str]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for s in series:
        written.append(str(save(staircase_plot(s, ev.rows, gpu, profiles), out / series_file(s))))
    fam = np.asarray(ev.families, dtype=object)
    for st in stats:
        keep = fam == st.family
        fig = scatter_plot(st.family, ev.measured_s[keep], ev.predicted_s[keep], st)
        written.append(str(save(fig, out / f"scatter_{_slug(st.family)}.png")))
    return written


# ------------------------------------------------------------------------------------------- report


def _pct(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.2f}"


def stats_table(stats) -> str:
    rows = [[s.family, s.n, _pct(s.median_pct), _pct(s.mean_pct), _pct(s.p90_pct),
             _pct(100 * s.within_10_share), f"{s.bias_pct:+.2f}" if not math.isnan(s.bias_pct) else "-",
             str(s.bound) if s.bound else "-", s.status] for s in stats]
    return table(rows, ["family", "n", "median %", "mean %", "p90 %", "within 10 %", "bias %", "bound",
                        "result"])


def _dropped_by_file(dropped) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in dropped:
        out[r.source] = out.get(r.source, 0) + 1
    return dict(sorted(out.items()))


def run(args) -> int:
    spec = lookup_gpu(args.gpu)
    loaded = D.load_dir(args.data_dir)
    profiles = read_profile(args.profile, spec.name) if args.profile else None
    rows, dropped, _chosen = select_rows(loaded, args.set, args.keep_short_replays, args.families)
    ev = V.evaluate(rows, spec, profiles)
    stats = V.family_stats(ev.families, ev.relative_error)
    failed = V.failures(stats)
    series = V.staircase_series(ev.rows)
    violations = V.staircase_violations(ev, series)
    jumps = V.count_jumps(ev, series)
    plots = write_plots(args.plots, ev, series, stats, spec, profiles) if args.plots else []
    code = 1 if failed or (args.strict_staircase and violations) else 0
    source = model_source(spec, args.profile, ev.calibrated)
    by_file = _dropped_by_file(dropped)
    if args.json:
        print_json({
            "gpu": spec.name, "data_dir": str(args.data_dir), "set": args.set, "files": loaded.files,
            "skipped_files": loaded.skipped, "rows": len(rows), "model": source,
            "excluded_short_replays": {"rows": len(dropped), "by_file": by_file,
                                       "min_replay_us": D.MIN_REPLAY_US},
            "families": [{**{k: v for k, v in vars(s).items() if k != "bound"},
                          "bound": vars(s.bound) if s.bound else None, "result": s.status} for s in stats],
            "failures": failed,
            "staircase": {"series": len(series), "rises_over_5pct": jumps,
                          "violations": [{**vars(v), "rise": v.rise} for v in violations]},
            "plots": plots, "exit_code": code,
        })
        return code
    print(f"{spec}: {len(rows)} rows ({args.set} set, pass 1) from {', '.join(loaded.files)}")
    print(f"model: {source}")
    if dropped:
        parts = ", ".join(f"{f} {n}" for f, n in by_file.items())
        print(f"excluded: {len(dropped)} rows whose graph replay lasted under {D.MIN_REPLAY_US / 1e3:g} ms "
              f"(timing failure of an earlier harness): {parts}")
    print()
    print(stats_table(stats))
    print()
    print(f"staircases: {len(series)} series, {jumps} measured rises > {100 * V.STAIR_RISE:g} % between "
          f"consecutive points, {len(violations)} with no model boundary between them")
    worst = sorted(violations, key=lambda v: -v.rise)[:SHOWN_VIOLATIONS]
    for v in worst:
        print(f"  {v.series}: {v.dim} {v.x_before} -> {v.x_after}: measured {v.measured_us_before:.2f} "
              f"-> {v.measured_us_after:.2f} us (+{100 * v.rise:.1f} %), predicted "
              f"{v.predicted_us_before:.2f} -> {v.predicted_us_after:.2f} us")
    if len(violations) > len(worst):
        print(f"  ... {len(violations) - len(worst)} more (--json lists them all)")
    if plots:
        print(f"wrote {len(plots)} plots to {args.plots}")
    if failed:
        print("FAIL: " + "; ".join(failed))
    else:
        print("all error bounds met" + (" (staircase violations fail with --strict-staircase)"
                                        if violations and not args.strict_staircase else ""))
    return code
