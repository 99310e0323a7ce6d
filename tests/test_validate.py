"""``wavemodel validate``: error statistics, the issues' bounds, the staircase check and the command.

The synthetic datasets are written from the model's own predictions divided by (1 + e) for chosen
errors e, so every row's relative error ``predicted / measured - 1`` is e by construction and the
expected statistics follow from the chosen e alone.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import wavemodel as wm
from wavemodel import cli
from wavemodel import datasets as D
from wavemodel import validate as V
from wavemodel.configs import own_kernels
from wavemodel.hardware.calibration_sweep import HEADERS

ROOT = Path(__file__).resolve().parents[1]
H100 = wm.gpu("h100-sxm")
OWN = own_kernels()
OWN_GEMM = sorted(n for n, c in OWN.items() if c.kind == "gemm")
needs_own = pytest.mark.skipif(not OWN_GEMM, reason="needs one of our GEMM kernels in the catalogue")


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------- statistics


def test_error_stats_of_known_errors():
    s = V.error_stats("own_x", [0.01, -0.02, 0.03, -0.04, 0.2])
    assert s.n == 5
    assert s.median_pct == pytest.approx(3.0)
    assert s.mean_pct == pytest.approx(6.0)
    assert s.p90_pct == pytest.approx(13.6)          # |e| sorted 1, 2, 3, 4, 20 %: 4 + 0.6 * 16
    assert s.within_10_share == pytest.approx(0.8)
    assert s.bias_pct == pytest.approx(1.0)          # median signed error
    assert s.bound == V.OWN_BOUND
    assert s.failed == ["p90 13.60% > 8%"]           # "at most 3 %": a median of exactly 3 % passes


def test_bounds_per_family():
    assert V.bound_for("own_anything") == V.Bound(3.0, 8.0)
    assert V.bound_for("cublas_aligned") == V.Bound(5.0, 15.0)
    assert V.bound_for("cublas_misaligned") == V.Bound(15.0)
    assert V.bound_for("cudnn") == V.Bound(10.0)
    assert V.bound_for("something_else") is None
    fam = ["own_a"] * 10 + ["cublas_misaligned"] * 10 + ["cudnn"] * 10 + ["other"] * 2
    err = np.concatenate([
        [0.029] * 8 + [0.09, 0.09],                    # median 2.9 % passes, p90 9 % fails
        [0.14] * 8 + [0.9, 0.9],                       # median 14 % passes; no p90 bound
        [0.105] * 10,                                  # median 10.5 % fails
        [5.0, 5.0]])                                   # no bound
    stats = {s.family: s for s in V.family_stats(fam, err)}
    assert [s.family for s in V.family_stats(fam, err)] == sorted(stats)
    assert stats["own_a"].status == "FAIL" and stats["own_a"].failed == ["p90 9.00% > 8%"]
    assert stats["cublas_misaligned"].status == "PASS"
    assert stats["cudnn"].failed == ["median 10.50% > 10%"]
    assert stats["other"].status == "-" and stats["other"].failed == []
    assert V.failures(list(stats.values())) == ["cudnn: median 10.50% > 10%", "own_a: p90 9.00% > 8%"]


def test_match_families():
    present = ["cublas_aligned", "cudnn", "own_tc_f16", "own_simt_f32"]
    assert V.match_families(present, None) == sorted(present)
    assert V.match_families(present, ["own_*"]) == ["own_simt_f32", "own_tc_f16"]
    assert V.match_families(present, ["cudnn", "own_tc_f16"]) == ["cudnn", "own_tc_f16"]
    with pytest.raises(ValueError, match="matches no family"):
        V.match_families(present, ["cublas_misaligned"])


def test_swept_dimension_and_series():
    shapes = [(1, 4096, n, 1024) for n in (64, 128, 192)] + [(1, 2048, n, 1024) for n in (64, 128)]
    assert V.swept_dimension(shapes, D.GEMM_COLUMNS) == 2                        # n
    rows = [D.Row("gemm", "", "cublas", "fp16", s, 10.0 + i, group="stair_n") for i, s in enumerate(shapes)]
    rows.append(D.Row("gemm", "", "cublas", "fp16", (1, 64, 64, 64), 1.0, group="random_aligned"))
    series = V.staircase_series(rows)
    assert [(s.dim, dict(s.fixed)["m"], s.x.tolist()) for s in series] == [
        ("n", 2048, [64, 128]), ("n", 4096, [64, 128, 192])]
    assert series[1].index == ((0,), (1,), (2,))


# ------------------------------------------------------------------------------------ synthetic data


def write(path: Path, kind: str, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HEADERS[kind], lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in HEADERS[kind]})


def predicted_us(kind, backend, dtype, shapes) -> np.ndarray:
    cols = np.array(shapes).T
    dims = dict(zip(D.SHAPE_COLUMNS[kind], cols, strict=True))
    shape = wm.Gemm(**dims, dtype=dtype) if kind == "gemm" else wm.Conv2d(**dims, dtype=dtype)
    return np.atleast_1d(wm.predict_latency(shape, H100, backend).latency_s) * 1e6


def rows_with_errors(kind, backend, kernel, dtype, shapes, errors, *, set="evaluation", group="random",
                     lpg=1000) -> list[dict]:
    """Rows whose measured latency is the model's prediction / (1 + e): relative error e each."""
    pred = predicted_us(kind, kernel if backend == "own" else backend, dtype, shapes)
    out = []
    for s, p, e in zip(shapes, pred, errors, strict=True):
        out.append({"kernel": kernel, "backend": backend, "dtype": dtype,
                    **dict(zip(D.SHAPE_COLUMNS[kind], s, strict=True)),
                    "latency_us_median": repr(float(p / (1 + e))), "set": set, "group": group, "pass": 1,
                    "launches_per_graph": lpg})
    return out


