"""Other timings of every row of our kernels: three more boards (validation/data/h100-sxm/boards/) and
the timings over buffer placements (.../placements/). Each folder's CSVs are the median windows of its
logs and cover every committed row, and the spreads and the model's errors are as its README says."""

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "validation"))
import board_median as BM  # noqa: E402
import placement_spread as PS  # noqa: E402

import wavemodel as wm  # noqa: E402
from wavemodel import datasets as D  # noqa: E402
from wavemodel import validate as V  # noqa: E402
from wavemodel.cli import main as wm_cli  # noqa: E402
from wavemodel.commands.validate import read_profile, select_rows  # noqa: E402

DATA = ROOT / "validation" / "data" / "h100-sxm"
BOARDS = ("1752524017460", "1752624008250", "1652624078749")
TIMINGS = (DATA, DATA / "session3_own", *(DATA / "boards" / b for b in BOARDS))
PLACEMENTS = DATA / "placements"
# the READMEs of boards/ and placements/ judge the profile shipped when they were written, before the
# conv refit on conv_own_extra.csv; it is kept beside them so that their figures stay reproducible. The
# figures replayed here are today's code's with that profile: since 33bae61 the model counts a conv's
# off-sector channel sectors per tap, and since the session after it counts the 128-byte lines a 1x1
# strided conv's input rows fetch (latency.strided_window_bytes), which moves them by up to 0.14 points
# (the READMEs keep the figures of the code of their time beside them). The profile pins the max of the
# DRAM and L2 streams it was fitted under (dram_l2_norm 0: calibration.PINNED_FIELDS)
PROFILE_THEN = read_profile(DATA / "boards" / "profile_before_conv_extra.json", "h100-sxm")
# ... and quote the profile shipped now beside those figures
PROFILE_NOW = read_profile(ROOT / "wavemodel" / "data" / "profiles" / "h100-sxm.json", "h100-sxm")
WINDOWS = {**{(f"boards/{b}", n): 3 for b in BOARDS for n in ("conv_own", "gemm_own")},
           ("placements", "conv_own"): 5, ("placements", "gemm_own"): 3}


@pytest.mark.parametrize(("where", "name"), sorted(WINDOWS))
def test_rows_are_the_median_windows_of_the_logs(median_window_rows, where, name):
    folder = DATA / where
    combined, (done, total) = median_window_rows(DATA / f"{name}.csv", [folder / f"{name}_own_windows.csv"],
                                                 WINDOWS[where, name])
    assert done == total == {"conv_own": 940, "gemm_own": 2398}[name]
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


def _p90(folder: Path, set_name: str, family: str = "own_conv_f16", profile=PROFILE_THEN) -> float:
    rows, _, _ = select_rows(D.load_dir(folder), set_name, False, [family])
    rows = [r for r in rows if r.source in ("conv_own.csv", "gemm_own.csv")]   # refinement rows:
    ev = V.evaluate(rows, wm.gpu("h100-sxm"), profile)                         # committed board only
    return V.family_stats(ev.families, ev.relative_error)[0].p90_pct


def test_the_model_then_shipped_on_each_board_as_the_readme_says(tmp_path):
    BM.main([str(t) for t in TIMINGS] + ["--out", str(tmp_path)])
    readme = {  # folder: (every row, evaluation set), conv p90 %
        DATA: (8.08, 8.44), DATA / "session3_own": (8.13, 8.37),
        DATA / "boards" / BOARDS[0]: (7.89, 8.03), DATA / "boards" / BOARDS[1]: (8.09, 8.26),
        DATA / "boards" / BOARDS[2]: (7.92, 8.27), tmp_path: (8.05, 8.24),
    }
    for folder, (every, held_out) in readme.items():
        assert _p90(folder, "all") == pytest.approx(every, abs=0.005), folder
        assert _p90(folder, "evaluation") == pytest.approx(held_out, abs=0.005), folder
        assert held_out > 8.0       # the held-out bound fails on every board and on the median


def test_the_profile_shipped_now_on_each_board_and_placement_as_the_readmes_say(tmp_path):
    BM.main([str(t) for t in TIMINGS] + ["--out", str(tmp_path)])
    readme = {  # folder: (every row, evaluation set), conv p90 % (boards/README.md, placements/README.md)
        DATA: (6.98, 7.16), DATA / "session3_own": (7.03, 7.11),
        DATA / "boards" / BOARDS[0]: (6.98, 7.02), DATA / "boards" / BOARDS[1]: (6.97, 7.21),
        DATA / "boards" / BOARDS[2]: (7.07, 7.19), tmp_path: (6.93, 7.17), PLACEMENTS: (6.87, 7.25),
    }
    for folder, (every, held_out) in readme.items():
        assert _p90(folder, "all", profile=PROFILE_NOW) == pytest.approx(every, abs=0.005), folder
        assert _p90(folder, "evaluation", profile=PROFILE_NOW) == pytest.approx(held_out, abs=0.005), folder


