"""The third session's re-timing of our kernels (validation/data/h100-sxm/session3_own/): its dataset
CSVs are the median windows of its logs, it covers every committed row of our kernels, and it
reproduces them as its README says."""

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "validation"))
import remeasure as R  # noqa: E402
import session_noise as N  # noqa: E402

from wavemodel import datasets as D  # noqa: E402

DATA = ROOT / "validation" / "data" / "h100-sxm"
CHECK = DATA / "session3_own"
PARTS = {"conv_own": 2, "gemm_own": 3}


@pytest.mark.parametrize("name", sorted(PARTS))
def test_rows_are_the_median_windows_of_the_logs(median_window_rows, name):
    logs = [CHECK / f"{name}_own_windows_part{i}of{PARTS[name]}.csv" for i in range(PARTS[name])]
    combined, (done, total) = median_window_rows(DATA / f"{name}.csv", logs, 3)
    assert done == total
    with open(CHECK / f"{name}.csv", newline="") as f:
        committed = list(csv.DictReader(f))
    assert combined == committed


def test_every_committed_row_of_our_kernels_is_timed_again():
    base = [r for r in D.load_dir(DATA).rows if r.backend == "own" and r.pass_ == "1"
            and r.source in ("conv_own.csv", "gemm_own.csv")]
    again = D.load_dir(CHECK).rows
    assert sorted(map(N.key, base)) == sorted(map(N.key, again))


def test_the_rows_reproduce_as_the_readme_says():
    diff = N.differences(list(D.load_dir(DATA).rows), list(D.load_dir(CHECK).rows))
    every = np.abs(np.concatenate(list(diff.values())))
    assert every.size == 3338
    assert np.median(every) == pytest.approx(0.0044, abs=5e-5)
    assert np.percentile(every, 90) == pytest.approx(0.0145, abs=5e-5)


def _median_windows(dataset: Path, log: Path, out: Path) -> list[D.Row]:
    """``dataset``'s rows, each with its median window from ``log`` (``remeasure.combine``)."""
    done, total = R.combine(dataset, [log], "own", 3, out)
    assert done == total
    return D.read_csv(out)


def test_the_other_board_reads_the_refinement_rows_as_its_readme_says(tmp_path):
    diff = []
    for name in ("gemm_own_refine", "conv_own_refine"):
        rows = D.read_csv(DATA / f"{name}.csv")
        again = _median_windows(DATA / f"{name}.csv", CHECK / "other_board" / f"{name}_windows.csv",
                                tmp_path / f"{name}.csv")
        diff += [b.latency_us / a.latency_us - 1 for a, b in zip(rows, again, strict=True)]
    a = np.abs(diff)
    assert a.size == 57 and np.median(a) == pytest.approx(0.0135, abs=5e-4) and a.max() < 0.054
    selected = CHECK / "other_board" / "gemm_own_selected.csv"
    again = _median_windows(selected, CHECK / "other_board" / "gemm_own_selected_windows.csv",
                            tmp_path / "gemm_own_selected.csv")
    m2944 = next(r for r in again if r.shape[1] == 2944)
    assert m2944.latency_us == pytest.approx(108.3, abs=0.05)
