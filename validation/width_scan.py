"""Measure a whole network's latency at a fine grid of uniform keep ratios (issue 5's ground truth).

    PYTHONPATH=. python3 validation/width_scan.py --out DIR [--network llama-7b-mlp] [--count 4096]
        [--keeps 0.45:0.55:0.0025,0.65:0.75:0.0025,...] [--windows 3] [--budget-s 0.3] [--deadline-s 540]
    python3 validation/width_scan.py --out DIR --summarize [--ratios 0.5,0.7,0.9]

Every point is the network with every prunable width times ``keep``, rounded to a multiple of 8
(``wavemodel.solver.uniform_widths``; points with the same widths are measured once), run as the
solver-benefit chain (``validation/solver_benefit.py``: every layer back to back, device time of
CUDA-graph replays). For a network with one width variable (the LLaMA MLP block's FFN width) the
grid is every width the solver could pick, so the scan bounds what any width choice can buy: at
equal measured latency, how many more channels than the uniform width; at equal channels, how much
less latency.

The grid is timed ``--windows`` times, one full pass per window (alternating direction), so a slow
state of the card that lasts a few seconds moves one window of a point, and the summary keeps each
point's median window. Every timing records the SM clock and board power NVML read while it ran
(``wavemodel.hardware.clocks``). Rows are appended to ``DIR/width_scan_<network>_<count>.csv`` as they are
measured and a rerun skips (point, window) pairs already there; ``DIR/width_scan_<network>_<count>_env.json``
records the device.

``--summarize`` (no GPU) prints, per keep ratio, the uniform point against the best scanned point at
equal measured latency (within 1 %) and at equal channels, and writes the staircase plot
``DIR/width_scan_<network>_<count>.png`` (measured median with the windows' range, and the model).
"""

from __future__ import annotations

import argparse
import math
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import wavemodel as wm  # noqa: E402
from validation.solver_benefit import append_csv_row, read_csv_rows, window_order  # noqa: E402
from wavemodel import networks as N  # noqa: E402
from wavemodel import solver as S  # noqa: E402

HEADER = ("network", "count", "dtype", "keep", "total_channels", "widths", "window", "latency_us_median",
          "latency_us_p10", "latency_us_p90", "reps", "sm_mhz_mean", "sm_mhz_min", "power_w_mean",
          "power_w_max", "latency_us_predicted")
DTYPE = "fp16"
ALIGNMENT = 8
EQUAL_LATENCY = 0.01        # "equal" measured latency: within 1 % (solver_benefit.py's rule)


@dataclass(frozen=True)
class Point:
    keep: float
    widths: dict
    total_channels: int
    latency_us_predicted: float

    @property
    def widths_text(self) -> str:
        return " ".join(f"{k}={v}" for k, v in sorted(self.widths.items()))


def parse_grid(text: str) -> list[float]:
    """Comma-separated keep ratios in (0, 1], each a value or a range ``a:b:step`` (b included where it
    falls on the grid), in the order given."""
    values: list[float] = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        parts = item.split(":")
        if len(parts) == 1:
            values.append(float(item))
            continue
        if len(parts) != 3:
            raise ValueError(f"keep ratios: expected a value or a:b:step, got {item!r}")
        a, b, step = (float(x) for x in parts)
        if step <= 0 or b < a:
            raise ValueError(f"keep ratios: need a <= b and step > 0, got {item!r}")
        n = int((b - a) / step + 1e-9)
        values.extend(round(a + i * step, 10) for i in range(n + 1))
    bad = [v for v in values if not 0 < v <= 1]
    if bad or not values:
        raise ValueError(f"keep ratios: must lie in (0, 1], got {bad or text!r}")
    return values


def plan(network: str, count: int, keeps, gpu: str = "h100-sxm", dtype: str = DTYPE) -> list[Point]:
    """The distinct uniform-width points of ``keeps`` (first keep ratio of each widths), model only."""
    net = N.load_network(network)
    spec = wm.gpu(gpu)
    seen, points = set(), []
    for keep in keeps:
        widths = S.uniform_widths(net, keep, ALIGNMENT)
        key = tuple(sorted(widths.items()))
        if key in seen:
            continue
        seen.add(key)
        lat_s, _ = S.network_latency(net, widths, spec, count, dtype)
        points.append(Point(keep, widths, sum(widths.values()), lat_s * 1e6))
    return points


