"""``wavemodel calibrate``: fit a calibration profile to measured latencies and write it as JSON.

    wavemodel calibrate --data DIR [--backend own|cublas|cudnn|all] --out profile.json
    wavemodel calibrate --measure [--budget-s 300] --out profile.json      (on a GPU)
    wavemodel calibrate --sustained SCAN.csv --out profile.json         (power limit: _calibrate_power)

``--data`` fits the calibration-set rows (pass 1, graph replays of at least 0.5 ms) of the dataset
CSVs in DIR with ``wavemodel.fit.fit_profile``, one fit per backend group of the profile:

- ``own``: every one of our kernels is its own family (its catalogue ``family``, the kernel's name)
  and shares nothing with the others, so each is fitted alone (``fit_own``). Free per family: the
  L2 and per-SM bandwidths its loads reach, efficiency, tile_overhead_s, kernel_fixed_s,
  bandwidth_efficiency, write_bandwidth_efficiency, single_block_speedup, tail_block_speedup,
  cta_dispatch_s, straggler_s, store_bytes_per_s (started at 20e9), unhidden_fraction (started at 0.5), and
  scalar_store_factor, scalar_write_bytes_per_s and scalar_load_bytes_per_s (kernels that take rows
  of C, A or B that are not 16-byte aligned), channel_traffic_factor, channel_dram_factor and
  partial_line_write_factor (convolutions) or line_aligned_rows_factor (SIMT kernels); fitted from
  every combination of OWN_EFFICIENCY_STARTS x OWN_L2_STARTS x OWN_SM_STARTS, keeping the lowest
  cost;
- ``cublas`` / ``cudnn``: the families of the library's catalogue for the dtypes in the data; free:
  the group's launch_overhead_s, l2_bandwidth_bytes_per_s, sm_bandwidth_bytes_per_s and per family
  efficiency, tile_overhead_s, kernel_fixed_s, bandwidth_efficiency, k_iter_latency_s,
  cta_dispatch_s, write_bandwidth_efficiency and unhidden_fraction (LIBRARY_FREE), and
  off_sector_write_factor for the families that store C as 16-byte vectors (``library_free``).

Where the GPU's streaming read rate has been measured (``GPUSpec.dram_read_fraction``), every
group's fit pulls each family's bandwidth_efficiency toward it (``fit.fit_profile``'s ``priors``,
weight DRAM_PRIOR_WEIGHT); the profile's fit record names the priors.

The profile (the format ``wavemodel.calibration`` reads) records the datasets, the rows and the
calibration-set error of each fit under ``"fit"``; an existing ``--out`` for the same GPU keeps the
backends not refitted. ``--measure`` first runs a calibration sweep of at most ``--budget-s`` seconds
(``wavemodel.hardware.calibration_sweep``), writes its CSVs to ``<out stem>_data/`` beside the
profile, then fits them as ``--data`` does.
"""

from __future__ import annotations

import datetime as _dt
import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__, calibration, fit
from .. import datasets as D
from .. import validate as V
from ..configs import for_filter, library_configs, own_kernels
from ..gpus import GPUSpec
from ..gpus import gpu as lookup_gpu
from ..latency import pointwise_filter, predict_latency
from ..shapes import DTYPE_IN_BYTES, DTYPE_OUT_BYTES
from . import _calibrate_power as calibrate_power
from . import add_json_argument, print_json, table
from .validate import stats_table

GROUPS = ("own", "cublas", "cudnn")
OWN_FREE = (*fit.FAMILY_PARAMS, "single_block_speedup", "tail_block_speedup", "store_bytes_per_s",
            "unhidden_fraction", "cta_dispatch_s", "straggler_s", "write_bandwidth_efficiency",
            "scalar_store_factor", "scalar_load_bytes_per_s", "scalar_write_bytes_per_s",
            "channel_traffic_factor", "channel_dram_factor", "line_aligned_rows_factor",
            "partial_line_write_factor", "l2_bandwidth_bytes_per_s", "sm_bandwidth_bytes_per_s")
