"""Replay the launch probe measured on the H100 (validation/launch_probe.py, data in
validation/data/h100-sxm/launch_probe/): a graph-replayed call lasts its CTAs' span plus the kernel
boundary, and that boundary grows with the SMs the kernel ran on and with the stores still in flight
at its end. That is the evidence behind the model's straggler wait (``latency.straggler_wait_s``)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1] / "validation" / "data" / "h100-sxm" / "launch_probe"


def read(name: str) -> list[dict]:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{path} not committed")
    with open(path, newline="") as f:
        return [{k: (float(v) if v != "" else None) for k, v in r.items()} for r in csv.DictReader(f)]


def per_point():
    """(ctas, spin_ns, store) -> dict(median_us, span_ns, gap_ns, sms) over launches 2-14 of the graph."""
    timed = {(r["ctas"], r["spin_ns"], r["store_bytes_per_cta"]): r for r in read("launch_probe.csv")}
    out = {}
    for key, t in timed.items():
        rows = [g for g in read("launch_gaps.csv")
                if (g["ctas"], g["spin_ns"], g["store_bytes_per_cta"]) == key and 2 <= g["launch"] <= 14]
        assert len(rows) == 13, key
        out[key] = dict(median_us=t["median_us"], sms=t["sms"],
                        span_ns=float(np.median([g["last_end_ns"] - g["first_start_ns"] for g in rows])),
                        gap_ns=float(np.median([g["gap_to_next_ns"] for g in rows])))
    return out


def test_one_cta_per_sm_and_a_call_is_its_span_plus_the_kernel_boundary():
    pts = per_point()
    assert len(pts) == 4 * 17
    for (ctas, _, _), p in pts.items():
        assert p["sms"] == min(ctas, 132)
        # the traced launches add a barrier and the trace's own stores: up to 0.22 us on the H100
        assert (p["span_ns"] + p["gap_ns"]) / 1000 == pytest.approx(p["median_us"], abs=0.25)


def test_the_kernel_boundary_grows_with_the_sms_and_the_bytes_left_to_store():
    pts = per_point()
    for spin in (0.0, 2000.0):
        empty = {c: pts[(c, spin, 0.0)] for c in (2.0, 128.0, 132.0)}
        stores = {c: pts[(c, spin, 16384.0)] for c in (1.0, 2.0, 4.0, 128.0, 132.0)}
        # nothing stored: 0.1-0.35 us more on 128-132 SMs than on 2
        grow = min(empty[128.0]["median_us"], empty[132.0]["median_us"]) - empty[2.0]["median_us"]
        assert 0.1 < grow < 0.35
        # 16 KB per CTA: the CTAs' span barely moves, the boundary after the last CTA grows ~0.4 us
        few, many = (1.0, 2.0, 4.0), (128.0, 132.0)
        span = max(stores[c]["span_ns"] for c in many) - min(stores[c]["span_ns"] for c in few)
        gap = min(stores[c]["gap_ns"] for c in many) - max(stores[c]["gap_ns"] for c in few)
        assert span <= 100 and gap >= 300
        # only the last wave's stores are waited for: the boundary after 2 and 3 waves is the same
        assert abs(pts[(264.0, spin, 16384.0)]["gap_ns"] - pts[(396.0, spin, 16384.0)]["gap_ns"]) <= 100


def test_the_cta_sweep_is_held_out_and_its_predictions_were_recorded_for_every_row():
    """validation/data/h100-sxm/cta_sweep/: no sweep shape is a dataset row (calibration or evaluation),
    and the predictions file written before the sweep ran covers exactly the measured rows."""
    from validation import cta_sweep
    from validation.remeasure import committed_own_shapes

    sweep_dir = DATA.parent / "cta_sweep"
    if not (sweep_dir / "cta_sweep_gemm.csv").exists():
        pytest.skip("cta_sweep not committed")
    assert not {(j.kernel, *j.shape) for j in cta_sweep.jobs()} & committed_own_shapes(DATA.parent)
    measured = set()
    for kind, cols in (("gemm", ("batch", "m", "n", "k")),
                       ("conv", ("n", "c", "h", "w", "k", "r", "s", "stride", "padding"))):
        with open(sweep_dir / f"cta_sweep_{kind}.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert {r["set"] for r in rows} == {"probe"} and all(float(r["latency_us_median"]) > 0 for r in rows)
        measured |= {(r["kernel"], " ".join(r[c] for c in cols)) for r in rows}
    with open(sweep_dir / "cta_sweep_predictions.csv", newline="") as f:
        predicted = {(r["kernel"], r["shape"]) for r in csv.DictReader(f)}
    assert measured == predicted == {(j.kernel, " ".join(map(str, j.shape))) for j in cta_sweep.jobs()}
