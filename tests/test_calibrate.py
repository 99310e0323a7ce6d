"""``wavemodel calibrate``: fits on synthetic data made with known parameters, the profile JSON, the
calibration sweep's shape set, planning and CSV writing (CPU), and one GPU run with a tiny budget."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import wavemodel as wm
from wavemodel import calibration, cli
from wavemodel import datasets as D
from wavemodel.calibration import Profile
from wavemodel.configs import library_configs, own_kernels
from wavemodel.hardware import calibration_sweep as S

ROOT = Path(__file__).resolve().parents[1]
H100 = wm.gpu("h100-sxm")
OWN = own_kernels()
OWN_GEMM = sorted(n for n, c in OWN.items() if c.kind == "gemm")
KERNEL = next((n for n in OWN_GEMM if OWN[n].math == "tensor"), OWN_GEMM[0] if OWN_GEMM else None)
needs_own = pytest.mark.skipif(KERNEL is None, reason="needs one of our GEMM kernels in the catalogue")
# unhidden_fraction and the write rate trade off against efficiency: 3000 calibration rows pin them
FAMILY_TRUTH = dict(efficiency=0.55, tile_overhead_s=0.8e-6, kernel_fixed_s=2.2e-6, bandwidth_efficiency=0.8,
                    single_block_speedup=1.3, tail_block_speedup=1.1, store_bytes_per_s=30e9,
                    unhidden_fraction=0.4, l2_bandwidth_bytes_per_s=8e12, sm_bandwidth_bytes_per_s=60e9,
                    cta_dispatch_s=10e-9, straggler_s=1.5e-7, write_bandwidth_efficiency=0.6)


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def write(path: Path, kind: str, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=S.HEADERS[kind], lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in S.HEADERS[kind]})


def gemm_rows(shape: wm.Gemm, latency_s, *, backend, kernel="", set="calibration", pass_=1, lpg=1000):
    cols = [np.broadcast_to(getattr(shape, c), np.shape(latency_s)) for c in D.GEMM_COLUMNS]
    return [{"kernel": kernel, "backend": backend, "dtype": shape.dtype,
             **{c: int(v[i]) for c, v in zip(D.GEMM_COLUMNS, cols, strict=True)},
             "latency_us_median": repr(float(t * 1e6)), "set": set, "group": "random", "pass": pass_,
             "launches_per_graph": lpg} for i, t in enumerate(latency_s)]


def random_gemm(rng, n, dtype, align=8):
    return wm.Gemm(m=rng.integers(1, 6000, n), n=rng.integers(1, 750, n) * align,
                   k=rng.integers(1, 750, n) * align, dtype=dtype)


def own_truth() -> Profile:
    return Profile(launch_overhead_s=1.2e-6, families={OWN[KERNEL].family: FAMILY_TRUTH}, calibrated=True)


def own_dataset(folder: Path, n=3000, noise=0.003, seed=1) -> dict:
    """Calibration rows of KERNEL made with own_truth() (plus ``noise``), evaluation rows, and rows the
    fit must not use: pass 2 and a short graph replay, both far off."""
    rng = np.random.default_rng(seed)
    dtype = OWN[KERNEL].dtypes[0]
    truth = own_truth()
    cal = random_gemm(rng, n, dtype)
    t = wm.predict_latency(cal, H100, KERNEL, profile=truth).latency_s * (1 + noise * rng.standard_normal(n))
    ev = random_gemm(rng, 60, dtype)
    t_ev = wm.predict_latency(ev, H100, KERNEL, profile=truth).latency_s
    bad = random_gemm(rng, 20, dtype)
    t_bad = wm.predict_latency(bad, H100, KERNEL, profile=truth).latency_s * 3
    rows = gemm_rows(cal, t, backend="own", kernel=KERNEL)
    rows += gemm_rows(ev, t_ev, backend="own", kernel=KERNEL, set="evaluation")
    rows += gemm_rows(bad, t_bad, backend="own", kernel=KERNEL, pass_=2)
    small = wm.Gemm(m=rng.integers(1, 256, 20), n=rng.integers(1, 32, 20) * 8, k=rng.integers(1, 32, 20) * 8,
                    dtype=dtype)
    t_small = wm.predict_latency(small, H100, KERNEL, profile=truth).latency_s * 3
    assert np.all(t_small < 500e-6)
    rows += gemm_rows(small, t_small, backend="own", kernel=KERNEL, lpg=1)    # one call a replay: < 0.5 ms
    write(folder / "gemm_own.csv", "gemm", rows)
    return {"calibration_rows": n, "truth": truth}


# --------------------------------------------------------------------------------------------- fits


@needs_own
def test_own_fit_recovers_the_parameters_that_made_the_data(tmp_path, capsys):
    data = own_dataset(tmp_path)
    out = tmp_path / "profile.json"
    code, stdout, err = run(["calibrate", "--data", str(tmp_path), "--backend", "own", "--out", str(out)],
                            capsys)
    assert code == 0, err
    doc = json.loads(out.read_text())
    fam = OWN[KERNEL].family
    fitted = calibration.profile_from_dict(doc["backends"]["own"])
    got = fitted.families[fam]
    assert got["efficiency"] == pytest.approx(FAMILY_TRUTH["efficiency"], rel=0.02)
    assert got["kernel_fixed_s"] == pytest.approx(FAMILY_TRUTH["kernel_fixed_s"], rel=0.05)
    assert got["tile_overhead_s"] == pytest.approx(FAMILY_TRUTH["tile_overhead_s"], rel=0.1)
    assert got["sm_bandwidth_bytes_per_s"] == pytest.approx(60e9, rel=0.05)    # each kernel its own
    rec = doc["fit"]["own"]
    assert rec["rows"] == data["calibration_rows"]            # no evaluation, pass-2 or short-replay row
    assert rec["excluded_short_replays"] == 20
    assert rec["families"] == [fam]
    # our kernels' DRAM efficiency was pulled toward the card's measured streaming read rate
    assert rec["priors"] == {"bandwidth_efficiency": {"value": H100.dram_read_fraction, "weight": 1.0}}
    assert rec["datasets"]["files"] == {"gemm_own.csv": data["calibration_rows"] + 100}
    cal_err = rec["calibration_error"][D.own_family(KERNEL)]
    assert cal_err["n"] == data["calibration_rows"] and cal_err["median_pct"] < 0.6      # the noise was 0.3 %
    # held out: fresh shapes predicted with the fitted and the true parameters agree
    g = random_gemm(np.random.default_rng(7), 200, OWN[KERNEL].dtypes[0])
    a = wm.predict_latency(g, H100, KERNEL, profile=fitted).latency_s
    b = wm.predict_latency(g, H100, KERNEL, profile=data["truth"]).latency_s
    assert np.median(np.abs(a / b - 1)) < 0.005
    assert "fit family" in stdout and KERNEL in stdout and f"wrote {out}" in stdout
    assert f"fitting own: {data['calibration_rows']} rows" in err


@needs_own
def test_profile_json_round_trips_and_validate_uses_it(tmp_path, capsys):
    own_dataset(tmp_path)
    out = tmp_path / "p.json"
    assert run(["calibrate", "--data", str(tmp_path), "--backend", "own", "--out", str(out)], capsys)[0] == 0
    doc = json.loads(out.read_text())
    assert doc["gpu"] == "h100-sxm" and {"created", "source", "backends", "fit"} <= set(doc)
    assert doc["source"].startswith("wavemodel")
    section = doc["backends"]["own"]
    assert set(section) == {"launch_overhead_s", "l2_bandwidth_bytes_per_s", "sm_bandwidth_bytes_per_s",
                            "families", "configs"}
    again = calibration.profile_to_dict(calibration.profile_from_dict(section))
    assert json.loads(json.dumps(again)) == section
    p = calibration.profile_from_dict(section)
    assert p.calibrated and set(p.families[OWN[KERNEL].family]) == set(FAMILY_TRUTH)
    # the evaluation rows came from the same true parameters: the fitted profile predicts them
    code, stdout, _ = run(["validate", str(tmp_path), "--profile", str(out), "--json"], capsys)
    rep = json.loads(stdout)
    (fam,) = rep["families"]
    assert rep["model"] == f"profile {out}" and fam["n"] == 60 and fam["median_pct"] < 1.0 and code == 0


def test_library_fit_on_synthetic_data(tmp_path, capsys):
    fams = sorted({c.family for c in library_configs("cublas", H100, "fp16") if c.family})
    truth = Profile(launch_overhead_s=1.2e-6, l2_bandwidth_bytes_per_s=8e12, sm_bandwidth_bytes_per_s=60e9,
                    families={f: dict(efficiency=0.6, tile_overhead_s=0.6e-6, kernel_fixed_s=2.4e-6,
                                      bandwidth_efficiency=0.8) for f in fams}, calibrated=True)
    rng = np.random.default_rng(3)
    g = random_gemm(rng, 160, "fp16")
    t = wm.predict_latency(g, H100, "cublas", profile=truth).latency_s
    write(tmp_path / "gemm_cublas.csv", "gemm", gemm_rows(g, t, backend="cublas", kernel="nvjet"))
    out = tmp_path / "lib.json"
    code, _, err = run(["calibrate", "--data", str(tmp_path), "--out", str(out), "--iterations", "15"],
                       capsys)
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert set(doc["backends"]) == {"cublas"}                 # only the groups the data has
    rec = doc["fit"]["cublas"]
    assert rec["families"] == fams and rec["rows"] == 160
    assert rec["priors"] == {"bandwidth_efficiency": {"value": H100.dram_read_fraction, "weight": 1.0}}
    assert set(doc["backends"]["cublas"]["families"]) == set(fams)
    start = fit_error(g, t, Profile(launch_overhead_s=1.5e-6, calibrated=True))
    cal = rec["calibration_error"]["cublas_aligned"]["median_pct"]
    assert cal < 1.0 and cal < 0.2 * start


def test_library_families_fit_the_off_sector_write_factor_only_where_c_is_stored_as_vectors():
    from wavemodel.commands.calibrate import LIBRARY_FREE, library_free
    fams = sorted({c.family for d in ("fp16", "fp32", "tf32") for c in library_configs("cublas", H100, d)})
    free = library_free("cublas", fams, H100)
    assert set(free) == set(fams)
    with_factor = {f for f, params in free.items() if "off_sector_write_factor" in params}
    # nvjet stores C as vectors; the fallbacks for rows off 16 bytes store element-wise, and split-K
    # kernels write fp32 partials
    assert "nvjet" in with_factor and "tf32_sm90" in with_factor
    assert not with_factor & {"cutlass_fallback", "simt_f32_any", "nvjet_splitk", "tf32_sm80_splitk"}
    assert all(params[:len(LIBRARY_FREE)] == LIBRARY_FREE for params in free.values())


def fit_error(g, t, profile) -> float:
    predicted = wm.predict_latency(g, H100, "cublas", profile=profile).latency_s
    return 100 * float(np.median(np.abs(predicted / t - 1)))


@needs_own
def test_refitting_one_backend_keeps_the_others(tmp_path, capsys):
    own_dataset(tmp_path)
    rng = np.random.default_rng(5)
    g = random_gemm(rng, 40, "fp16")
    t = wm.predict_latency(g, H100, "cublas").latency_s * 1.1
    write(tmp_path / "gemm_cublas.csv", "gemm", gemm_rows(g, t, backend="cublas"))
    out = tmp_path / "both.json"
    assert run(["calibrate", "--data", str(tmp_path), "--backend", "own", "--out", str(out)], capsys)[0] == 0
    own_section = json.loads(out.read_text())["backends"]["own"]
    code, _, err = run(["calibrate", "--data", str(tmp_path), "--backend", "cublas", "--out", str(out),
                        "--iterations", "3"], capsys)
    assert code == 0 and "kept own" in err
    doc = json.loads(out.read_text())
    assert set(doc["backends"]) == {"own", "cublas"} and doc["backends"]["own"] == own_section
    assert set(doc["fit"]) == {"own", "cublas"}


@pytest.mark.parametrize(("argv", "needle"), [
    (["calibrate", "--out", "p.json"], "one of the arguments --data --measure --sustained is required"),
    (["calibrate", "--data", "d", "--measure", "--out", "p.json"], "not allowed with"),
    (["calibrate", "--data", "nope", "--out", "p.json"], "not a directory"),
    (["calibrate", "--data", "{data}", "--out", "p.json", "--iterations", "0"], "--iterations"),
    (["calibrate", "--measure", "--out", "p.json", "--budget-s", "0"], "--budget-s"),
    (["calibrate", "--data", "{data}", "--backend", "rocblas", "--out", "p.json"], "invalid choice"),
])
def test_bad_input_is_one_line_and_exit_2(argv, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [a.format(data=ROOT / "validation" / "data" / "h100-sxm") for a in argv]
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("wavemodel: error: ") and needle in err


# ------------------------------------------------------------------------------------ sweep (CPU)


def test_headers_match_the_validation_sweeps():
    sys.path.insert(0, str(ROOT))
    from validation import sweep

    assert {k: tuple(v) for k, v in sweep.HEADERS.items()} == S.HEADERS


def test_cublas_shapes_cover_the_regimes_and_dtypes():
    jobs = S.cublas_jobs(H100)
    assert jobs == S.cublas_jobs(H100)                                        # deterministic
    assert {j.dtype for j in jobs} == {"fp16", "bf16", "fp32", "tf32", "fp8"}
    assert "fp8" not in {j.dtype for j in S.cublas_jobs(wm.gpu("a100-80gb"))}
    groups = {j.group for j in jobs}
    assert {"square", "stair_n", "stair_k_small", "decode", "llm_prefill", "attention_qk", "random_aligned",
            "random_misaligned", "random_batched"} <= groups
    assert any(j.shape_dict["batch"] > 1 for j in jobs)
    for j in jobs:
        d = j.shape_dict
        dims = (d["m"], d["n"], d["k"])
        if j.group == "random_misaligned":
            assert any(x % 8 for x in dims)
        else:
            assert d["n"] % 8 == 0 and d["k"] % 8 == 0
        if j.dtype == "fp8":
            assert d["n"] % 16 == 0 and d["k"] % 16 == 0 and d["batch"] == 1
    by_dtype = {}
    for j in jobs:
        by_dtype.setdefault(j.dtype, []).append(j.shape)
    for dtype, shapes in by_dtype.items():                                    # every shape is a model input
        cols = np.array(shapes).T
        p = wm.predict_latency(wm.Gemm(batch=cols[0], m=cols[1], n=cols[2], k=cols[3], dtype=dtype), H100)
        assert np.all(np.asarray(p.latency_s) > 0)


def test_cudnn_shapes_are_valid_convs():
    jobs = S.cudnn_jobs()
    assert {j.group for j in jobs} == {"resnet50", "vgg16", "stair_k", "random"}
    cols = np.array([j.shape for j in jobs]).T
    conv = wm.Conv2d(**dict(zip(D.CONV_COLUMNS, cols, strict=True)), dtype="fp16")
    assert np.all(np.asarray(conv.p) >= 1)
    assert np.all(np.asarray(wm.predict_latency(conv, H100).latency_s) > 0)


@needs_own
def test_own_staircases_cross_wave_boundaries():
    jobs = S.own_jobs(OWN, H100)
    assert {j.kernel for j in jobs} == set(OWN)
    for name in OWN_GEMM:
        cfg = OWN[name]
        for group in ("stair_n", "stair_m"):
            stair = [j.shape for j in jobs if j.kernel == name and j.group == group]
            cols = np.array(stair).T
            p = wm.predict_latency(wm.Gemm(batch=cols[0], m=cols[1], n=cols[2], k=cols[3],
                                           dtype=cfg.dtypes[0]), H100, name)
            assert len(np.unique(p.waves)) >= 3, (name, group)
        for j in jobs:
            if j.kernel == name:
                assert j.shape_dict["n"] % cfg.alignment_elements == 0
                assert j.shape_dict["k"] % cfg.alignment_elements == 0


def fake_categories():
    a = [S.gemm("random_aligned", "fp16", 64, 64, 8 * i) for i in range(1, 101)]
    b = [S.conv("random", 8, 64, 14, 8 * i, 3, 1, 1) for i in range(1, 41)]
    c = [S.gemm("stair_n", "fp32", 256, 8 * i, 256, backend="own", kernel="k1") for i in range(1, 61)]
    return [a, b, c]


def test_plan_fits_the_budget_and_interleaves():
    cats = fake_categories()
    everything = S.plan(cats, 10_000)
    assert sorted(everything, key=str) == sorted([j for c in cats for j in c], key=str)
    small = S.plan(cats, 6.0)
    assert S.estimate_s(small) <= 0.9 * 6.0 + 0.5 and len(small) < len(everything)
    assert {j.backend for j in small} == {"cublas", "cudnn", "own"}          # every category survives
    first = small[:3 * S.CHUNK]
    assert {j.backend for j in first} == {"cublas", "cudnn", "own"}          # and comes early
    tiny = S.plan(cats, 0.1)
    assert len(tiny) == 3                                                    # at least one row each


class FakeRunner:
    """Yields a result per job and advances the fake clock by ``row_s`` per row."""

    def __init__(self, clock, row_s=1.0, fail_every=0):
        self.clock, self.row_s, self.fail_every, self.calls = clock, row_s, fail_every, 0

    def measure(self, jobs):
        for j in jobs:
            self.calls += 1
            self.clock.t += self.row_s
            if self.fail_every and self.calls % self.fail_every == 0:
                yield j, RuntimeError("boom")
                continue
            yield j, {"latency_us_median": 10.0 + self.calls, "latency_us_p10": 9.0, "latency_us_p90": 12.0,
                      "reps": 20, "host_overhead_us": 20.0, "launches_per_graph": 200, "rotation_sets": 4,
                      "kernel": "nvjet_fake", "kernel_us_cupti": 9.5,
                      "kernel_launch": "1x1x1/384x1x1/r168/s0"}

    def environment(self, command):
        return {"command": command, "gpu": {"name": "fake"}}


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_measure_writes_dataset_csvs_and_stops_at_the_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "cublas_jobs", lambda gpu: fake_categories()[0])
    monkeypatch.setattr(S, "cudnn_jobs", lambda: fake_categories()[1])
    clock = Clock()
    runner = FakeRunner(clock, row_s=1.0, fail_every=7)
    folder = tmp_path / "p_data"
    summary = S.measure(folder, H100, budget_s=30, backends=("cublas", "cudnn"), runner=runner, clock=clock,
                        torch_ok=True, cupy_ok=False, log=lambda s: None)
    assert summary["stopped_by_budget"] and runner.calls == 30
    assert summary["measured"] + summary["failed"] == 30 and summary["failed"] == 4
    loaded = D.load_dir(folder)
    assert set(loaded.files) == {"gemm_cublas.csv", "conv_cudnn.csv"}
    assert len(loaded.rows) == summary["measured"] == sum(summary["files"].values())
    assert all(r.set == "calibration" and r.pass_ == "1" and r.kernel == "nvjet_fake" for r in loaded.rows)
    with open(folder / "gemm_cublas.csv", newline="") as f:
        assert tuple(next(csv.reader(f))) == S.HEADERS["gemm"]
    env = json.loads((folder / "gemm_cublas_env.json").read_text())
    assert env["gpu"] == {"name": "fake"} and env["calibration_sweep"]["failed"] == 4
    with pytest.raises(ValueError, match="already holds"):
        S.measure(folder, H100, budget_s=5, backends=("cublas",), runner=runner, clock=clock, torch_ok=True,
                  cupy_ok=False, log=lambda s: None)
    with pytest.raises(S.NoDevice):
        S.measure(tmp_path / "x", H100, budget_s=5, torch_ok=False, cupy_ok=False, log=lambda s: None)


def test_data_dir_is_beside_the_profile(tmp_path):
    assert S.data_dir_for(tmp_path / "h100.json") == tmp_path / "h100_data"


def test_measure_without_a_gpu_is_one_line_exit_1(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(S, "available", lambda: (False, False))
    code, out, err = run(["calibrate", "--measure", "--out", str(tmp_path / "p.json")], capsys)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "needs an NVIDIA GPU" in err
    assert not (tmp_path / "p.json").exists()


@needs_own
def test_measure_then_fit(tmp_path, capsys, monkeypatch):
    """The --measure path on the CPU: the sweep is replaced by synthetic calibration rows."""
    monkeypatch.setattr(S, "available", lambda: (False, True))
    monkeypatch.setattr(S, "local_gpu", lambda: H100)

    def fake_measure(folder, gpu, **kw):
        assert kw["budget_s"] == 42 and kw["backends"] == ("own",)
        Path(folder).mkdir(parents=True)
        own_dataset(Path(folder), n=120)
        return {"measured": 200}

    monkeypatch.setattr(S, "measure", fake_measure)
    out = tmp_path / "m.json"
    code, stdout, err = run(["calibrate", "--measure", "--budget-s", "42", "--backend", "own", "--out",
                             str(out)], capsys)
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["fit"]["own"]["rows"] == 120
    assert doc["fit"]["own"]["datasets"]["dir"] == str(tmp_path / "m_data")
    assert doc["source"] == (f"wavemodel calibrate --measure --budget-s 42 --backend own --out {out} "
                             "--iterations 40")


# -------------------------------------------------------------------------------------------- GPU


@pytest.mark.gpu
def test_measure_on_the_gpu_with_a_tiny_budget(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    code, stdout, err = run(["calibrate", "--measure", "--budget-s", "20", "--iterations", "5", "--out",
                             str(out)], capsys)
    assert code == 0, err
    folder = S.data_dir_for(out)
    loaded = D.load_dir(folder)
    assert loaded.rows and all(r.set == "calibration" for r in loaded.rows)
    doc = json.loads(out.read_text())
    assert doc["backends"]
    for section in doc["backends"].values():
        assert calibration.profile_from_dict(section).calibrated