def csv_path(out: Path, network: str, count: int, dtype: str = DTYPE) -> Path:
    suffix = "" if dtype == DTYPE else f"_{dtype}"
    return out / f"width_scan_{network}_{count}{suffix}.csv"


def read_rows(path: Path) -> list[dict]:
    return read_csv_rows(path, HEADER)


def done_keys(rows: list[dict]) -> set[tuple[int, int]]:
    return {(int(r["total_channels"]), int(r["window"])) for r in rows}


def append_row(path: Path, row: dict) -> None:
    append_csv_row(path, HEADER, row)


# ------------------------------------------------------------------------------------------ summary


def medians(rows: list[dict]) -> list[dict]:
    """Per point (total channels): the median window's latency, its range and the model's, by channels."""
    by: dict[int, list[dict]] = {}
    for r in rows:
        by.setdefault(int(r["total_channels"]), []).append(r)
    out = []
    for ch, rs in sorted(by.items()):
        lat = sorted(float(r["latency_us_median"]) for r in rs)
        out.append(dict(total_channels=ch, keep=min(float(r["keep"]) for r in rs), windows=len(rs),
                        widths=rs[0]["widths"], dtype=rs[0].get("dtype", DTYPE),
                        measured_us=lat[(len(lat) - 1) // 2], measured_min_us=min(lat),
                        measured_max_us=max(lat),
                        predicted_us=float(rs[0]["latency_us_predicted"]),
                        sm_mhz=statistics.median(float(r["sm_mhz_mean"]) for r in rs),
                        power_w=statistics.median(float(r["power_w_mean"]) for r in rs)))
    return out


def best_against(points: list[dict], ratio_channels: int) -> dict:
    """For the uniform point with ``ratio_channels``: the most channels of any scanned point at equal
    measured latency (within EQUAL_LATENCY), and the least measured latency at equal or more channels."""
    ref = next(p for p in points if p["total_channels"] == ratio_channels)
    at_latency = max((p for p in points if p["measured_us"] <= ref["measured_us"] * (1 + EQUAL_LATENCY)),
                     key=lambda p: p["total_channels"])
    at_channels = min((p for p in points if p["total_channels"] >= ratio_channels),
                      key=lambda p: p["measured_us"])
    return dict(uniform=ref, more_channels=at_latency["total_channels"] / ref["total_channels"] - 1,
                at_latency=at_latency, saving=1 - at_channels["measured_us"] / ref["measured_us"],
                at_channels=at_channels)


def with_model(points: list[dict], network: str, count: int, dtype: str, gpu: str) -> list[dict]:
    """``points`` with the current model's predictions: ``model_us`` (a sustained run, under the
    board's power limit where the profile knows it) and ``wave_model_us`` (the wave model alone)."""
    net = N.load_network(network)
    out = []
    for p in points:
        widths = {k: int(v) for k, v in (x.split("=") for x in p["widths"].split())}
        sus, _ = S.network_latency(net, widths, gpu, count, dtype)
        wave, _ = S.network_latency(net, widths, gpu, count, dtype, sustained=False)
        out.append(p | {"model_us": sus * 1e6, "wave_model_us": wave * 1e6})
    return out


def _error_line(name: str, points: list[dict], key: str) -> str:
    err = sorted(p[key] / p["measured_us"] - 1 for p in points)
    mag = sorted(abs(e) for e in err)
    return (f"{name}: median |error| {statistics.median(mag):.1%}, p90 {mag[int(0.9 * (len(mag) - 1))]:.1%}, "
            f"median error {statistics.median(err):+.1%}")


def summary_lines(points: list[dict], network: str, ratios, net: N.Network) -> list[str]:
    lines = [f"{network}: {len(points)} widths, median of {min(p['windows'] for p in points)}+ windows"]
    if "model_us" in points[0]:
        lines += [_error_line("model (sustained run, power floor; all points)", points, "model_us"),
                  _error_line("wave model alone", points, "wave_model_us")]
    lines.append("keep  uniform ch  measured us  | most ch at equal latency (+%)  "
                 "| least us at >= ch (saving)")
    for r in ratios:
        ch = sum(S.uniform_widths(net, r, ALIGNMENT).values())
        if not any(p["total_channels"] == ch for p in points):
            lines.append(f"{r:<5g} {ch:>10}  not scanned")
            continue
        b = best_against(points, ch)
        lines.append(f"{r:<5g} {ch:>10}  {b['uniform']['measured_us']:>11.1f}  | "
                     f"{b['at_latency']['total_channels']:>6} ({b['more_channels']:+.1%}) "
                     f"at {b['at_latency']['measured_us']:.1f} us | {b['at_channels']['total_channels']:>6} "
                     f"at {b['at_channels']['measured_us']:.1f} us ({b['saving']:+.1%})")
    return lines


def _gapped(x: list[float], *ys: list[float]):
    """Copies with a NaN between points more than 3x the median spacing apart (no line across gaps)."""
    steps = sorted(b - a for a, b in zip(x, x[1:], strict=False))
    cut = 3 * steps[len(steps) // 2] if steps else math.inf
    out = [[x[0]] if x else [], *([y[0]] if y else [] for y in ys)]
    for i in range(1, len(x)):
        if x[i] - x[i - 1] > cut:
            for o in out:
                o.append(math.nan)
        out[0].append(x[i])
        for o, y in zip(out[1:], ys, strict=True):
            o.append(y[i])
    return out


def plot(points: list[dict], network: str, gpu_label: str, path: Path) -> None:
    """Measured (median window, with the windows' range) and predicted latency against channels; below,
    the SM clock and board power the timings ran at."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax, ax_clk = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.3])
    x, lo, hi, med, pred, wave, mhz, watts = _gapped(
        [p["total_channels"] for p in points], *([p[k] for p in points] for k in (
            "measured_min_us", "measured_max_us", "measured_us", "model_us", "wave_model_us", "sm_mhz",
            "power_w")))
    ax.fill_between(x, lo, hi, alpha=0.25, color="C1", label="measured: range of the windows")
    ax.plot(x, med, "o-", ms=3, lw=1, color="C1", label="measured: median window")
    ax.plot(x, pred, ".-", ms=3, lw=1, color="C0", label="model (sustained run: power floor)")
    ax.plot(x, wave, "-", lw=0.8, color="0.5", label="wave model alone")
    ax.set_ylabel("latency of the block (us)")
    ax.set_title(f"{network} on {gpu_label}: measured vs predicted")
    ax.grid(alpha=0.3)
    ax.legend()
    ax_clk.plot(x, mhz, ".-", ms=3, lw=1, color="C2", label="SM clock (MHz, median window)")
    ax_clk.set_ylabel("SM clock (MHz)")
    ax_clk.grid(alpha=0.3)
    ax_pow = ax_clk.twinx()
    ax_pow.plot(x, watts, ".-", ms=2, lw=0.8, color="C3", label="board power (W)")
    ax_pow.set_ylabel("board power (W)")
    ax_clk.legend(handles=[*ax_clk.get_lines(), *ax_pow.get_lines()], loc="lower right")
    ax_clk.set_xlabel("total channels (uniform keep ratio, widths rounded to multiples of 8)")
    fig.savefig(path, dpi=120)


# ------------------------------------------------------------------------------------------ device


def measure_all(points: list[Point], path: Path, network: str, count: int, windows: int, budget_s: float,
                deadline_s: float, dtype: str = DTYPE) -> int:
    import torch

    from validation.solver_benefit import chain_launch
    from wavemodel.hardware.clocks import ClockSampler, nvml_reader
    from wavemodel.hardware.timing import time_device

    torch.backends.cudnn.benchmark = True
    net = N.load_network(network)
    read = nvml_reader()
    done = done_keys(read_rows(path))
    start, n = time.monotonic(), 0
    todo = sum((p.total_channels, w) not in done for w in range(windows) for p in points)
    for w in range(windows):
        for p in window_order(points, w):
            if (p.total_channels, w) in done:
                continue
            if time.monotonic() - start > deadline_s:
                print(f"deadline: stopped after {n} of {todo} timings; rerun to resume", flush=True)
                return n
            launch = chain_launch(net, p.widths, count, dtype)
            with ClockSampler(read) as clocks:
                t = time_device(launch, budget_s=budget_s, framework="torch")
            c = clocks.summary()
            append_row(path, dict(
                network=network, count=count, dtype=dtype, keep=f"{p.keep:g}",
                total_channels=p.total_channels, widths=p.widths_text, window=w,
                latency_us_median=f"{t.median_s * 1e6:.3f}",
                latency_us_p10=f"{t.p10_s * 1e6:.3f}", latency_us_p90=f"{t.p90_s * 1e6:.3f}", reps=t.reps,
                sm_mhz_mean=f"{c.sm_mhz_mean:.0f}", sm_mhz_min=f"{c.sm_mhz_min:.0f}",
                power_w_mean=f"{c.power_w_mean:.0f}", power_w_max=f"{c.power_w_max:.0f}",
                latency_us_predicted=f"{p.latency_us_predicted:.3f}"))
            n += 1
            print(f"[{n}/{todo}] w{w} {p.widths_text}: {t.median_s * 1e6:.1f} us at {c.sm_mhz_mean:.0f} MHz "
                  f"{c.power_w_mean:.0f} W (model {p.latency_us_predicted:.1f})", flush=True)
            del launch
            torch.cuda.empty_cache()
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for the CSV, env.json and plot")
    ap.add_argument("--network", default="llama-7b-mlp")
    ap.add_argument("--count", type=int, help="batch or tokens (default: solver_benefit.py's)")
    ap.add_argument("--keeps", default="0.45:0.55:0.0025,0.65:0.75:0.0025,0.85:0.95:0.0025")
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=0.3, help="timing budget per point and window")
    ap.add_argument("--deadline-s", type=float, default=540.0, help="stop starting timings after this long")
    ap.add_argument("--gpu", default="h100-sxm", help="catalogue name for the model's predictions")
    ap.add_argument("--dtype", default=DTYPE, choices=("fp16", "bf16"))
    ap.add_argument("--summarize", action="store_true", help="no GPU: summary and plot of the CSV")
    ap.add_argument("--ratios", default="0.5,0.7,0.9")
    args = ap.parse_args(argv)
    from validation.solver_benefit import NETWORKS

    net = N.load_network(args.network)
    count = args.count or NETWORKS.get(args.network)
    if count is None:
        ap.error(f"--count: needed for {args.network} (no default)")
    if args.windows < 1:
        ap.error("--windows: must be >= 1")
    try:
        keeps = parse_grid(args.keeps)
        ratios = parse_grid(args.ratios)
    except ValueError as e:
        ap.error(str(e))
    out = Path(args.out)
    path = csv_path(out, args.network, count, args.dtype)
    if args.summarize:
        points = medians(read_rows(path))
        if not points:
            ap.error(f"{path}: no rows")
        points = with_model(points, args.network, count, points[0]["dtype"], args.gpu)
        print("\n".join(summary_lines(points, args.network, ratios, net)))
        title = f"{args.network} ({count} {net.count}, {args.dtype})"
        plot(points, title, args.gpu, path.with_suffix(".png"))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    points = plan(args.network, count, keeps, args.gpu, args.dtype)
    from wavemodel.hardware.device import write_environment

    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    env_path = path.with_name(path.stem + "_env.json")
    if not env_path.exists():
        write_environment(env_path, command, points=len(points), windows=args.windows, budget_s=args.budget_s,
                          count=count, dtype=args.dtype, alignment=ALIGNMENT)
    n = measure_all(points, path, args.network, count, args.windows, args.budget_s, args.deadline_s,
                    args.dtype)
    print(f"{path}: {n} timings appended")
    return 0


if __name__ == "__main__":
    sys.exit(main())