def random_gemms(rng, n, align=8, misaligned=False, batch=1):
    m, nn, k = (rng.integers(1, 400, n) * align for _ in range(3))
    if misaligned:
        k = k + 3
    return [(batch, int(a), int(b), int(c)) for a, b, c in zip(m, nn, k, strict=True)]


def errors(rng, n, scale):
    """n errors of magnitude up to ``scale``, alternating in sign."""
    mag = rng.uniform(0.2, 1.0, n) * scale
    return mag * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)


def synthetic(tmp_path, own_scale=0.02, seed=0) -> dict:
    """Datasets in tmp_path; returns the designed errors per family and the stair facts."""
    rng = np.random.default_rng(seed)
    name = OWN_GEMM[0]
    cfg = OWN[name]
    dtype = cfg.dtypes[0]
    expect: dict[str, list] = {}
    own_rows = []
    # random rows of our kernel
    e = errors(rng, 24, own_scale)
    own_rows += rows_with_errors("gemm", "own", name, dtype, random_gemms(rng, 24), e)
    expect[D.own_family(name)] = list(e)
    # a staircase along N: exact except an injected 20 % rise inside one tile column (a violation) ...
    step = cfg.tile_n // 4
    stair = [(1, cfg.tile_m * 40, j * step, 512) for j in range(1, 17)]
    srows = rows_with_errors("gemm", "own", name, dtype, stair, np.zeros(16), group="stair_n")
    pred5 = float(srows[4]["latency_us_median"])                  # n = 1.25 tile_n: 2 tile columns
    srows[5]["latency_us_median"] = repr(pred5 * 1.2)             # n = 1.5 tile_n: still 2 tile columns
    # and a 30 % rise where the model has a tile boundary (n = 2 -> 2.25 tile_n): not a violation
    pred7 = float(srows[7]["latency_us_median"])
    srows[8]["latency_us_median"] = repr(pred7 * 1.3)
    p6, p9 = predicted_us("gemm", name, dtype, [stair[5], stair[8]])
    stair_errors = [0.0] * 16
    stair_errors[5], stair_errors[8] = p6 / (pred5 * 1.2) - 1, p9 / (pred7 * 1.3) - 1
    expect[D.own_family(name)] += stair_errors
    own_rows += srows
    # cuBLAS aligned / misaligned, cuDNN
    e_al, e_mis = errors(rng, 30, 0.04), errors(rng, 12, 0.12)
    lib = rows_with_errors("gemm", "cublas", "", "fp16", random_gemms(rng, 30), e_al)
    lib += rows_with_errors("gemm", "cublas", "", "fp16", random_gemms(rng, 12, misaligned=True), e_mis)
    expect["cublas_aligned"], expect["cublas_misaligned"] = list(e_al), list(e_mis)
    convs = [(int(n), int(c), int(h), int(h), int(k), 3, 3, 1, 1) for n, c, h, k in
             zip(rng.choice([8, 32], 10), rng.integers(1, 32, 10) * 8, rng.choice([14, 28], 10),
                 rng.integers(1, 32, 10) * 8, strict=True)]
    e_conv = errors(rng, 10, 0.08)
    conv = rows_with_errors("conv", "cudnn", "", "fp16", convs, e_conv)
    expect["cudnn"] = list(e_conv)
    # rows the default report must leave out: calibration set, pass 2, a short graph replay
    noise = rows_with_errors("gemm", "cublas", "", "fp16", random_gemms(rng, 10), np.full(10, 0.5),
                             set="calibration")
    noise += rows_with_errors("gemm", "own", name, dtype, random_gemms(rng, 10), np.full(10, -0.5),
                              set="calibration")
    p2 = rows_with_errors("gemm", "cublas", "", "fp16", random_gemms(rng, 3), np.full(3, 0.7))
    for r in p2:
        r["pass"] = 2
    short = rows_with_errors("gemm", "cublas", "", "fp16", random_gemms(rng, 1), [3.0], lpg=1)
    write(tmp_path / "gemm_own.csv", "gemm", own_rows)
    write(tmp_path / "gemm_cublas.csv", "gemm", lib + noise + p2 + short)
    write(tmp_path / "conv_cudnn.csv", "conv", conv)
    return {"errors": expect, "kernel": name, "stair": (stair[4][2], stair[5][2]), "short": short}