def test_placements_spread_as_the_readme_says():
    table = {f: {k: round(100 * v, 2) if k != "rows" else v for k, v in t.items()}
             for f, t in PS.spread_table(PLACEMENTS).items()}
    assert table == {
        "conv": dict(rows=940, spread_median=1.00, spread_p90=4.15, spread_max=15.2,
                     committed_median=0.37, committed_p90=1.87),
        "simt": dict(rows=1200, spread_median=0.75, spread_p90=1.44, spread_max=9.56,
                     committed_median=0.40, committed_p90=1.11),
        "tc": dict(rows=1198, spread_median=1.02, spread_p90=4.50, spread_max=18.0,
                   committed_median=0.59, committed_p90=2.15)}


def test_order_probe_contexts_as_the_readme_says():
    with open(PLACEMENTS / "order_probe.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    by: dict = {}
    for r in rows:
        key = (r["kernel"], *(int(r[c]) for c in ("n", "c", "h", "k", "r", "stride")))
        by.setdefault(key, {}).setdefault(r["context"], float(r["latency_us_median"]))
    slow, fast = ("stair", "alone", "stair_again"), ("reverse", "spacer0", "spacer1", "spacer2")
    for k in (280, 296, 312):
        t = by["conv_f16_128x64", 32, 128, 28, k, 3, 1]
        assert min(t[c] for c in slow) >= 74.5 and max(t[c] for c in fast) <= 70.7
    span = {key: max(t.values()) / min(t.values()) - 1 for key, t in by.items() if len(t) >= 5}
    stair = [v for key, v in span.items() if key[1:4] == (32, 128, 28)]
    assert len(stair) == 10 and min(stair) > 0.05 and max(stair) < 0.161
    misses = {key: v for key, v in span.items() if key[1] != 32 or key[4] == 1472}
    assert len(misses) == 10
    assert misses["conv_f16_128x64", 32, 24, 7, 1472, 3, 1] == pytest.approx(0.105, abs=5e-4)
    assert max(v for key, v in misses.items() if key[4] != 1472 or key[0].endswith("128x128")) < 0.036


def test_the_model_on_the_placements_as_the_readme_says(tmp_path):
    assert _p90(PLACEMENTS, "all") == pytest.approx(7.98, abs=0.005)
    assert _p90(PLACEMENTS, "evaluation") == pytest.approx(8.62, abs=0.005)
    for family, every, held_out in (("own_simt_f32", 7.18, 7.43), ("own_tc_f16", 7.46, 7.82)):
        assert _p90(PLACEMENTS, "all", family) == pytest.approx(every, abs=0.005)
        assert _p90(PLACEMENTS, "evaluation", family) == pytest.approx(held_out, abs=0.005)
    conv = tmp_path / "conv"
    conv.mkdir()
    (conv / "conv_own.csv").write_text((PLACEMENTS / "conv_own.csv").read_text())
    profile = tmp_path / "refit.json"
    assert wm_cli(["calibrate", "--data", str(conv), "--backend", "own", "--out", str(profile)]) == 0
    refit = read_profile(profile, "h100-sxm")
    # today's model, 1x1 and larger filters fitted apart on these 435 calibration rows alone (7.53 % and
    # 8.33 % before the fits started from two efficiencies, 7.59 % and 8.50 % before
    # partial_line_write_factor, 7.97 % and 9.21 % before DRAM and L2 combined as a
    # 2-norm, 8.00 % and 9.52 % before off-sector channels were counted per tap, 7.67 % and 8.20 % with
    # one family per kernel, 7.96 % and 8.55 % before channel_dram_factor, as the README says)
    assert _p90(conv, "all", profile=refit) == pytest.approx(7.03, abs=0.005)
    assert _p90(conv, "evaluation", profile=refit) == pytest.approx(8.21, abs=0.005)


def test_the_model_misses_are_not_the_placement_sensitive_rows():
    committed = D.read_csv(DATA / "conv_own.csv")
    key = lambda r: (r.kernel, r.shape, r.group)  # noqa: E731
    spread = {key(committed[i]): max(v) / min(v) - 1
              for i, v in PS.window_latencies(PLACEMENTS / "conv_own_own_windows.csv").items()}
    rows, _, _ = select_rows(D.load_dir(PLACEMENTS), "all", False, ["own_conv_f16"])
    ev = V.evaluate(rows, wm.gpu("h100-sxm"), PROFILE_THEN)
    err = np.abs(ev.relative_error)
    sp = np.array([spread[key(r)] for r in rows])
    miss = err > 0.08
    assert miss.sum() == 94
    assert np.median(sp[miss]) == pytest.approx(0.0124, abs=5e-4)
    assert np.median(sp[~miss]) == pytest.approx(0.0098, abs=5e-4)
    assert np.corrcoef(err, sp)[0, 1] == pytest.approx(0.09, abs=0.005)
    stair = {r.dims["k"]: m for r, m in zip(rows, ev.measured_s, strict=True)
             if r.kernel == "conv_f16_128x128" and (r.dims["c"], r.dims["h"], r.dims["r"]) == (64, 56, 3)}
    assert stair[248] / stair[240] - 1 == pytest.approx(0.0436, abs=5e-4)  # under the check's 5 %