# the own fit starts each kernel's L2 bandwidth at these multiples of the DRAM bandwidth and keeps the
# lowest cost: whether the L2 term binds is a switch the local search does not cross (ncu measured
# about 1.6x on the H100: 5.3 TB/s at 90 % L2 throughput)
OWN_L2_STARTS = (1.5, 2.25, 3.0)
OWN_SM_STARTS = (1.5, 2.5, 4.0)       # per-SM ingest starts: these multiples of the DRAM bandwidth / 132
# ... and at these efficiencies: a kernel whose main loop the load/store unit paces (our convs,
# ncu_ldgsts/) fits either a slow full SM with fast lone blocks or a faster SM, basins the local search
# does not cross (conv_f16_128x64's 3x3 family: cost 1.152 from 0.35 against 1.216 from 0.7)
OWN_EFFICIENCY_STARTS = (0.7, 0.35)
OWN_INITIAL_UNHIDDEN = 0.5
LIBRARY_FREE = (*fit.FAMILY_PARAMS, "k_iter_latency_s", "cta_dispatch_s", "write_bandwidth_efficiency",
                "unhidden_fraction")
OWN_INITIAL_STORE_BYTES_PER_S = 20e9
# every family's bandwidth_efficiency is pulled toward the streaming read rate measured on the card
# (GPUSpec.dram_read_fraction) with this weight: the datasets leave it nearly free (few of their
# calls are DRAM-bound), and fitted alone it wandered to 0.2-1.0 (ours) and 0.40-1.0 (the
# libraries'), which tall one-column GEMMs the datasets lack showed to be wrong for ours
# (validation/data/h100-sxm/dram_probe/README.md)
DRAM_PRIOR_WEIGHT = 1.0
DEFAULT_ITERATIONS = 40
DEFAULT_BUDGET_S = 300.0
ENVIRONMENT_ERROR = 1


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "calibrate", help="fit a calibration profile to measured data (or measure it on this GPU first)",
        description="Fit the model's physical parameters by least squares to the calibration set of "
                    "measured datasets (--data DIR), or run a calibration sweep of at most --budget-s "
                    "seconds on the local GPU first (--measure), and write a profile JSON.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="DIR", help="folder of dataset CSVs (e.g. validation/data/h100-sxm)")
    src.add_argument("--measure", action="store_true",
                     help="measure a calibration sweep on the local GPU, then fit it (needs CuPy / PyTorch)")
    src.add_argument("--sustained", nargs="+", metavar="SCAN",
                     help="width-scan CSVs (validation/width_scan.py): fit the rate the board sustains at "
                          "its power limit into the existing profile --out (wavemodel.power)")
    p.add_argument("--backend", default="all", choices=(*GROUPS, "all"),
                   help="which backend group to fit (default all groups with calibration rows)")
    p.add_argument("--out", required=True, metavar="FILE", help="profile JSON to write")
    p.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                   help=f"--measure: wall-clock budget of the sweep, seconds (default {DEFAULT_BUDGET_S:g})")
    p.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                   help=f"Levenberg-Marquardt iterations per fit (default {DEFAULT_ITERATIONS})")
    p.add_argument("--gpu", default=None,
                   help="GPU catalogue name or alias (see 'wavemodel gpus'); default h100-sxm with --data, "
                        "the local device with --measure")
    add_json_argument(p)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ fitting


@dataclass(frozen=True)
class BackendFit:
    group: str                               # "own" | "cublas" | "cudnn"
    result: fit.FitResult
    rows: tuple[D.Row, ...]
    families: tuple[str, ...]                # fitted families
    families_without_rows: tuple[str, ...]   # fitted families whose configurations no row runs
    unnamed_configs: tuple[str, ...]         # catalogue configurations without a family (not fitted)
    skipped_groups: tuple[str, ...]          # (backend dtype kind) groups the model cannot predict
    seconds: float
    priors: dict = field(default_factory=dict)  # parameter -> (value, weight) the fit was pulled toward