@needs_own
def test_validate_reports_the_designed_errors_and_passes(tmp_path, capsys):
    data = synthetic(tmp_path)
    code, out, err = run(["validate", str(tmp_path), "--json"], capsys)
    assert code == 0, out + err
    doc = json.loads(out)
    got = {f["family"]: f for f in doc["families"]}
    assert set(got) == set(data["errors"])
    for fam, e in data["errors"].items():
        e = np.asarray(e)
        assert got[fam]["n"] == e.size
        assert got[fam]["median_pct"] == pytest.approx(100 * np.median(np.abs(e)), rel=1e-6, abs=1e-9)
        assert got[fam]["p90_pct"] == pytest.approx(100 * np.percentile(np.abs(e), 90), rel=1e-6, abs=1e-9)
        assert got[fam]["bias_pct"] == pytest.approx(100 * np.median(e), rel=1e-6, abs=1e-9)
        assert got[fam]["result"] == "PASS"
    assert doc["failures"] == [] and doc["exit_code"] == 0
    assert doc["excluded_short_replays"]["rows"] == 1
    assert doc["excluded_short_replays"]["by_file"] == {"gemm_cublas.csv": 1}
    # the one injected rise inside a tile column is the only staircase violation
    (v,) = doc["staircase"]["violations"]
    assert (v["x_before"], v["x_after"]) == data["stair"] and v["rise"] == pytest.approx(0.2)
    assert data["kernel"] in v["series"] and doc["staircase"]["series"] == 1
    assert doc["staircase"]["rises_over_5pct"] >= 1


