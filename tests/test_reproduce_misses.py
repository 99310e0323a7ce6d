"""validation/reproduce_misses.py: the selection of misses and controls, and the comparison."""

import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "validation"))
import reproduce_misses as R  # noqa: E402

from wavemodel import datasets as D  # noqa: E402


def test_select_takes_every_miss_and_as_many_controls_per_kernel(tmp_path):
    R.select(tmp_path)
    rows = D.read_csv(tmp_path / R.NAME)
    err = np.abs(R._errors(rows))
    kernels = np.array([r.kernel for r in rows])
    everything = [r for r in D.read_csv(R.DATA / "conv_own.csv") if r.backend == "own" and r.pass_ == "1"]
    assert (err > R.MISS).sum() == (np.abs(R._errors(everything)) > R.MISS).sum()
    for k in set(kernels):
        assert (err[kernels == k] > R.MISS).sum() == (err[kernels == k] <= R.MISS).sum()


def test_compare_reads_the_median_window(tmp_path, capsys):
    R.select(tmp_path)
    rows = D.read_csv(tmp_path / R.NAME)
    with open(tmp_path / R.NAME.replace(".csv", "_own_windows_part0of1.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["row", "window", "latency_us_median"])
        for i, r in enumerate(rows):     # one slow window of three: the median is the committed time
            w.writerows([[i, 0, r.latency_us], [i, 1, r.latency_us * 1.5], [i, 2, r.latency_us]])
    R.compare(tmp_path)
    out = capsys.readouterr().out
    assert "|diff| median 0.00 % p90 0.00 %" in out
    assert "correlation of old and new error 1.00" in out