def rows_of(rows, group: str) -> list[D.Row]:
    return [r for r in rows if r.backend == group]


def catalogue_families(group: str, rows, gpu: GPUSpec) -> tuple[list[str], list[str]]:
    """(families, names of configurations without one) the fit of ``group`` covers for ``rows``."""
    if group == "own":
        own = own_kernels()
        unknown = sorted({r.kernel for r in rows} - set(own))
        if unknown:
            raise ValueError(f"kernel: {', '.join(unknown)} not in our catalogue; known: {', '.join(own)}")
        return sorted({_family_of_config(group, r.kernel, gpu, r.dtype, _pointwise(r)) for r in rows}), []
    families, unnamed = set(), set()
    for dtype in sorted({r.dtype for r in rows}):
        try:
            configs = library_configs(group, gpu, dtype)
        except ValueError:
            continue
        families |= {c.family for c in configs if c.family}
        unnamed |= {c.name for c in configs if not c.family}
    return sorted(families), sorted(unnamed)


def own_free(families) -> dict[str, tuple[str, ...]]:
    """Per family of our kernels, the parameters to fit: ``scalar_store_factor`` and
    ``scalar_write_bytes_per_s`` only for kernels that take rows of C that are not 16-byte aligned
    (the others never store element-wise), ``scalar_load_bytes_per_s`` only for those that take such
    rows of A or B, ``channel_traffic_factor``, ``channel_dram_factor`` and
    ``partial_line_write_factor`` only for convolutions, ``line_aligned_rows_factor`` only for the
    SIMT kernels (their warps load 32 bytes of each of 16 rows of A at once)."""
    own = {c.family or name: c for name, c in own_kernels().items()}
    own |= {c.pointwise_family: c for c in own_kernels().values() if c.pointwise_family}
    out = {}
    for fam in families:
        cfg = own[fam]
        widest = max(DTYPE_OUT_BYTES[d] for d in cfg.dtypes)
        scalar = cfg.alignment_elements * widest % 16 != 0
        scalar_in = any(cfg.alignment_elements * DTYPE_IN_BYTES[d] % 16 != 0 for d in cfg.dtypes)
        skip = ({"scalar_store_factor", "scalar_write_bytes_per_s"} if not scalar else set()) | (
            {"scalar_load_bytes_per_s"} if not scalar_in else set()) | (
            {"channel_traffic_factor", "channel_dram_factor", "partial_line_write_factor"}
            if cfg.kind != "conv" else set()) | (
            {"line_aligned_rows_factor"} if cfg.math != "simt" else set())
        out[fam] = tuple(p for p in OWN_FREE if p not in skip)
    return out


def library_free(group: str, families, gpu: GPUSpec) -> dict[str, tuple[str, ...]]:
    """Per family of a library, the parameters to fit: ``LIBRARY_FREE``, and ``off_sector_write_factor``
    for the families whose main kernel stores C as 16-byte vectors: not the misaligned fallbacks (a
    configuration that takes rows of A and B off 16 bytes), which store it element by element, nor
    the split-K families, whose main kernels write fp32 partials (on sectors wherever N is 8-aligned)."""
    vector = set()
    for dtype in DTYPE_IN_BYTES:
        try:
            configs = library_configs(group, gpu, dtype)
        except ValueError:
            continue
        vector |= {c.family for c in configs
                   if c.alignment_elements * DTYPE_IN_BYTES[dtype] >= 16 and c.split_k == 1}
    return {f: LIBRARY_FREE + (("off_sector_write_factor",) if f in vector else ()) for f in families}


def predictable(groups, gpu: GPUSpec) -> tuple[list, list[str]]:
    """(groups the model predicts, labels of those it raises on)."""
    good, bad = [], []
    for members, g in groups:
        try:
            predict_latency(g.shape, gpu, g.backend)
            good.append((members, g))
        except ValueError as e:
            bad.append(f"{g.backend} {members[0].dtype} {members[0].kind} ({len(members)} rows): {e}")
    return good, bad


