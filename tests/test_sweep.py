"""The sweep's dataset logic on the CPU: resume, no duplicates, header check, env.json, shape sets."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation import shapesets as S  # noqa: E402
from validation import sweep as W  # noqa: E402


def fake_env(command="test"):
    return lambda: {"date_utc": "2026-11-25T00:00:00+00:00", "command": command, "gpu": {"name": "fake"}}


def result_for(job, i=0):
    return {"latency_us_median": 10.0 + i, "latency_us_p10": 9.5 + i, "latency_us_p90": 11.0 + i, "reps": 20,
            "host_overhead_us": 19.0, "launches_per_graph": 150, "rotation_sets": 4,
            "kernel": "memset;nvjet_sm90_hsh_256x128_64x4_1x2_h_bz_coopA_NNT" if job.backend != "own"
            else "x",
            "kernel_us_cupti": 9.0}


class Boom(RuntimeError):
    pass


def make_measure(fail_after=None, calls=None):
    state = {"n": 0}

    def measure(chunk):
        for job in chunk:
            if fail_after is not None and state["n"] >= fail_after:
                raise Boom("killed")
            state["n"] += 1
            if calls is not None:
                calls.append(job.key)
            yield job, result_for(job, state["n"])
    return measure


def gemm_jobs(n=10):
    return [W.job_from_shape("gemm", "cublas", "", S.gemm("stair_n", "fp16", 256, 64 * (i + 1), 512))
            for i in range(n)]


def run(path, jobs, measure, **kw):
    kw.setdefault("base_env", fake_env())
    kw.setdefault("params", {"budget_s": 0.02})
    kw.setdefault("log", lambda s: None)
    kw.setdefault("fsync", False)
    kw.setdefault("chunk", 3)
    return W.run_file(path, "gemm", jobs, measure, **kw)


def rows_of(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_resume_after_a_kill_loses_nothing_and_duplicates_nothing(tmp_path):
    path = tmp_path / "gemm_cublas.csv"
    jobs = gemm_jobs(10)
    with pytest.raises(Boom):
        run(path, jobs, make_measure(fail_after=4))
    assert len(rows_of(path)) == 4                                # every finished row is on disk
    calls = []
    s = run(path, jobs, make_measure(calls=calls))
    assert s["before"] == 4 and s["written"] == 6
    assert len(calls) == 6 and not set(calls) & {j.key for j in jobs[:4]}
    rows = rows_of(path)
    assert len(rows) == 10
    assert len({W.row_key(r, "gemm") for r in rows}) == 10
    assert [int(r["n"]) for r in rows] == [64 * (i + 1) for i in range(10)]
    before = path.read_bytes()
    calls.clear()
    s = run(path, jobs, make_measure(calls=calls))               # a finished file: nothing to do
    assert s["written"] == 0 and not calls and path.read_bytes() == before


def test_a_partial_last_row_is_cut_and_remeasured(tmp_path):
    path = tmp_path / "d.csv"
    jobs = gemm_jobs(3)
    run(path, jobs[:2], make_measure())
    text = path.read_text()
    path.write_text(text[:-25])                                  # a hard kill in the middle of row 2
    s = run(path, jobs, make_measure())
    assert s["before"] == 1 and s["written"] == 2
    rows = rows_of(path)
    assert [int(r["n"]) for r in rows] == [64, 128, 192] and all(r["reps"] == "20" for r in rows)
    assert path.read_text().count("\n") == 4 and "\r" not in path.read_text()


def test_rows_follow_the_schema(tmp_path):
    path = tmp_path / "d.csv"
    run(path, gemm_jobs(2), make_measure())
    with open(path) as f:
        header = f.readline().strip().split(",")
    assert header[:11] == ["kernel", "backend", "dtype", "batch", "m", "n", "k", "latency_us_median",
                           "latency_us_p10", "latency_us_p90", "reps"]
    assert tuple(header) == W.HEADERS["gemm"]
    r = rows_of(path)[0]
    assert r["kernel"].startswith("memset;nvjet_sm90") and r["backend"] == "cublas"
    assert r["set"] in ("calibration", "evaluation") and r["pass"] == "1" and r["group"] == "stair_n"
    assert float(r["latency_us_p10"]) <= float(r["latency_us_median"]) <= float(r["latency_us_p90"])
    assert W.HEADERS["conv"][:16] == ("kernel", "backend", "dtype", "n", "c", "h", "w", "k", "r", "s",
                                      "stride", "padding", "latency_us_median", "latency_us_p10",
                                      "latency_us_p90", "reps")


def test_duplicate_jobs_are_measured_once(tmp_path):
    path = tmp_path / "d.csv"
    jobs = gemm_jobs(3)
    s = run(path, jobs + jobs[:2], make_measure())
    assert s["total"] == 3 and len(rows_of(path)) == 3


def test_header_mismatch_is_refused(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("kernel,backend,dtype,m,n,k,latency_us\nx,own,fp16,1,2,3,4.0\n")
    before = path.read_bytes()
    with pytest.raises(ValueError, match="header differs"):
        run(path, gemm_jobs(2), make_measure())
    assert path.read_bytes() == before
    assert not W.env_path(path).exists()


def test_env_json_written_then_resumed(tmp_path):
    path = tmp_path / "gemm_cublas.csv"
    jobs = gemm_jobs(6)
    with pytest.raises(Boom):
        run(path, jobs, make_measure(fail_after=2), base_env=fake_env("first"),
            params={"budget_s": 0.02, "rotation_factor": 2.0})
    env = json.loads(W.env_path(path).read_text())
    assert env["command"] == "first" and env["sweep"]["rotation_factor"] == 2.0 and "resumed" not in env
    run(path, jobs, make_measure(), base_env=fake_env("second"), params={"budget_s": 0.05})
    env = json.loads(W.env_path(path).read_text())
    assert env["command"] == "first" and env["sweep"]["budget_s"] == 0.02      # kept
    assert [r["command"] for r in env["resumed"]] == ["second"]
    assert env["resumed"][0]["rows_before"] == 2 and env["resumed"][0]["sweep"]["budget_s"] == 0.05
    run(path, jobs, make_measure(), base_env=fake_env("third"))                 # nothing to do
    assert len(json.loads(W.env_path(path).read_text())["resumed"]) == 1


def test_failed_rows_are_logged_and_not_retried(tmp_path):
    path = tmp_path / "d.csv"
    jobs = gemm_jobs(4)

    def measure(chunk):
        for j in chunk:
            if j is jobs[1] or j.key == jobs[1].key:
                yield j, RuntimeError("CUBLAS_STATUS_NOT_SUPPORTED")
            elif j.key == jobs[2].key:
                yield j, W.SkipRow("kernel failed its check")
            else:
                yield j, result_for(j)
    s = run(path, jobs, measure)
    assert (s["written"], s["failed"], s["skipped"]) == (2, 1, 1)
    failed = [json.loads(x) for x in W.failed_path(path).read_text().splitlines()]
    assert [tuple(f["key"]) for f in failed] == [jobs[1].key] and "NOT_SUPPORTED" in failed[0]["error"]
    calls = []
    s = run(path, jobs, make_measure(calls=calls))
    assert calls == [jobs[2].key]                               # skipped rows are retried, failed not
    assert len(rows_of(path)) == 3


def test_own_and_library_keys():
    a = W.make_key("own", "tc_f16_128x128", "fp16", (1, 2, 3, 4), 1)
    b = W.make_key("own", "tc_f16_128x256", "fp16", (1, 2, 3, 4), 1)
    lib = W.make_key("cublas", "nvjet_x", "fp16", (1, 2, 3, 4), 1)
    assert a != b and lib == W.make_key("cublas", "", "fp16", (1, 2, 3, 4), 1)   # names unknown before
    assert W.make_key("own", "tc_f16_128x128", "fp16", (1, 2, 3, 4), 2) != a           # pass is in the key


def test_split_is_stable_and_disjoint():
    shapes = S.cublas_shapes()
    tags = {}
    for s in shapes:
        job = W.job_from_shape("gemm", "cublas", "", s)
        tag = W.split_of("gemm", job.dtype, job.shape)
        assert tags.setdefault((job.dtype, job.shape), tag) == tag
        assert W.split_of("gemm", job.dtype, job.shape) == tag
    frac = sum(t == "calibration" for t in tags.values()) / len(tags)
    assert 0.33 < frac < 0.47
    own = W.job_from_shape("gemm", "own", "tc_f16_128x128", shapes[0])
    ref = W.job_from_shape("gemm", "cublas", "", shapes[0])
    assert W.split_of("gemm", own.dtype, own.shape) == W.split_of("gemm", ref.dtype, ref.shape)


def test_second_pass_and_noise_floor(tmp_path):
    jobs = gemm_jobs(200)
    p2 = W.second_pass(jobs, 0.1)
    assert 10 <= len(p2) <= 30 and all(j.pass_ == 2 for j in p2)
    assert W.second_pass(jobs, 0.1) == p2
    path = tmp_path / "d.csv"
    jobs = gemm_jobs(5)
    p2 = [W.Job(j.kind, j.backend, j.kernel, j.dtype, j.shape, j.group, 2) for j in jobs[:4]]
    lat = {**{j.key: 100.0 for j in jobs}, **{j.key: v for j, v in zip(p2, (101, 99, 110, 100), strict=True)}}

    def measure(chunk):
        for j in chunk:
            r = result_for(j)
            r["latency_us_median"] = lat[j.key]
            yield j, r
    s = run(path, jobs + p2, measure)
    assert s["noise_floor"]["pairs"] == 4
    assert s["noise_floor"]["median_rel_diff"] == pytest.approx(0.01)
    assert s["noise_floor"]["p90_rel_diff"] == pytest.approx(0.10)
    assert json.loads(W.env_path(path).read_text())["noise_floor"]["pairs"] == 4


def test_spread_limit_is_deterministic():
    items = list(range(100))
    assert W.spread(items, 5) == [0, 20, 40, 60, 80]
    assert W.spread(items, None) == items and W.spread(items, 500) == items and W.spread(items, 0) == []


def test_suites_cover_what_users_run():
    files = W.suite_files("all", own_configs=lambda: {})
    names = [f[0] for f in files]
    assert names == ["gemm_own.csv", "conv_own.csv", "gemm_cublas.csv", "conv_cudnn.csv"]
    cublas = dict((f[0], f[2]) for f in files)["gemm_cublas.csv"]
    groups = {j.group for j in cublas}
    for g in ("stair_n", "stair_m", "stair_k", "square", "decode", "attention_qk", "llm_llama70b",
              "llm_gpt2", "llm_bert_large", "random_aligned", "random_misaligned"):
        assert g in groups
    assert {j.dtype for j in cublas} == {"fp16", "bf16", "fp32", "tf32", "fp8"}
    assert all(all(v % 16 == 0 for v in j.shape[1:]) for j in cublas if j.dtype == "fp8")
    assert any(j.shape[0] > 1 for j in cublas)
    mis = [j for j in cublas if j.group == "random_misaligned"]
    assert mis and all(any(v % 8 for v in j.shape[1:]) for j in mis)
    conv = dict((f[0], f[2]) for f in files)["conv_cudnn.csv"]
    assert {"resnet50", "vgg16", "stair_k", "random"} <= {j.group for j in conv}


def test_own_jobs_staircases_cross_wave_boundaries():
    import wavemodel as wm

    gpu = wm.gpu("h100-sxm")
    cfg = wm.KernelConfig(name="tc_f16_128x128", tile_m=128, tile_n=128, tile_k=32, threads=256,
                          regs_per_thread=128, smem_per_block_bytes=65536, stages=4, math="tensor")
    simt = wm.KernelConfig(name="simt_f32_64x64", tile_m=64, tile_n=64, tile_k=16, threads=64,
                           regs_per_thread=128, smem_per_block_bytes=17408, math="simt")
    gemm, conv = W.own_kernel_jobs({"tc_f16_128x128": cfg, "simt_f32_64x64": simt}, gpu)
    assert not conv
    for c, dtype in ((cfg, "fp16"), (simt, "fp32")):
        own = [j for j in gemm if j.kernel == c.name]
        assert all(j.dtype == dtype and j.backend == "own" for j in own)
        assert sum(j.group == "random" for j in own) >= 200
        wave = gpu.sm_count * c.occupancy(gpu).blocks_per_sm
        for dim, idx in (("n", 2), ("m", 1)):
            st = [j.shape for j in own if j.group == f"stair_{dim}"]
            tiles = [-(-s[1] // c.tile_m) * -(-s[2] // c.tile_n) for s in st]
            waves = {-(-t // wave) for t in tiles}
            assert len(waves) >= 5, (c.name, dim, sorted(waves))
            steps = sorted({s[idx] for s in st})
            assert steps[1] - steps[0] <= (c.tile_n if dim == "n" else c.tile_m) // 2
        if dtype == "fp16":
            assert all(j.shape[2] % 8 == 0 and j.shape[3] % 8 == 0 for j in own)
    refs = [j for j in gemm if j.backend == "cublas"]
    assert refs and all(j.kernel == "" for j in refs)
    # each reference follows an own row of the same shape
    for i, j in enumerate(gemm):
        if j.backend == "cublas":
            assert any(g.backend == "own" and g.shape == j.shape for g in gemm[:i])


def test_estimate_is_positive_and_grows_with_size():
    small = W.job_from_shape("gemm", "cublas", "", S.gemm("x", "fp16", 64, 64, 64))
    big = W.job_from_shape("gemm", "cublas", "", S.gemm("x", "fp16", 8192, 8192, 8192))
    assert 0 < W.row_cost_s(small, 0.02) < W.row_cost_s(big, 0.02)


def test_dry_run_on_cpu(tmp_path, capsys):
    assert W.main(["--suite", "cublas", "--out", str(tmp_path), "--dry-run", "--limit", "50"]) == 0
    err = capsys.readouterr().err
    assert "gemm_cublas.csv: 50 rows" in err and "total estimate" in err
    assert not list(tmp_path.iterdir())


def test_session_noise_matches_rows_of_the_same_kernel_and_shape(tmp_path):
    from validation import session_noise
    from wavemodel import datasets as D

    def row(kernel, m, t, pass_="1"):
        return D.Row(kind="gemm", kernel=kernel, backend="own", dtype="fp32", shape=(1, m, 64, 64),
                     latency_us=t, set="evaluation", group="random", pass_=pass_)

    base = [row("a", 10, 100.0), row("a", 20, 50.0), row("a", 10, 110.0, pass_="2"), row("b", 10, 80.0)]
    rerun = [row("a", 10, 105.0), row("a", 30, 1.0), row("b", 10, 60.0)]
    diff = session_noise.differences(base, rerun)
    assert set(diff) == {"a", "b"}                                   # m=30 has no committed twin
    assert diff["a"].tolist() == pytest.approx([0.05]) and diff["b"].tolist() == pytest.approx([-0.25])
    assert session_noise.pass2_differences(base)["a"].tolist() == pytest.approx([0.10])
