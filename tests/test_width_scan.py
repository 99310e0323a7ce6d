"""validation/width_scan.py and wavemodel.hardware.clocks on the CPU: grid, plan, resume, summary."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation import solver_benefit as B  # noqa: E402
from validation import width_scan as W  # noqa: E402
from wavemodel import networks as N  # noqa: E402
from wavemodel import solver as S  # noqa: E402
from wavemodel.hardware import clocks as C  # noqa: E402


def test_parse_grid_ranges_and_values():
    assert W.parse_grid("0.5:0.51:0.005,0.7") == [0.5, 0.505, 0.51, 0.7]
    assert W.parse_grid("0.9") == [0.9]
    for bad in ("0.6:0.5:0.01", "0.5:0.6:0", "1.5", "0", "0.1:0.2", ""):
        with pytest.raises(ValueError):
            W.parse_grid(bad)


def test_plan_distinct_uniform_widths():
    pts = W.plan("llama-7b-mlp", 4096, W.parse_grid("0.5:0.5003:0.0001,0.7"))
    net = N.load_network("llama-7b-mlp")
    assert [p.widths for p in pts] == [S.uniform_widths(net, 0.5, 8), S.uniform_widths(net, 0.7, 8)]
    assert pts[0].total_channels == 5504 and all(p.total_channels % 8 == 0 for p in pts)
    lat, _ = S.network_latency(net, pts[1].widths, "h100-sxm", 4096, "fp16")
    assert pts[1].latency_us_predicted == pytest.approx(lat * 1e6)


def _row(ch, window, us, keep=0.5):
    return dict(network="n", count=1, dtype="fp16", keep=keep, total_channels=ch, widths=f"ffn={ch}",
                window=window, latency_us_median=us, latency_us_p10=us, latency_us_p90=us, reps=10,
                sm_mhz_mean=1980, sm_mhz_min=1980, power_w_mean=500, power_w_max=600,
                latency_us_predicted=2 * us)


def test_resume_and_median_window(tmp_path):
    path = W.csv_path(tmp_path, "n", 1)
    for ch, w, us in ((100, 0, 10.0), (100, 1, 30.0), (100, 2, 11.0), (110, 0, 10.0)):
        W.append_row(path, _row(ch, w, us))
    rows = W.read_rows(path)
    assert W.done_keys(rows) == {(100, 0), (100, 1), (100, 2), (110, 0)}
    pts = W.medians(rows)
    assert [p["total_channels"] for p in pts] == [100, 110]
    assert (pts[0]["measured_us"], pts[0]["measured_min_us"], pts[0]["measured_max_us"]) == (11.0, 10.0, 30.0)
    assert pts[0]["windows"] == 3 and pts[1]["windows"] == 1


def test_window_order_alternates():
    pts = [1, 2, 3]
    assert W.window_order(pts, 0) == [1, 2, 3] and W.window_order(pts, 1) == [3, 2, 1]


def test_best_against_equal_latency_and_equal_channels():
    pts = [dict(total_channels=c, measured_us=us) for c, us in ((100, 10.0), (104, 10.05), (108, 12.0),
                                                                 (112, 9.5), (120, 13.0))]
    b = W.best_against(pts, 100)
    # 112 channels run faster than 100: most channels at equal latency and least latency at >= channels
    assert b["at_latency"]["total_channels"] == 112 and b["more_channels"] == pytest.approx(0.12)
    assert b["at_channels"]["total_channels"] == 112 and b["saving"] == pytest.approx(0.05)
    b = W.best_against(pts, 108)
    assert b["at_latency"]["total_channels"] == 112 and b["saving"] == pytest.approx(1 - 9.5 / 12.0)


def test_clock_sampler_reads_while_running_and_without_nvml():
    calls = []

    def read():
        calls.append(1)
        return (1500.0 + len(calls), 600.0 + len(calls))

    with C.ClockSampler(read, interval_s=0.001) as s:
        import time
        time.sleep(0.02)
    sm = s.summary()
    assert sm.samples == len(calls) >= 2
    assert sm.sm_mhz_min == 1501.0 and sm.power_w_max == 600.0 + len(calls)
    assert sm.sm_mhz_mean == pytest.approx(1500 + (len(calls) + 1) / 2)
    with C.ClockSampler(None) as s:
        pass
    assert s.summary().samples == 0 and s.summary().sm_mhz_mean != s.summary().sm_mhz_mean   # NaN
    with pytest.raises(ValueError):
        C.ClockSampler(read, interval_s=0)


def test_solver_benefit_windows(tmp_path):
    p = B.Planned("n", 1, 0.5, "uniform", {"ffn": 8}, 8, 1.0)

    class T:
        median_s, p10_s, p90_s = 10e-6, 9e-6, 11e-6

    log = B.window_log_path(tmp_path / "solver_benefit.csv")
    assert log.name == "solver_benefit_windows.csv"
    B.append_window(log, p, 0, T, C.NO_READINGS)
    T.median_s = 30e-6
    B.append_window(log, p, 2, T, C.summarize([(1980.0, 500.0)]))
    timed = B.read_windows(log)
    assert timed == {p.key: {0: 10.0, 2: 30.0}}
    assert B.median_of_windows(timed[p.key], 3) is None          # window 1 missing: not yet a row
    timed[p.key][1] = 12.0
    assert B.median_of_windows(timed[p.key], 3) == 12.0
    assert B.median_of_windows({0: 5.0, 1: 7.0}, 2) == 5.0
    assert B.window_order([1, 2], 1) == [2, 1]