def fit_group(group: str, rows, gpu: GPUSpec, iterations: int = DEFAULT_ITERATIONS) -> BackendFit:
    """Fit one backend group's profile to its calibration rows."""
    rows = rows_of(rows, group)
    if not rows:
        raise ValueError(f"--backend {group}: no calibration rows for it in the data")
    groups, skipped = predictable(D.group_rows(rows), gpu)
    if not groups:
        raise ValueError(f"--backend {group}: the model predicts none of its rows ({'; '.join(skipped)})")
    if group == "own":      # a conv kernel's 1x1 and larger filters are fitted as two families
        groups = [part for members, g in groups for part in _split_by_filter(members, g)]
    kept = [r for members, _ in groups for r in members]
    families, unnamed = catalogue_families(group, kept, gpu)
    free_family = own_free(families) if group == "own" else library_free(group, families, gpu)
    initial = ({k: v for f in families for k, v in ((f"{f}.store_bytes_per_s", OWN_INITIAL_STORE_BYTES_PER_S),
                                                     (f"{f}.unhidden_fraction", OWN_INITIAL_UNHIDDEN))}
               if group == "own" else {})
    n_params = (0 if group == "own" else len(fit.GPU_PARAMS)) + sum(
        len(free_family[f]) if isinstance(free_family, dict) else len(free_family) for f in families)
    log(f"fitting {group}: {len(kept)} rows in {len(groups)} groups, {len(families)} families, "
        f"{n_params} parameters, up to {iterations} iterations")
    for msg in skipped:
        log(f"  skipped (the model cannot predict it): {msg}")
    if unnamed:
        log(f"  {len(unnamed)} catalogue configurations have no family: their per-family parameters keep "
            f"the catalogue values ({', '.join(unnamed[:4])}{' ...' if len(unnamed) > 4 else ''})")
    t0 = time.perf_counter()
    priors = ({"bandwidth_efficiency": (gpu.dram_read_fraction, DRAM_PRIOR_WEIGHT)}
              if gpu.dram_read_fraction else {})
    if group == "own":
        result = fit_own([g for _, g in groups], gpu, families, initial, free_family, iterations, priors)
    else:
        result = fit.fit_profile([g for _, g in groups], gpu, None, families=families, initial=initial,
                                 free_family=free_family, iterations=iterations, priors=priors)
    seconds = time.perf_counter() - t0
    ev = V.evaluate(kept, gpu, {group: result.profile})
    used = {_family_of_config(group, c, gpu, r.dtype, _pointwise(r))
            for c, r in zip(ev.config, ev.rows, strict=True)}
    idle = tuple(f for f in families if f not in used)
    log(f"  {group}: {result.iterations} iterations in {seconds:.1f} s, calibration median |error| "
        f"{100 * result.median_abs_error:.2f} %")
    return BackendFit(group, result, tuple(kept), tuple(families), idle, tuple(unnamed), tuple(skipped),
                      seconds, priors)


def _pointwise(r: D.Row) -> bool:
    """Whether row ``r`` is a convolution with a 1x1 filter."""
    return r.kind == "conv" and r.dims["r"] == 1 and r.dims["s"] == 1


def _split_by_filter(members, g: fit.Group) -> list:
    """A group of our kernel's rows as one ``(rows, fit.Group)`` per filter kind where its configuration
    fits 1x1 filters apart (``pointwise_family``), else the group as it is."""
    if not own_kernels()[g.backend].pointwise_family:
        return [(members, g)]
    pointwise = np.array([_pointwise(r) for r in members])
    parts = []
    for kind in (True, False):
        mine = tuple(r for r, p in zip(members, pointwise, strict=True) if p == kind)
        if mine:
            parts.append((mine, fit.Group(D.shape_of(mine), np.asarray(g.measured_s)[pointwise == kind],
                                          g.backend)))
    return parts


