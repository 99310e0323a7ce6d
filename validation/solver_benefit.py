"""Measure what the width solver buys on a GPU (issue 5): uniform keep ratios against the solver's widths.

    PYTHONPATH=. python3 validation/solver_benefit.py [--out validation/data/<gpu>/solver_benefit.csv]
        [--ratios 0.5,0.7,0.9] [--networks resnet50,llama-7b-mlp] [--budget-s 0.5] [--dry-run]

Networks: ResNet-50 (cuDNN convolutions through torch, channels_last fp16, batch 32,
``torch.backends.cudnn.benchmark = True``, and the classifier GEMM) and the LLaMA-7B MLP block
(``torch.matmul`` fp16, 4096 tokens). Every layer the model predicts runs back to back on its own
input (no activations, normalisation or pooling: the same chain the model sums), and the chain's
device time is one ``launch`` for ``wavemodel.hardware.timing.time_device`` (CUDA-graph replays timed
with events; a chain's working set is far beyond twice the L2, so inputs are not rotated).

Rows, per network and keep ratio (method):

* ``uniform``: every prunable width times the ratio, rounded to a multiple of 8 (ratio 1.0: the
  original network, for the model's absolute error);
* ``solver``: ``solve_network(keep=ratio)``: the most channels within the uniform network's predicted
  latency (the "more channels at equal latency" comparison);
* ``solver_min_latency``: ``solve_network(keep=ratio, match="channels")``: the least predicted latency
  keeping at least the uniform network's channels (the "lower latency at equal channels" comparison).

Both solver rows keep at least the uniform network's channels. The CSV
(``network,keep_ratio,method,total_channels,latency_us_measured,latency_us_predicted``) is appended
row by row and resumed (rows already there are skipped; a different header is refused). Every row is
timed ``--windows`` times, one pass over all rows per window (odd windows backwards), each timing
logged with the SM clock and power NVML read during it in ``<out stem>_windows.csv`` (resumed too);
a row enters the CSV with its median window once all its windows ran. The env.json
beside it records the device, the command and every row's widths. At the end the predicted and
measured savings are printed side by side and written to ``solver_benefit_summary.md``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import wavemodel as wm  # noqa: E402
from wavemodel import networks as N  # noqa: E402
from wavemodel import solver as S  # noqa: E402

HEADER = ("network", "keep_ratio", "method", "total_channels", "latency_us_measured", "latency_us_predicted")
NETWORKS = {"resnet50": 32, "llama-7b-mlp": 4096}       # network -> batch / tokens
RATIOS = (0.5, 0.7, 0.9)
METHODS = ("uniform", "solver", "solver_min_latency")
DTYPE = "fp16"
ALIGNMENT = 8
LATENCY_TARGET = 0.10     # issue 5: >= 10% lower measured latency at equal (or more) channels
CHANNEL_TARGET = 0.05     # ... or >= 5% more channels at equal measured latency
EQUAL_LATENCY = 0.01      # "equal" measured latency: within 1% (about the harness's noise floor)


@dataclass(frozen=True)
class Planned:
    network: str
    count: int
    keep_ratio: float
    method: str
    widths: dict
    total_channels: int
    latency_us_predicted: float

    @property
    def key(self) -> tuple:
        return (self.network, f"{self.keep_ratio:g}", self.method)


# ------------------------------------------------------------------------------------------ pure parts


def plan(gpu, networks=tuple(NETWORKS), ratios=RATIOS, max_change=S.DEFAULT_MAX_CHANGE,
         counts=None) -> list[Planned]:
    """Every row to measure, with its widths and predicted latency (model only: runs on the CPU)."""
    spec = wm.gpu(gpu)
    counts = NETWORKS | dict(counts or {})
    rows = []
    for name in networks:
        net = N.load_network(name)
        n = counts[name]
        base_ch = sum(net.original_widths.values())
        base_s, _ = S.network_latency(net, None, spec, n, DTYPE)
        rows.append(Planned(name, n, 1.0, "uniform", net.original_widths, base_ch, base_s * 1e6))
        for r in ratios:
            uni = S.uniform_widths(net, r, ALIGNMENT)
            lat, _ = S.network_latency(net, uni, spec, n, DTYPE)
            rows.append(Planned(name, n, r, "uniform", uni, sum(uni.values()), lat * 1e6))
            for method, match in (("solver", "latency"), ("solver_min_latency", "channels")):
                sol = S.solve_network(net, spec, count=n, dtype=DTYPE, keep=r, match=match,
                                      max_change=max_change, alignment=ALIGNMENT)
                rows.append(Planned(name, n, r, method, sol.widths_after, sol.channels_after,
                                    sol.latency_after_s * 1e6))
    return rows


def read_csv_rows(path: Path, header) -> list[dict]:
    """The rows of a resumable CSV (none if it is missing or empty); a file with another header is
    refused (never overwritten)."""
    if not path.exists() or path.stat().st_size == 0:
        return []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != tuple(header):
            raise ValueError(f"{path}: header {reader.fieldnames} differs from {list(header)}; "
                             "move the file away to start a new one")
        return list(reader)


def read_rows(path: Path) -> list[dict]:
    """The rows already measured."""
    return read_csv_rows(path, HEADER)


def row_key(row: dict) -> tuple:
    return (row["network"], f"{float(row['keep_ratio']):g}", row["method"])


def pending(planned: list[Planned], done: list[dict]) -> list[Planned]:
    keys = {row_key(r) for r in done}
    return [p for p in planned if p.key not in keys]


def append_csv_row(path: Path, fieldnames, row: dict) -> None:
    """Append ``row`` to the CSV at ``path`` (its header first where the file is new), flushed to disk:
    an interrupted run loses no row it measured."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fieldnames)
        if new:
            w.writeheader()
        w.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def append_row(path: Path, p: Planned, latency_us_measured: float) -> dict:
    """Append one row (header first for a new file), flushed to disk."""
    row = {"network": p.network, "keep_ratio": f"{p.keep_ratio:g}", "method": p.method,
           "total_channels": p.total_channels, "latency_us_measured": f"{latency_us_measured:.3f}",
           "latency_us_predicted": f"{p.latency_us_predicted:.3f}"}
    append_csv_row(path, HEADER, row)
    return row


