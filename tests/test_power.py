"""The board power floor (wavemodel.power): the floor, its fit, sustained predictions, the profile
field, width-scan reading and ``wavemodel calibrate --sustained`` (synthetic data with a known rate)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import wavemodel as wm
from wavemodel import calibration, cli
from wavemodel import datasets as D
from wavemodel import networks as N
from wavemodel import power as P
from wavemodel import solver as S
from wavemodel.commands import _calibrate_power as CP
from wavemodel.commands import calibrate as C

ROOT = Path(__file__).resolve().parents[1]
H100 = wm.gpu("h100-sxm")
BIG = wm.Gemm(4096, 5504, 4096, dtype="fp16")


def test_floor_and_chain():
    assert P.power_floor_s(2e12, 1e15) == pytest.approx(2e-3)
    assert P.power_floor_s(2e12, None) == 0.0
    np.testing.assert_allclose(P.power_floor_s(np.array([1e12, 3e12]), 1e15), [1e-3, 3e-3])
    # each layer at the larger of its model time and its floor, summed
    got = P.chain_latency_s([[1e-3, 5e-3]], [[2e12, 2e12]], 1e15)
    np.testing.assert_allclose(got, [2e-3 + 5e-3])


def test_fit_recovers_the_rate_that_made_the_data():
    rng = np.random.default_rng(1)
    flops = rng.uniform(1e11, 5e11, size=(30, 3))
    model = flops / 9e14 * rng.uniform(0.8, 1.2, size=flops.shape)   # wave model: faster than the floor
    measured = P.chain_latency_s(model, flops, 6e14) * rng.uniform(0.99, 1.01, size=30)
    assert P.fit_sustained_rate(model, flops, measured) == pytest.approx(6e14, rel=0.01)


def test_fit_refuses_data_without_a_power_limit():
    flops = np.full((4, 2), 1e9)
    model = np.full((4, 2), 1e-3)                         # 1 TFLOP/s: the floor never binds
    with pytest.raises(ValueError, match="power limit"):
        P.fit_sustained_rate(model, flops, model.sum(axis=1))
    with pytest.raises(ValueError, match="expected"):
        P.fit_sustained_rate(model, flops[:, :1], model.sum(axis=1))


def _profile_with_rate(rate):
    base = calibration.profile_for(H100, "cublas")
    return calibration.Profile(base.launch_overhead_s, base.l2_bandwidth_bytes_per_s,
                               base.sm_bandwidth_bytes_per_s, base.families, base.configs, True,
                               {"fp16": rate})


def test_sustained_prediction_takes_the_floor_where_it_binds():
    plain = wm.predict_latency(BIG, H100, "cublas", profile=_profile_with_rate(1e20))
    slow = _profile_with_rate(BIG.flops / (2 * plain.latency_s))          # floor: twice the wave model
    assert wm.predict_latency(BIG, H100, "cublas", profile=slow).latency_s == plain.latency_s
    p = wm.predict_latency(BIG, H100, "cublas", profile=slow, sustained=True)
    assert p.latency_s == pytest.approx(2 * plain.latency_s) and p.bound == "power"
    fast = _profile_with_rate(BIG.flops / (0.5 * plain.latency_s))        # floor below: no change
    p = wm.predict_latency(BIG, H100, "cublas", profile=fast, sustained=True)
    assert p.latency_s == plain.latency_s and p.bound == plain.bound
    # arrays: per element; a dtype the profile has no rate for is unchanged
    arr = wm.Gemm(4096, np.array([64, 5504]), 4096, dtype="fp16")
    pa = wm.predict_latency(arr, H100, "cublas", profile=slow, sustained=True)
    assert list(pa.bound) == [wm.predict_latency(wm.Gemm(4096, 64, 4096), H100, "cublas").bound, "power"]
    bf = wm.Gemm(4096, 5504, 4096, dtype="bf16")
    assert wm.predict_latency(bf, H100, "cublas", profile=slow, sustained=True).latency_s == \
        wm.predict_latency(bf, H100, "cublas", profile=slow).latency_s


def test_profile_round_trip_and_refit_keeps_the_rate(monkeypatch):
    p = _profile_with_rate(6e14)
    d = calibration.profile_to_dict(p)
    assert d["sustained_flops_per_s"] == {"fp16": 6e14}
    assert calibration.profile_from_dict(d).sustained_flops_per_s == {"fp16": 6e14}
    assert "sustained_flops_per_s" not in calibration.profile_to_dict(calibration.Profile())

    class R:
        profile = calibration.Profile(calibrated=True)

    class BF:       # the parts of a BackendFit that profile_document reads, for a refit of cublas
        group, result, rows, families = "cublas", R, (), ()
        families_without_rows = unnamed_configs = skipped_groups = ()
        seconds = 0.0
        priors: dict = {}

    R.iterations, R.parameters = 1, {}
    existing = {"gpu": "h100-sxm", "backends": {"cublas": d}, "fit": {}}
    monkeypatch.setattr(C, "calibration_errors", lambda bf, gpu: [])
    monkeypatch.setattr(C, "fit_error_by_family", lambda bf, gpu: {})
    doc = C.profile_document(H100, [BF], source="x", datasets={}, excluded=0, existing=existing)
    assert doc["backends"]["cublas"]["sustained_flops_per_s"] == {"fp16": 6e14}


def _scan_csv(path: Path, rate: float):
    """A synthetic LLaMA-MLP width scan whose chains run at the floor of ``rate`` (three windows)."""
    net = N.load_network("llama-7b-mlp")
    header = ("network", "count", "dtype", "keep", "widths", "window", "latency_us_median")
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for keep in (0.45, 0.5, 0.55, 0.7, 0.8, 0.9):
            widths = S.uniform_widths(net, keep, 8)
            flops = sum(N.layer_shape(x, 4096, "fp16", in_width=widths.get(x.in_var),
                                      out_width=widths.get(x.out_var)).flops for x in net.layers)
            t = flops / rate
            for window, scale in enumerate((1.0, 1.2, 0.999)):       # one slow window: the median ignores it
                w.writerow(["llama-7b-mlp", 4096, "fp16", keep, f"ffn={widths['ffn']}", window,
                            f"{t * scale * 1e6:.3f}"])


def test_read_width_scan_keeps_the_median_window(tmp_path):
    path = tmp_path / "scan.csv"
    _scan_csv(path, 5e14)
    pts = D.read_width_scan(path)
    assert [p.keep for p in pts] == [0.45, 0.5, 0.55, 0.7, 0.8, 0.9] and all(p.windows == 3 for p in pts)
    assert pts[1].widths == {"ffn": 5504}
    rows = list(csv.reader(path.open()))
    first = [float(r[6]) for r in rows[1:4]]
    assert pts[0].measured_s == pytest.approx(first[0] * 1e-6)
    bad = tmp_path / "bad.csv"
    bad.write_text("network,count\nx,1\n")
    with pytest.raises(ValueError, match="not a width scan"):
        D.read_width_scan(bad)


def test_calibrate_sustained_end_to_end(tmp_path, capsys):
    scan = tmp_path / "scan.csv"
    _scan_csv(scan, 5e14)
    out = tmp_path / "profile.json"
    out.write_text((ROOT / "wavemodel/data/profiles/h100-sxm.json").read_text())
    before = json.loads(out.read_text())
    assert cli.main(["calibrate", "--sustained", str(scan), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "cublas fp16: sustained" in text
    doc = json.loads(out.read_text())
    assert doc["backends"]["cublas"]["sustained_flops_per_s"]["fp16"] == pytest.approx(5e14, rel=0.01)
    rec = doc["fit"]["sustained"]["scans"][0]
    assert rec["calibration_points"] == 3 and rec["evaluation_points"] == 3      # keep <= 0.6 calibrates
    assert rec["evaluation_error"]["median_pct"] < 0.5
    assert doc["backends"]["own"] == before["backends"]["own"]                   # the rest is kept
    families = {k: v for k, v in doc["backends"]["cublas"].items() if k != "sustained_flops_per_s"}
    assert families == {k: v for k, v in before["backends"]["cublas"].items() if k != "sustained_flops_per_s"}


def test_calibrate_sustained_needs_a_profile_and_both_sets(tmp_path, capsys):
    scan = tmp_path / "scan.csv"
    _scan_csv(scan, 5e14)
    assert cli.main(["calibrate", "--sustained", str(scan), "--out", str(tmp_path / "none.json")]) == 2
    assert "not a profile" in capsys.readouterr().err
    pts = [p for p in D.read_width_scan(scan) if p.keep <= 0.6]
    with pytest.raises(ValueError, match="evaluation"):
        CP.fit_scan(pts, H100)


def test_shipped_profile_puts_the_llama_mlp_at_the_power_limit():
    # measured on the H100 SXM (width_scan/): the block runs at 700 W at every FFN width
    bounds = S.layer_bounds("llama-7b-mlp", {"ffn": 5504}, H100, 4096, "fp16")
    assert bounds == ("power", "power", "power")
    single = wm.predict_latency(BIG, H100)            # one call on its own: the wave model
    assert single.bound != "power"
    sol = S.solve_network("llama-7b-mlp", H100, tokens=4096, keep=0.5)
    assert sol.widths_after == {"ffn": 5504}          # no free width when latency follows FLOPs