def fit_own(groups, gpu: GPUSpec, families, initial: dict, free_family: dict,
            iterations: int, priors: dict | None = None) -> fit.FitResult:
    """Our kernels share no parameter (each has its own bandwidths), so each family is fitted alone,
    from each combination of OWN_EFFICIENCY_STARTS x OWN_L2_STARTS x OWN_SM_STARTS, keeping its
    lowest-cost fit; the families' profiles are then merged."""
    bw = gpu.dram_bandwidth_bytes_per_s
    merged, params, iters, cost = {}, {}, 0, 0.0
    for fam in families:
        mine = [g for g in groups if _family_of_config(
            "own", g.backend, gpu, "", bool(np.all(pointwise_filter(g.shape)))) == fam]
        fits = [fit.fit_profile(mine, gpu, None, families=[fam], free_gpu=(), free_family=free_family,
                                iterations=iterations, priors=priors,
                                initial=initial | {f"{fam}.efficiency": eff,
                                                   f"{fam}.l2_bandwidth_bytes_per_s": f * bw,
                                                   f"{fam}.sm_bandwidth_bytes_per_s": f_sm * bw / 132})
                for eff in OWN_EFFICIENCY_STARTS for f in OWN_L2_STARTS for f_sm in OWN_SM_STARTS]
        best = min(fits, key=lambda r: r.cost)
        merged[fam] = best.profile.families[fam]
        params |= {k: v for k, v in best.parameters.items() if k.startswith(f"{fam}.")}
        iters, cost = max(iters, best.iterations), cost + best.cost
    profile = calibration.Profile(families=merged, calibrated=True)
    return fit.FitResult(profile, fit.relative_errors(groups, gpu, None, profile), iters, params, cost)


def _family_of_config(group: str, name: str, gpu: GPUSpec, dtype: str, pointwise: bool = False) -> str:
    """The calibration family of configuration ``name`` (of a 1x1 conv where ``pointwise``)."""
    if group == "own":
        return for_filter(own_kernels()[name], pointwise).family or name
    for c in library_configs(group, gpu, dtype):
        if c.name == name:
            return c.family
    return ""


def calibration_errors(bf: BackendFit, gpu: GPUSpec) -> list[V.FamilyStats]:
    ev = V.evaluate(bf.rows, gpu, {bf.group: bf.result.profile})
    return V.family_stats(ev.families, ev.relative_error)


def fit_error_by_family(bf: BackendFit, gpu: GPUSpec) -> dict[str, dict]:
    """Calibration error per fitted family (our kernel's name; a library's configuration family)."""
    ev = V.evaluate(bf.rows, gpu, {bf.group: bf.result.profile})
    fams = [_family_of_config(bf.group, c, gpu, r.dtype, _pointwise(r))
            for c, r in zip(ev.config, ev.rows, strict=True)]
    out = {}
    for s in V.family_stats(fams, ev.relative_error):
        out[s.family or "(no family)"] = {"n": s.n, "median_pct": s.median_pct, "p90_pct": s.p90_pct}
    return out


# ------------------------------------------------------------------------------------------ profile


def _stats_dict(s: V.FamilyStats) -> dict:
    return {"n": s.n, "median_pct": s.median_pct, "mean_pct": s.mean_pct, "p90_pct": s.p90_pct,
            "within_10_share": s.within_10_share, "bias_pct": s.bias_pct}


