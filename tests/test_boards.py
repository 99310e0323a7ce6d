"""Three more boards' timing of every row of our kernels (validation/data/h100-sxm/boards/): each
board's CSVs are the median windows of its logs and cover every committed row, and the spreads and
the model's errors are as the README says."""

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "validation"))
import board_median as BM  # noqa: E402
import remeasure as R  # noqa: E402

import wavemodel as wm  # noqa: E402
from wavemodel import datasets as D  # noqa: E402
from wavemodel import validate as V  # noqa: E402
from wavemodel.commands.validate import select_rows  # noqa: E402

DATA = ROOT / "validation" / "data" / "h100-sxm"
BOARDS = ("1752524017460", "1752624008250", "1652624078749")
TIMINGS = (DATA, DATA / "session3_own", *(DATA / "boards" / b for b in BOARDS))


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("name", ["conv_own", "gemm_own"])
def test_rows_are_the_median_windows_of_the_logs(tmp_path, board, name):
    folder = DATA / "boards" / board
    done, total = R.combine(DATA / f"{name}.csv", [folder / f"{name}_own_windows.csv"], "own", 3,
                            tmp_path / f"{name}.csv")
    assert done == total == {"conv_own": 940, "gemm_own": 2398}[name]
    with open(tmp_path / f"{name}.csv", newline="") as f:
        combined = [r for r in csv.DictReader(f) if r["backend"] == "own" and r["pass"] == "1"]
    with open(folder / f"{name}.csv", newline="") as f:
        assert combined == list(csv.DictReader(f))


def test_the_median_takes_a_real_row_and_needs_full_coverage(tmp_path):
    timings = ((3.0, "a"), (1.0, "b"), (2.0, "c"), (4.0, "d"))
    rows = [[{"latency_us_median": v, "who": who}] for v, who in timings]
    picked, picks = BM.median_rows(rows)
    assert picked[0]["who"] == "c" and picks == [0, 0, 1, 0]      # lower middle of four, as windows
    short = tmp_path / "short"
    short.mkdir()
    with open(DATA / "conv_own.csv", newline="") as f:
        lines = f.readlines()
    (short / "conv_own.csv").write_text("".join(            # without one shape of our conv
        [lines[0]] + [x for x in lines[1:] if not x.startswith("conv_f16_128x64,own,fp16,32,64,56,56,64,")]))
    (short / "gemm_own.csv").write_text((DATA / "gemm_own.csv").read_text())
    with pytest.raises(ValueError, match="rows missing"):
        BM.main([str(DATA), str(short), "--out", str(tmp_path / "out")])


def test_the_boards_differ_as_the_readme_says():
    _, _, per = BM.latencies(list(TIMINGS), "conv_own.csv")
    p = BM.pairwise_p90(per, "conv_") * 100
    others = [0, 1, 2, 4]                                 # every timing but board 1752624008250
    among = p[np.ix_(others, others)][~np.eye(4, dtype=bool)]
    assert among.min() > 1.4 and among.max() < 1.65
    apart = np.concatenate([p[3, others], p[others, 3]])
    assert apart.min() > 2.6 and apart.max() < 2.8
    lat = np.array([[float(r["latency_us_median"]) for r in rows] for rows in per])
    span = (lat.max(0) / lat.min(0) - 1) * 100
    assert np.median(span) == pytest.approx(1.03, abs=0.01)
    assert np.percentile(span, 90) == pytest.approx(3.86, abs=0.01)


def _conv_p90(folder: Path, set_name: str) -> float:
    rows, _, _ = select_rows(D.load_dir(folder), set_name, False, ["own_conv_f16"])
    rows = [r for r in rows if r.source == "conv_own.csv"]   # refinement rows: committed board only
    ev = V.evaluate(rows, wm.gpu("h100-sxm"))
    return V.family_stats(ev.families, ev.relative_error)[0].p90_pct


def test_the_shipped_model_on_each_board_as_the_readme_says(tmp_path):
    BM.main([str(t) for t in TIMINGS] + ["--out", str(tmp_path)])
    readme = {  # folder: (every row, evaluation set), conv p90 %
        DATA: (8.08, 8.44), DATA / "session3_own": (8.12, 8.36),
        DATA / "boards" / BOARDS[0]: (7.89, 8.04), DATA / "boards" / BOARDS[1]: (7.99, 8.12),
        DATA / "boards" / BOARDS[2]: (7.90, 8.31), tmp_path: (7.99, 8.35),
    }
    for folder, (every, held_out) in readme.items():
        assert _conv_p90(folder, "all") == pytest.approx(every, abs=0.005), folder
        assert _conv_p90(folder, "evaluation") == pytest.approx(held_out, abs=0.005), folder
        assert held_out > 8.0       # the held-out bound fails on every board and on the median