@needs_own
def test_validate_table_and_exit_codes(tmp_path, capsys):
    synthetic(tmp_path)
    code, out, _ = run(["validate", str(tmp_path)], capsys)
    assert code == 0
    assert "family" in out and "within 10 %" in out and "PASS" in out and "FAIL" not in out
    assert "excluded: 1 rows whose graph replay lasted under 0.5 ms" in out and "gemm_cublas.csv 1" in out
    assert "1 with no model boundary" in out
    assert run(["validate", str(tmp_path), "--strict-staircase"], capsys)[0] == 1
    # the calibration rows were made 50 % off: scoring them fails
    code, out, _ = run(["validate", str(tmp_path), "--set", "calibration"], capsys)
    assert code == 1 and "FAIL: cublas_aligned: median 50.00% > 5%" in out
    # the short replay (300 % off) counts only when asked for
    code, out, _ = run(["validate", str(tmp_path), "--keep-short-replays", "--json"], capsys)
    fam = {f["family"]: f for f in json.loads(out)["families"]}
    assert fam["cublas_aligned"]["n"] == 31 and code == 0


@needs_own
def test_own_errors_past_the_bound_fail(tmp_path, capsys):
    data = synthetic(tmp_path, own_scale=0.12)
    fam = D.own_family(data["kernel"])
    code, out, _ = run(["validate", str(tmp_path), "--json"], capsys)
    doc = json.loads(out)
    assert code == 1 and doc["exit_code"] == 1
    assert [f.split(":")[0] for f in doc["failures"]] == [fam]
    code, out, _ = run(["validate", str(tmp_path), "--families", "cublas_*", "cudnn"], capsys)
    assert code == 0 and fam not in out


@needs_own
def test_plots_are_written(tmp_path, capsys):
    synthetic(tmp_path)
    plots = tmp_path / "plots"
    code, out, _ = run(["validate", str(tmp_path), "--plots", str(plots)], capsys)
    assert code == 0
    files = sorted(p.name for p in plots.iterdir())
    stairs = [f for f in files if f.startswith("stair_")]
    scatters = [f for f in files if f.startswith("scatter_")]
    assert len(stairs) == 1 and OWN_GEMM[0] in stairs[0]
    assert len(scatters) == 4 and "scatter_cudnn.png" in scatters
    for f in files:
        data = (plots / f).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert f"wrote {len(files)} plots" in out


@pytest.mark.parametrize(("argv", "needle"), [
    (["validate", "{tmp}/nope"], "not a directory"),
    (["validate", "{tmp}"], "no dataset CSV"),
    (["validate", "{data}", "--families", "rocblas_*"], "matches no family"),
    (["validate", "{data}", "--set", "training"], "invalid choice"),
    (["validate", "{data}", "--profile", "{tmp}/bad.json"], "not JSON"),
    (["validate", "{data}", "--gpu", "h900"], "unknown GPU"),
])
def test_bad_input_is_one_line_and_exit_2(argv, needle, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "bad.json").write_text("{nope")
    data = ROOT / "validation" / "data" / "h100-sxm"
    argv = [a.format(tmp=empty, data=data) for a in argv]
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("wavemodel: error: ") and needle in err


# ------------------------------------------------------------------------------------ committed data


H100_DATA = ROOT / "validation" / "data" / "h100-sxm"


def test_committed_h100_report_is_consistent(capsys):
    code, out, _ = run(["validate", str(H100_DATA), "--json"], capsys)
    doc = json.loads(out)
    assert code == doc["exit_code"] == (1 if doc["failures"] else 0)
    fams = {f["family"] for f in doc["families"]}
    assert {"own_simt_f32", "own_tc_f16", "own_conv_f16", "cublas_aligned", "cublas_misaligned",
            "cudnn"} <= fams
    assert sum(f["n"] for f in doc["families"]) == doc["rows"]
    assert doc["excluded_short_replays"]["rows"] > 0
    assert doc["staircase"]["series"] > 0


