"""Reading, selecting and grouping measured datasets (wavemodel.datasets), on synthetic CSVs and the
committed H100 data."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import wavemodel as wm
from wavemodel import datasets as D
from wavemodel.configs import own_kernels
from wavemodel.fit import Group
from wavemodel.hardware.calibration_sweep import HEADERS

ROOT = Path(__file__).resolve().parents[1]
H100_DATA = ROOT / "validation" / "data" / "h100-sxm"
OWN = own_kernels()
OWN_GEMM = sorted(n for n, c in OWN.items() if c.kind == "gemm")
OWN_CONV = sorted(n for n, c in OWN.items() if c.kind == "conv")


def write(path: Path, kind: str, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HEADERS[kind], lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in HEADERS[kind]})
    return path


def g(kernel, backend, dtype, m, n, k, us, *, batch=1, set="evaluation", group="random", pass_=1, lpg=1000):
    return dict(kernel=kernel, backend=backend, dtype=dtype, batch=batch, m=m, n=n, k=k, latency_us_median=us,
                set=set, group=group, launches_per_graph=lpg, **{"pass": pass_})


def c(kernel, backend, n, ch, h, k, r, us, *, set="evaluation", group="random", pass_=1, lpg=1000):
    return dict(kernel=kernel, backend=backend, dtype="fp16", n=n, c=ch, h=h, w=h, k=k, r=r, s=r, stride=1,
                padding=r // 2, latency_us_median=us, set=set, group=group, launches_per_graph=lpg,
                **{"pass": pass_})


def test_load_dir_reads_gemm_and_conv_datasets_and_skips_other_csvs(tmp_path):
    write(tmp_path / "gemm_x.csv", "gemm", [g("nvjet_a", "cublas", "fp16", 64, 64, 64, 3.0),
                                            g("", "cublas", "bf16", 128, 64, 64, 4.0)])
    write(tmp_path / "conv_x.csv", "conv", [c("", "cudnn", 8, 64, 14, 64, 3, 12.5)])
    (tmp_path / "discovery.csv").write_text("group,op,dtype,m,n,k,kernels\nx,mm,fp16,1,2,3,nvjet\n")
    (tmp_path / "notes.txt").write_text("not a csv")
    loaded = D.load_dir(tmp_path)
    assert loaded.files == ("conv_x.csv", "gemm_x.csv")
    assert loaded.skipped == ("discovery.csv",)
    assert loaded.counts == {"conv_x.csv": 1, "gemm_x.csv": 2}
    conv = [r for r in loaded.rows if r.kind == "conv"]
    assert len(conv) == 1 and conv[0].dims == dict(n=8, c=64, h=14, w=14, k=64, r=3, s=3, stride=1, padding=1)
    assert conv[0].latency_us == 12.5 and conv[0].source == "conv_x.csv"
    gemm = sorted((r for r in loaded.rows if r.kind == "gemm"), key=lambda r: r.dtype)
    assert [r.dtype for r in gemm] == ["bf16", "fp16"] and gemm[1].kernel == "nvjet_a"


def test_empty_or_missing_folder_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        D.load_dir(tmp_path / "nope")
    (tmp_path / "occupancy.csv").write_text("threads,regs\n32,24\n")
    with pytest.raises(ValueError, match="no dataset CSV"):
        D.load_dir(tmp_path)


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("m", "12.5", "column 'm'"), ("latency_us_median", "abc", "latency_us_median"),
    ("latency_us_median", "-3", "positive"), ("backend", "rocblas", "backend 'rocblas'"),
])
def test_bad_values_name_the_file_line_and_column(tmp_path, field, value, needle):
    row = g("", "cublas", "fp16", 64, 64, 64, 3.0)
    row[field] = value
    path = write(tmp_path / "gemm_bad.csv", "gemm", [g("", "cublas", "fp16", 8, 8, 8, 2.0), row])
    with pytest.raises(ValueError, match=needle) as e:
        D.read_csv(path)
    assert "gemm_bad.csv:3" in str(e.value)


def test_select_by_set_pass_and_backend(tmp_path):
    rows = [g("", "cublas", "fp16", 64, 64, 64, 3.0, set="calibration"),
            g("", "cublas", "fp16", 64, 64, 72, 3.0, set="evaluation"),
            g("", "cublas", "fp16", 64, 64, 72, 3.1, set="evaluation", pass_=2),
            g(OWN_GEMM[0], "own", OWN[OWN_GEMM[0]].dtypes[0], 64, 64, 80, 5.0, set="evaluation")]
    loaded = D.load_dir(write(tmp_path / "gemm_a.csv", "gemm", rows).parent)
    ev = D.select(loaded.rows, set="evaluation")
    assert sorted(r.shape[-1] for r in ev) == [72, 80]                     # pass 1 only by default
    assert len(D.select(loaded.rows, set="evaluation", pass_=None)) == 3
    assert len(D.select(loaded.rows, set=None)) == 3
    assert [r.backend for r in D.select(loaded.rows, set=None, backends=["own"])] == ["own"]
    with pytest.raises(ValueError, match="set"):
        D.select(loaded.rows, set="training")
    with pytest.raises(ValueError, match="backend"):
        D.select(loaded.rows, backends=["rocblas"])


def test_short_graph_replays_are_dropped_and_returned(tmp_path):
    # replays of 495, 500, 505, 100 and 5000 us, and one whose launch count was not recorded
    rows = [g("", "cublas", "fp16", 64, 64, 8 * i, 5.0, lpg=lpg) for i, lpg in
            enumerate([99, 100, 101, 20, 1000, ""], start=1)]
    loaded = D.load_dir(write(tmp_path / "gemm_s.csv", "gemm", rows).parent)
    kept, dropped = D.drop_short_replays(loaded.rows)
    assert sorted(r.launches_per_graph for r in dropped) == [20, 99]
    assert sorted(r.launches_per_graph for r in kept) == [0, 100, 101, 1000]
    assert all(D.is_short_replay(r) for r in dropped) and not any(D.is_short_replay(r) for r in kept)
    kept, dropped = D.drop_short_replays(loaded.rows, min_replay_us=2000)
    assert len(dropped) == 4


def test_committed_h100_data_has_twenty_short_replays_in_gemm_cublas():
    loaded = D.load_dir(H100_DATA)
    _, dropped = D.drop_short_replays(loaded.rows)
    with open(H100_DATA / "gemm_cublas.csv", newline="") as f:
        raw = [r for r in csv.DictReader(f)
               if float(r["launches_per_graph"]) * float(r["latency_us_median"]) < 500]
    assert len(raw) == 20
    assert sum(r.source == "gemm_cublas.csv" for r in dropped) == 20
    assert all(r.replay_us < 500 for r in dropped)
    assert {"gemm_cublas.csv", "gemm_own.csv", "conv_own.csv", "conv_cudnn.csv"} <= set(loaded.files)


def test_family_of():
    assert D.own_family("simt_f32_128x64") == "own_simt_f32"
    assert D.own_family("tc_f16_256x128") == "own_tc_f16"
    assert D.own_family("conv_f16_128x128") == "own_conv_f16"
    row = lambda **kw: D.Row(**{"kind": "gemm", "kernel": "", "backend": "cublas", "dtype": "fp16",  # noqa: E731
                                "shape": (1, 64, 64, 64), "latency_us": 1.0, **kw})
    assert D.family_of(row()) == "cublas_aligned"
    assert D.family_of(row(shape=(3, 64, 64, 64))) == "cublas_aligned"          # batch does not count
    for shape in [(1, 65, 64, 64), (1, 64, 60, 64), (1, 64, 64, 4100)]:
        assert D.family_of(row(shape=shape)) == "cublas_misaligned"
    assert D.family_of(row(backend="own", kernel="simt_f32_64x64", dtype="fp32")) == "own_simt_f32"
    conv = D.Row("conv", "xmma", "cudnn", "fp16", (1, 8, 8, 8, 8, 3, 3, 1, 1), 2.0)
    assert D.family_of(conv) == "cudnn"


@pytest.mark.skipif(not OWN_GEMM or not OWN_CONV, reason="needs own GEMM and conv kernels in the catalogue")
def test_groups_one_per_model_backend_dtype_and_kind(tmp_path):
    a, b = OWN_GEMM[0], OWN_GEMM[-1]
    da, db = OWN[a].dtypes[0], OWN[b].dtypes[0]
    write(tmp_path / "gemm_own.csv", "gemm", [
        g(a, "own", da, 128, 256, 64, 10.0), g(a, "own", da, 256, 256, 64, 20.0),
        g(b, "own", db, 512, 256, 64, 30.0), g("nvjet_x", "cublas", "fp16", 64, 128, 192, 4.0, batch=2),
        g("nvjet_y", "cublas", "bf16", 64, 128, 192, 5.0), g("nvjet_z", "cublas", "fp16", 96, 128, 64, 6.0)])
    write(tmp_path / "conv_own.csv", "conv", [c(OWN_CONV[0], "own", 8, 64, 14, 64, 3, 40.0),
                                              c("xmma", "cudnn", 8, 64, 14, 128, 1, 50.0)])
    rows = D.load_dir(tmp_path).rows
    groups = D.group_rows(rows)
    keys = sorted((m[0].model_backend, m[0].dtype, m[0].kind) for m, _ in groups)
    expected = {(a, da, "gemm"), (b, db, "gemm"), ("cublas", "fp16", "gemm"), ("cublas", "bf16", "gemm"),
                (OWN_CONV[0], "fp16", "conv"), ("cudnn", "fp16", "conv")}
    assert set(keys) == expected and len(keys) == len(expected)
    assert sum(len(m) for m, _ in groups) == len(rows)
    for members, grp in groups:
        assert isinstance(grp, Group) and grp.backend == members[0].model_backend
        np.testing.assert_allclose(grp.measured_s, [r.latency_us * 1e-6 for r in members])
        for col in D.SHAPE_COLUMNS[members[0].kind]:
            np.testing.assert_array_equal(getattr(grp.shape, col), [r.dims[col] for r in members])
        assert grp.shape.dtype == members[0].dtype
        p = wm.predict_latency(grp.shape, "h100-sxm", grp.backend)       # the group is a valid model input
        assert np.shape(p.latency_s) == (len(members),)
    cublas16 = next(grp for m, grp in groups if m[0].backend == "cublas" and m[0].dtype == "fp16")
    np.testing.assert_array_equal(cublas16.shape.batch, [2, 1])
    np.testing.assert_array_equal(cublas16.shape.m, [64, 96])
