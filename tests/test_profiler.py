"""Splitting a profiler trace into calls by marker kernels (no GPU needed)."""

from __future__ import annotations

import math

import pytest

from wavemodel.hardware import profiler as P

SLEEP = "void at::cuda::(anonymous namespace)::spin_kernel(long)"
NVJET = "nvjet_sm90_hsh_256x128_64x4_1x2_h_bz_coopA_NNT"


def ev(name, ts, dur=1.0, cat="kernel"):
    return {"name": name, "ts": ts, "dur": dur, "cat": cat, "ph": "X"}


def trace_of(calls, reps=3):
    """calls: list of lists of (name, cat, dur) per repetition -> a chrome trace with markers."""
    events, ts = [{"name": "cpu op", "ts": 0, "cat": "cpu_op", "ph": "X"}], 1.0
    for kernels in calls:
        events.append(ev(SLEEP, ts))
        ts += 10
        for _ in range(reps):
            for name, cat, dur in kernels:
                events.append(ev(name, ts, dur, cat))
                ts += 10
        events.append(ev(SLEEP, ts))
        ts += 10
    events.reverse()                 # parse must sort by start time
    return {"traceEvents": events}


def test_parse_trace_names_and_durations():
    calls = [[("Memset (Device)", "gpu_memset", 0.5), (NVJET, "kernel", 10.0)],
             [("sm80_xmma_gemm", "kernel", 4.0)]]
    out = P.parse_trace(trace_of(calls), n_calls=2)
    assert out[0].kernel == f"memset;{NVJET}"
    assert out[0].kernel_us_reps == (10.5, 10.5, 10.5) and out[0].kernel_us_median == 10.5
    assert out[1].names == ("sm80_xmma_gemm",) and not out[1].error


def test_parse_trace_detects_lost_markers():
    tr = trace_of([[(NVJET, "kernel", 1.0)]] * 2)
    tr["traceEvents"] = [e for e in tr["traceEvents"] if not (e["name"] == SLEEP and e["ts"] == 1.0)]
    with pytest.raises(ValueError, match="marker groups"):
        P.parse_trace(tr, n_calls=2)


def test_uneven_repetitions_are_flagged():
    group = [ev("a", 1), ev("b", 2), ev("a", 3), ev("b", 4), ev("a", 5)]
    ck = P.split_reps(group, 3)
    assert ck.error and ck.names == ("a",)
    empty = P.split_reps([], 3)
    assert empty.error and math.isnan(empty.kernel_us_median)


def test_marker_names():
    assert P.is_marker(SLEEP) and P.is_marker("cudaSleepKernel") and not P.is_marker(NVJET)


def test_launch_geometry_is_read_from_the_trace_args():
    from wavemodel.hardware.profiler import launch_of

    e = {"name": "nvjet_x", "args": {"grid": [132, 1, 1], "block": [384, 1, 1], "registers per thread": 168,
                                     "shared memory": 213504}}
    assert launch_of(e) == "132x1x1/384x1x1/r168/s213504"
    assert launch_of({"name": "memset", "args": {}}) == ""
