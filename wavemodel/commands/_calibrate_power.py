"""``wavemodel calibrate --sustained SCAN.csv``: fit the rate a board sustains at its power limit.

The data are width scans (validation/width_scan.py): one network run back to back at many widths,
each point the median of its timing windows. Each point's layers are predicted one by one (the wave
model, ``sustained=False``) and ``wavemodel.power.fit_sustained_rate`` fits the rate at which the
power floor ``flops / rate`` explains the measured chains. The points of keep ratio at most
``CALIBRATION_MAX_KEEP`` calibrate it; the wider ones are kept apart and report its error, so the
fit is judged on widths it has not seen (the rate found at 0.45-0.55 predicts 0.65-0.95). The rate
is written into the profile group of the layers' backend (``sustained_flops_per_s[dtype]``) and the
fit's record under ``fit["sustained"]``; the rest of an existing profile is kept.
"""

from __future__ import annotations

import datetime as _dt

import numpy as np

from .. import __version__
from .. import datasets as D
from ..gpus import GPUSpec
from ..networks import layer_shape, load_network
from ..power import chain_latency_s, fit_sustained_rate
from ..shapes import Conv2d
from ..solver_dp import predict_many

CALIBRATION_MAX_KEEP = 0.6


def chain_terms(points, gpu: GPUSpec) -> tuple[str, str, np.ndarray, np.ndarray]:
    """(profile group, dtype, per-layer model seconds, per-layer FLOPs) of scan points: arrays of shape
    (points, layers). Every point must be of one network, dtype and backend group."""
    if not points:
        raise ValueError("SCAN: no points")
    keys = {(p.network, p.count, p.dtype) for p in points}
    if len({(n, d) for n, _, d in keys}) != 1:
        raise ValueError(f"SCAN: points of several networks or dtypes {sorted(keys)}; fit one at a time")
    net = load_network(points[0].network)
    kinds = {"cudnn" if isinstance(layer_shape(x, 1, points[0].dtype, tp=net.tp), Conv2d) else "cublas"
             for x in net.layers}
    if len(kinds) != 1:
        raise ValueError(f"SCAN: {net.name} mixes backends {sorted(kinds)}; the rate is one backend's")
    flat = []
    for p in points:
        w = net.original_widths | p.widths
        flat += [layer_shape(x, p.count, p.dtype, in_width=w.get(x.in_var), out_width=w.get(x.out_var),
                             tp=net.tp) for x in net.layers]
    preds = predict_many(flat, gpu, None, sustained=False)
    model = np.array([float(p["latency_s"][0]) for p in preds]).reshape(len(points), len(net.layers))
    flops = np.array([float(s.flops) for s in flat]).reshape(model.shape)
    return kinds.pop(), points[0].dtype, model, flops


def _errors(pred_s, measured_s) -> dict:
    e = np.abs(np.asarray(pred_s) / np.asarray(measured_s) - 1.0) * 100
    bias = (np.asarray(pred_s) / np.asarray(measured_s) - 1.0) * 100
    return {"n": int(e.size), "median_pct": float(np.median(e)), "p90_pct": float(np.percentile(e, 90)),
            "bias_pct": float(np.median(bias))}


def fit_scan(points, gpu: GPUSpec, max_keep: float = CALIBRATION_MAX_KEEP) -> dict:
    """The fit of one scan's points: rate, group, dtype and the errors with and without the floor."""
    group, dtype, model, flops = chain_terms(points, gpu)
    measured = np.array([p.measured_s for p in points])
    cal = np.array([p.keep <= max_keep for p in points])
    if not cal.any() or cal.all():
        raise ValueError(f"SCAN: need points at keep <= {max_keep} (calibration) and above it (evaluation)")
    rate = fit_sustained_rate(model[cal], flops[cal], measured[cal])
    pred = chain_latency_s(model, flops, rate)
    wave_only = model.sum(axis=1)
    return {"group": group, "dtype": dtype, "sustained_flops_per_s": rate,
            "network": points[0].network, "count": points[0].count, "calibration_max_keep": max_keep,
            "calibration_points": int(cal.sum()), "evaluation_points": int((~cal).sum()),
            "calibration_error": _errors(pred[cal], measured[cal]),
            "evaluation_error": _errors(pred[~cal], measured[~cal]),
            "evaluation_error_without_floor": _errors(wave_only[~cal], measured[~cal])}


def calibrate_sustained(scan_paths, gpu: GPUSpec, source: str, existing: dict | None) -> dict:
    """Fit every scan and add the rates to the profile document ``existing`` (its other contents kept)."""
    doc = existing or {"gpu": gpu.name, "backends": {}, "fit": {}}
    doc.setdefault("backends", {})
    doc.update(created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), wavemodel_version=__version__)
    records = []
    for path in scan_paths:
        rec = fit_scan(D.read_width_scan(path), gpu)
        rec["scan"] = str(path)
        group = doc["backends"].get(rec["group"])
        if group is None:
            raise ValueError(f"--out: the profile has no {rec['group']} group to add a power floor to; "
                             f"calibrate {rec['group']} first (--data DIR --backend {rec['group']})")
        group.setdefault("sustained_flops_per_s", {})[rec["dtype"]] = rec["sustained_flops_per_s"]
        records.append(rec)
    doc.setdefault("fit", {})["sustained"] = {"source": source, "scans": records}
    return doc


def report_lines(doc: dict) -> list[str]:
    lines = []
    for r in doc["fit"]["sustained"]["scans"]:
        c, e, w = r["calibration_error"], r["evaluation_error"], r["evaluation_error_without_floor"]
        lines.append(
            f"{r['group']} {r['dtype']}: sustained {r['sustained_flops_per_s'] / 1e12:.1f} TFLOP/s from "
            f"{r['network']} ({r['calibration_points']} points at keep <= {r['calibration_max_keep']:g}); "
            f"calibration median {c['median_pct']:.2f} % p90 {c['p90_pct']:.2f} %; evaluation "
            f"({e['n']} wider points) median {e['median_pct']:.2f} % p90 {e['p90_pct']:.2f} % bias "
            f"{e['bias_pct']:+.2f} % (without the floor: median {w['median_pct']:.2f} % bias "
            f"{w['bias_pct']:+.2f} %)")
    return lines