WINDOW_HEADER = ("network", "keep_ratio", "method", "window", "latency_us_measured", "latency_us_p10",
                 "latency_us_p90", "sm_mhz_mean", "power_w_mean")


def window_log_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}_windows.csv")


def read_windows(path: Path) -> dict[tuple, dict[int, float]]:
    """Window log: per row key, window -> measured median latency (us)."""
    out: dict[tuple, dict[int, float]] = {}
    for r in read_csv_rows(path, WINDOW_HEADER):
        out.setdefault(row_key(r), {})[int(r["window"])] = float(r["latency_us_measured"])
    return out


def append_window(path: Path, p: Planned, window: int, timing, clocks) -> None:
    values = [p.network, f"{p.keep_ratio:g}", p.method, window, f"{timing.median_s * 1e6:.3f}",
              f"{timing.p10_s * 1e6:.3f}", f"{timing.p90_s * 1e6:.3f}", f"{clocks.sm_mhz_mean:.0f}",
              f"{clocks.power_w_mean:.0f}"]
    append_csv_row(path, WINDOW_HEADER, dict(zip(WINDOW_HEADER, values, strict=True)))


def window_order(items: list, window: int) -> list:
    """Every window times every item; odd windows go backwards, so a drift over a pass tilts no
    item (a method, a width) against another."""
    return list(reversed(items)) if window % 2 else list(items)