def profile_document(gpu: GPUSpec, fits, *, source: str, datasets: dict, excluded: int,
                     existing: dict | None = None) -> dict:
    """The profile JSON: ``backends`` as ``calibration.profile_from_dict`` reads them, ``fit`` the record."""
    doc = {"gpu": gpu.name, "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
           "source": source, "wavemodel_version": __version__, "backends": {}, "fit": {}}
    if existing:
        doc["backends"].update(existing.get("backends", {}))
        doc["fit"].update(existing.get("fit", {}))
    for bf in fits:
        sustained = doc["backends"].get(bf.group, {}).get("sustained_flops_per_s")
        doc["backends"][bf.group] = calibration.profile_to_dict(bf.result.profile)
        if sustained:                # fitted apart (--sustained): a refit of the group keeps it
            doc["backends"][bf.group]["sustained_flops_per_s"] = sustained
        doc["fit"][bf.group] = {
            "datasets": datasets, "rows": len(bf.rows), "set": "calibration", "pass": "1",
            "excluded_short_replays": excluded,
            "groups": sorted({f"{r.model_backend} {r.dtype} {r.kind}" for r in bf.rows}),
            "families": list(bf.families), "families_without_rows": list(bf.families_without_rows),
            "configs_without_family": list(bf.unnamed_configs), "skipped_groups": list(bf.skipped_groups),
            "iterations": bf.result.iterations, "seconds": round(bf.seconds, 2),
            "parameters": bf.result.parameters,
            "priors": {p: {"value": v, "weight": w} for p, (v, w) in bf.priors.items()},
            "calibration_error": {s.family: _stats_dict(s) for s in calibration_errors(bf, gpu)},
            "calibration_error_by_fit_family": fit_error_by_family(bf, gpu),
        }
    return doc


def read_existing(path: Path, gpu: GPUSpec) -> dict | None:
    """An existing profile at ``path`` for the same GPU (its other backends are kept), else None."""
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or doc.get("gpu") != gpu.name or not isinstance(doc.get("backends"), dict):
        return None
    return doc


def write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------- run


def calibrate_dir(data_dir, gpu: GPUSpec, backend: str, out: Path, iterations: int, source: str
                  ) -> tuple[dict, list[str]]:
    """Fit the calibration rows of ``data_dir`` and write the profile to ``out``; returns the document
    and the groups fitted."""
    loaded = D.load_dir(data_dir)
    rows = D.select(loaded.rows, set="calibration", pass_="1")
    rows, dropped = D.drop_short_replays(rows)
    if dropped:
        log(f"excluded {len(dropped)} calibration rows whose graph replay lasted under "
            f"{D.MIN_REPLAY_US / 1e3:g} ms (timing failure of an earlier harness)")
    present = [g for g in GROUPS if rows_of(rows, g)]
    groups = present if backend == "all" else [backend]
    if not groups:
        raise ValueError(f"DATA_DIR: no calibration-set rows in {data_dir}")
    log(f"{gpu}: {len(rows)} calibration rows from {', '.join(loaded.files)}; fitting {', '.join(groups)}")
    fits = [fit_group(g, rows, gpu, iterations) for g in groups]
    datasets = {"dir": str(data_dir), "files": {f: loaded.counts[f] for f in loaded.files}}
    existing = read_existing(out, gpu)
    doc = profile_document(gpu, fits, source=source, datasets=datasets, excluded=len(dropped),
                           existing=existing)
    kept = sorted(set(doc["backends"]) - set(groups))
    if kept:
        log(f"kept {', '.join(kept)} from the existing {out}")
    write_json(out, doc)
    return doc, groups


def print_report(doc: dict, groups, out: Path) -> None:
    for g in groups:
        rec = doc["fit"][g]
        b = doc["backends"][g]
        if b["l2_bandwidth_bytes_per_s"]:
            memory = (f"L2 {b['l2_bandwidth_bytes_per_s'] / 1e12:.2f} TB/s, "
                      f"per-SM {b['sm_bandwidth_bytes_per_s'] / 1e9:.1f} GB/s")
        else:
            memory = "L2 and per-SM bandwidths per kernel"
        print(f"{g}: {rec['rows']} calibration rows, {rec['iterations']} iterations; launch_overhead "
              f"{b['launch_overhead_s'] * 1e6:.2f} us, {memory}")
        columns = ("efficiency", "tile_overhead_s", "kernel_fixed_s", "bandwidth_efficiency")
        if not b["l2_bandwidth_bytes_per_s"]:
            columns += ("l2_bandwidth_bytes_per_s", "sm_bandwidth_bytes_per_s")
        fams = [[f, v["n"], f"{v['median_pct']:.2f}", f"{v['p90_pct']:.2f}",
                 *(f"{b['families'].get(f, {}).get(p, float('nan')):.3g}" for p in columns)]
                for f, v in rec["calibration_error_by_fit_family"].items()]
        print(table(fams, ["fit family", "n", "median %", "p90 %", "efficiency", "tile_overhead_s",
                           "kernel_fixed_s", "bw_eff", *(("l2_B/s", "sm_B/s") if len(columns) > 4 else ())]))
        print()
    stats = [V.FamilyStats(f, v["n"], v["median_pct"], v["mean_pct"], v["p90_pct"], v["within_10_share"],
                           v["bias_pct"], None)
             for g in groups for f, v in doc["fit"][g]["calibration_error"].items()]
    print("calibration-set error (the bounds apply to the evaluation set: run 'wavemodel validate'):")
    print(stats_table(sorted(stats, key=lambda s: s.family)))
    print(f"wrote {out}")