def test_committed_h100_evaluation_data_meets_the_library_bounds(capsys):
    # issue 4: cuBLAS 8-aligned median <= 5 % and p90 <= 15 %, misaligned median <= 15 %, cuDNN median
    # <= 10 %, on the evaluation shapes (never calibrated on)
    code, out, _ = run(["validate", str(H100_DATA), "--families", "cublas_*", "cudnn", "--json"], capsys)
    doc = json.loads(out)
    assert {f["family"] for f in doc["families"]} == {"cublas_aligned", "cublas_misaligned", "cudnn"}
    assert doc["failures"] == [] and code == 0


def test_committed_h100_evaluation_data_meets_the_own_kernel_bounds(capsys):
    # issue 3's bounds (median <= 3 %, p90 <= 8 %) for each of our families on the evaluation rows,
    # which no fit has seen
    code, out, _ = run(["validate", str(H100_DATA), "--families", "own_*", "--json"], capsys)
    doc = json.loads(out)
    assert {f["family"] for f in doc["families"]} == {"own_simt_f32", "own_tc_f16", "own_conv_f16"}
    assert doc["failures"] == [] and code == 0


def test_every_committed_h100_conv_row_meets_the_median_bound(capsys):
    # over every committed row our convs miss only the p90 bound (next test); their median is within 3 %
    _, out, _ = run(["validate", str(H100_DATA), "--families", "own_conv_f16", "--set", "all", "--json"],
                    capsys)
    (conv,) = json.loads(out)["families"]
    assert conv["n"] == 2548 and conv["median_pct"] <= 3.0


def test_every_committed_h100_row_meets_the_own_kernel_bounds(capsys):
    # issue 3 counts every committed row, calibration rows included (convs: p90 7.86 %, 245 of 2548 rows
    # past 8 % where 254 are allowed)
    code, out, _ = run(["validate", str(H100_DATA), "--families", "own_*", "--set", "all", "--json"], capsys)
    assert json.loads(out)["failures"] == [] and code == 0


def test_the_refinement_rows_are_held_out_points_inside_committed_staircase_intervals():
    """gemm_own_refine.csv / conv_own_refine.csv (validation/stair_refine.py): evaluation rows only, each
    strictly between two committed points of its staircase, each with the prediction written before it
    was measured (stair_refine/stair_refine_predictions.csv)."""
    from wavemodel import datasets as D

    loaded = D.load_dir(H100_DATA)
    refine = [r for r in loaded.rows if Path(r.source).name in ("gemm_own_refine.csv", "conv_own_refine.csv")]
    if not refine:
        pytest.skip("no refinement rows committed")
    assert {r.set for r in refine} == {"evaluation"} and all(r.group.startswith("stair") for r in refine)
    keys = {(r.kernel, r.kind, r.shape) for r in refine}
    base = [r for r in loaded.rows if (r.kernel, r.kind, r.shape) not in keys and r.backend == "own"]
    for r in refine:
        series = [b for b in base if b.kind == r.kind and b.kernel == r.kernel and b.group == r.group]
        d = V.swept_dimension([b.shape for b in series], D.SHAPE_COLUMNS[r.kind])
        rest = r.shape[:d] + r.shape[d + 1:]
        xs = sorted({b.shape[d] for b in series if b.shape[:d] + b.shape[d + 1:] == rest})
        assert xs and xs[0] < r.shape[d] < xs[-1] and r.shape[d] not in xs
    with open(H100_DATA / "stair_refine" / "stair_refine_predictions.csv", newline="") as f:
        predicted = {(p["kernel"], tuple(int(v) for v in p["shape"].split())) for p in csv.DictReader(f)}
    assert predicted == {(r.kernel, r.shape) for r in refine}