def median_of_windows(by_window: dict[int, float], windows: int) -> float | None:
    """The median of windows 0 .. windows-1 (the lower middle for an even count); None until all ran."""
    if any(w not in by_window for w in range(windows)):
        return None
    return sorted(by_window[w] for w in range(windows))[(windows - 1) // 2]


def summarize(rows: list[dict]) -> list[dict]:
    """Per network, ratio and solver method: channels, predicted and measured latency against uniform."""
    by = {row_key(r): r for r in rows}
    out = []
    for (net, ratio, method), r in sorted(by.items()):
        if method == "uniform":
            continue
        u = by.get((net, ratio, "uniform"))
        if u is None:
            continue
        ch_u, ch_s = int(u["total_channels"]), int(r["total_channels"])
        pu, ps = float(u["latency_us_predicted"]), float(r["latency_us_predicted"])
        mu, ms = float(u["latency_us_measured"]), float(r["latency_us_measured"])
        saving_meas = 1 - ms / mu
        more = ch_s / ch_u - 1
        meets = (ch_s >= ch_u and saving_meas >= LATENCY_TARGET) or (
            more >= CHANNEL_TARGET and ms <= mu * (1 + EQUAL_LATENCY))
        out.append(dict(network=net, keep_ratio=float(ratio), method=method, channels_uniform=ch_u,
                        channels_solver=ch_s, more_channels=more, predicted_us_uniform=pu,
                        predicted_us_solver=ps, saving_predicted=1 - ps / pu, measured_us_uniform=mu,
                        measured_us_solver=ms, saving_measured=saving_meas, meets_target=meets))
    return out


def summary_markdown(summary: list[dict], gpu: str) -> str:
    lines = [f"# Width solver against uniform keep ratios on {gpu}", "",
             "Saving = 1 - solver / uniform latency (positive: the solver's widths are faster). "
             f"Target (issue 5): >= {LATENCY_TARGET:.0%} lower measured latency at equal or more channels, "
             f"or >= {CHANNEL_TARGET:.0%} more channels at equal measured latency "
             f"(within {EQUAL_LATENCY:.0%}).", "",
             "| network | keep | method | channels uniform -> solver "
             "| predicted us uniform -> solver (saving) | measured us uniform -> solver (saving) | target |",
             "|---|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(
            f"| {s['network']} | {s['keep_ratio']:g} | {s['method']} | {s['channels_uniform']} -> "
            f"{s['channels_solver']} ({s['more_channels']:+.1%}) | {s['predicted_us_uniform']:.1f} -> "
            f"{s['predicted_us_solver']:.1f} ({s['saving_predicted']:+.1%}) | "
            f"{s['measured_us_uniform']:.1f} -> {s['measured_us_solver']:.1f} "
            f"({s['saving_measured']:+.1%}) | {'met' if s['meets_target'] else 'missed'} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ device parts


def chain_launch(net: N.Network, widths: dict, count: int, dtype: str = DTYPE):
    """``launch(i)``: every layer of ``net`` at ``widths`` back to back on the current torch stream.

    Convolutions are channels_last ``conv2d`` (cuDNN), GEMMs ``torch.matmul`` into preallocated outputs.
    """
    import torch
    import torch.nn.functional as F

    tdt = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    dev = torch.device("cuda")
    calls = []
    for layer in net.layers:
        sh = N.layer_shape(layer, count, dtype, in_width=widths.get(layer.in_var),
                           out_width=widths.get(layer.out_var), tp=net.tp)
        if isinstance(sh, wm.Conv2d):
            cl = torch.channels_last
            x = torch.randn(sh.n, sh.c, sh.h, sh.w, dtype=tdt, device=dev).to(memory_format=cl)
            w = (torch.randn(sh.k, sh.c // sh.groups, sh.r, sh.s, dtype=tdt, device=dev) * 0.05).to(
                memory_format=cl)
            calls.append(lambda x=x, w=w, sh=sh: F.conv2d(x, w, None, sh.stride, sh.padding, sh.dilation,
                                                          sh.groups))
        else:
            a = torch.randn(sh.m, sh.k, dtype=tdt, device=dev)
            b = torch.randn(sh.k, sh.n, dtype=tdt, device=dev) * 0.05
            out = torch.empty(sh.m, sh.n, dtype=tdt, device=dev)
            calls.append(lambda a=a, b=b, out=out: torch.matmul(a, b, out=out))

    def launch(_i):
        for call in calls:
            call()

    return launch


def measure(p: Planned, budget_s: float, read_clocks=None):
    """Device time of the whole chain (``wavemodel.hardware.timing.time_device``) and the SM clock and
    power NVML read while it ran (``wavemodel.hardware.clocks``)."""
    import torch

    from wavemodel.hardware.clocks import ClockSampler
    from wavemodel.hardware.timing import time_device

    torch.backends.cudnn.benchmark = True
    launch = chain_launch(N.load_network(p.network), p.widths, p.count)
    with ClockSampler(read_clocks) as clocks:
        timing = time_device(launch, budget_s=budget_s, framework="torch")
    del launch
    torch.cuda.empty_cache()
    return timing, clocks.summary()


def device_slug() -> str:
    import torch

    name = torch.cuda.get_device_name(0)
    slug = wm.gpus.match_device_name(name)
    if slug is None:
        raise ValueError(f"gpu: {name!r} is not in the catalogue; pass --gpu")
    return slug


def write_env(path: Path, command: str, gpu: str, planned: list[Planned], params: dict) -> None:
    try:
        from wavemodel.hardware.device import environment

        env = environment(command)
    except Exception as e:  # noqa: BLE001 - the environment is informative; never lose the data over it
        env = {"command": command, "environment_error": f"{type(e).__name__}: {e}"}
    env["date_utc"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    env["gpu_catalogue_name"] = gpu
    env["params"] = params
    env["widths"] = {"/".join(p.key): p.widths for p in planned}
    old = json.loads(path.read_text()) if path.exists() else None
    if old is not None:                       # resumed: keep the first run's record, add this one
        old.setdefault("resumed", []).append(env)
        env = old
    path.write_text(json.dumps(env, indent=2) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpu", help="catalogue name for predictions and the data folder (default: the device)")
    ap.add_argument("--out", help="CSV path (default validation/data/<gpu>/solver_benefit.csv)")
    ap.add_argument("--networks", default=",".join(NETWORKS))
    ap.add_argument("--ratios", default=",".join(f"{r:g}" for r in RATIOS))
    ap.add_argument("--max-change", type=float, default=S.DEFAULT_MAX_CHANGE)
    ap.add_argument("--budget-s", type=float, default=0.5, help="timing budget per row (seconds)")
    ap.add_argument("--windows", type=int, default=3,
                    help="time every row this many times, one pass over the rows per window; keep the median")
    ap.add_argument("--deadline-s", type=float, default=540.0, help="stop starting timings after this long")
    ap.add_argument("--dry-run", action="store_true", help="print the plan (CPU only) and exit")
    args = ap.parse_args(argv)
    if args.windows < 1:
        ap.error("--windows: must be >= 1")
    networks = tuple(x.strip() for x in args.networks.split(",") if x.strip())
    unknown = [n for n in networks if n not in NETWORKS]
    if unknown:
        raise SystemExit(f"--networks: {unknown} not in {', '.join(NETWORKS)}")
    ratios = tuple(float(x) for x in args.ratios.split(","))
    gpu = args.gpu or (device_slug() if not args.dry_run else "h100-sxm")
    default = Path(__file__).resolve().parent / "data" / gpu / "solver_benefit.csv"
    out = Path(args.out) if args.out else default
    planned = plan(gpu, networks, ratios, args.max_change)
    done = read_rows(out)
    todo = pending(planned, done)
    print(f"{out}: {len(planned)} rows planned, {len(planned) - len(todo)} already measured", flush=True)
    if args.dry_run:
        for p in todo:
            print(f"  {p.network} keep={p.keep_ratio:g} {p.method}: {p.total_channels} channels, "
                  f"predicted {p.latency_us_predicted:.1f} us")
        return 0
    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    out.parent.mkdir(parents=True, exist_ok=True)
    write_env(out.with_name("solver_benefit_env.json"), command, gpu, planned,
              {"networks": NETWORKS, "ratios": ratios, "max_change": args.max_change,
               "budget_s": args.budget_s, "windows": args.windows, "dtype": DTYPE, "alignment": ALIGNMENT,
               "wavemodel": wm.__version__})
    from wavemodel.hardware.clocks import nvml_reader

    read_clocks = nvml_reader()
    log = window_log_path(out)
    timed = read_windows(log)
    runs = sum(w not in timed.get(p.key, {}) for w in range(args.windows) for p in todo)
    i, start = 0, time.monotonic()
    for w in range(args.windows):
        for p in window_order(todo, w):
            if w in timed.get(p.key, {}):
                continue
            if time.monotonic() - start > args.deadline_s:
                print(f"deadline: stopped after {i} of {runs} timings; rerun to resume", flush=True)
                return 0
            t, c = measure(p, args.budget_s, read_clocks)
            append_window(log, p, w, t, c)
            timed.setdefault(p.key, {})[w] = t.median_s * 1e6
            i += 1
            print(f"[{i}/{runs}] window {w} {p.network} keep={p.keep_ratio:g} {p.method}: "
                  f"{p.total_channels} channels, measured {t.median_s * 1e6:.1f} us "
                  f"(p10 {t.p10_s * 1e6:.1f}, p90 {t.p90_s * 1e6:.1f}, {t.reps} reps) at "
                  f"{c.sm_mhz_mean:.0f} MHz {c.power_w_mean:.0f} W, "
                  f"predicted {p.latency_us_predicted:.1f} us", flush=True)
    for p in todo:
        median_us = median_of_windows(timed.get(p.key, {}), args.windows)
        if median_us is not None:
            append_row(out, p, median_us)
    summary = summarize(read_rows(out))
    text = summary_markdown(summary, gpu)
    out.with_name("solver_benefit_summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