def command_line(args) -> str:
    """The calibrate command that produced a profile (recorded as its ``source``)."""
    parts = ["wavemodel", "calibrate"]
    if getattr(args, "sustained", None):
        parts += ["--sustained", *args.sustained, "--out", str(args.out)]
        return " ".join(shlex.quote(p) for p in parts)
    parts += ["--measure", "--budget-s", f"{args.budget_s:g}"] if args.measure else ["--data", str(args.data)]
    parts += ["--backend", args.backend, "--out", str(args.out), "--iterations", str(args.iterations)]
    if args.gpu:
        parts += ["--gpu", args.gpu]
    return " ".join(shlex.quote(p) for p in parts)


def run(args) -> int:
    if args.iterations < 1:
        raise ValueError(f"--iterations: must be >= 1, got {args.iterations}")
    out = Path(args.out)
    source = command_line(args)
    if getattr(args, "sustained", None):
        gpu = lookup_gpu(args.gpu or "h100-sxm")
        existing = read_existing(out, gpu)
        if existing is None:
            raise ValueError(f"--out: {out} is not a profile for {gpu.name}; --sustained adds to one")
        doc = calibrate_power.calibrate_sustained(args.sustained, gpu, source, existing)
        write_json(out, doc)
        if args.json:
            print_json(doc)
        else:
            print("\n".join(calibrate_power.report_lines(doc)))
            print(f"wrote {out}")
        return 0
    if args.measure:
        if not args.budget_s > 0:
            raise ValueError(f"--budget-s: must be > 0, got {args.budget_s}")
        from ..hardware import calibration_sweep as sweep

        torch_ok, cupy_ok = sweep.available()
        if not (torch_ok or cupy_ok):
            print("wavemodel: error: --measure: needs an NVIDIA GPU with PyTorch (cuBLAS, cuDNN) or CuPy "
                  "(our kernels); fit measured data with --data DIR", file=sys.stderr)
            return ENVIRONMENT_ERROR
        gpu = lookup_gpu(args.gpu) if args.gpu else sweep.local_gpu()
        data_dir = sweep.data_dir_for(out)
        backends = GROUPS if args.backend == "all" else (args.backend,)
        try:
            summary = sweep.measure(data_dir, gpu, budget_s=args.budget_s, backends=backends, log=log,
                                    torch_ok=torch_ok, cupy_ok=cupy_ok)
        except sweep.NoDevice as e:
            print(f"wavemodel: error: --measure: {e}", file=sys.stderr)
            return ENVIRONMENT_ERROR
        if summary.get("measured") == 0:
            print(f"wavemodel: error: --measure: no row could be measured ({summary.get('failed', 0)} "
                  f"failed; see the log above and {data_dir})", file=sys.stderr)
            return ENVIRONMENT_ERROR
    else:
        gpu = lookup_gpu(args.gpu or "h100-sxm")
        data_dir = args.data
    doc, groups = calibrate_dir(data_dir, gpu, args.backend, out, args.iterations, source)
    if args.json:
        print_json(doc)
    else:
        print_report(doc, groups, out)
    return 0
