"""A conv kernel's 1x1 filters take their own calibration family (KernelConfig.pointwise_family)."""

from dataclasses import replace

import numpy as np
import pytest

import wavemodel as wm
from wavemodel import calibration, symbolic
from wavemodel.commands import calibrate as C
from wavemodel.configs import for_filter, own_kernels
from wavemodel.datasets import Row
from wavemodel.fit import Group

H100 = wm.gpu("h100-sxm")
CONV = wm.KernelConfig(name="t_conv", tile_m=128, tile_n=64, tile_k=32, threads=128, regs_per_thread=168,
                       smem_per_block_bytes=49152, stages=4, kind="conv", family="t_conv",
                       pointwise_family="t_conv_1x1", alignment_elements=8, dtypes=("fp16",))
# the two families differ in every rate the model uses, so a call taking the wrong one shows
PROFILE = calibration.Profile(families={
    "t_conv": {"efficiency": 0.6, "tile_overhead_s": 0.3e-6, "kernel_fixed_s": 1.0e-6},
    "t_conv_1x1": {"efficiency": 0.3, "tile_overhead_s": 0.9e-6, "kernel_fixed_s": 2.0e-6},
}, calibrated=True)


def conv(r, **kw):
    return wm.Conv2d(**{"n": 8, "c": 256, "h": 28, "w": 28, "k": 512, "r": r, "s": r, "stride": 1,
                        "padding": r // 2} | kw)


def latency(shape, cfg):
    return wm.predict_latency(shape, H100, cfg, profile=PROFILE).latency_s


def test_a_1x1_filter_takes_the_pointwise_family_and_a_3x3_the_kernels_own():
    as_1x1 = replace(CONV, family="t_conv_1x1", pointwise_family="")
    as_rxs = replace(CONV, pointwise_family="")
    for stride in (1, 2):
        assert latency(conv(1, stride=stride), CONV) == latency(conv(1, stride=stride), as_1x1)
        assert latency(conv(1, stride=stride), CONV) != latency(conv(1, stride=stride), as_rxs)
        assert latency(conv(3, stride=stride), CONV) == latency(conv(3, stride=stride), as_rxs)
        assert latency(conv(3, stride=stride), CONV) != latency(conv(3, stride=stride), as_1x1)


def test_a_gemm_and_a_kernel_without_one_are_unchanged():
    plain = replace(CONV, pointwise_family="")
    assert for_filter(plain, True) is plain and for_filter(CONV, False) is CONV
    assert for_filter(CONV, True).family == "t_conv_1x1"
    g = wm.Gemm(m=4096, n=4096, k=1024)
    assert wm.predict_latency(g, H100, "tc_f16_128x128").latency_s > 0


def test_shapes_of_both_kinds_in_one_call_match_their_calls_one_by_one():
    r = np.array([1, 3, 1, 3, 3, 1])
    k = np.array([64, 64, 520, 520, 1000, 1000])
    mixed = wm.predict_latency(conv(r, k=k, padding=r // 2), H100, CONV, profile=PROFILE)
    for i in range(len(r)):
        one = wm.predict_latency(conv(int(r[i]), k=int(k[i])), H100, CONV, profile=PROFILE)
        assert mixed.latency_s[i] == pytest.approx(one.latency_s, rel=1e-12)
        assert mixed.waves[i] == one.waves and mixed.compute_s[i] == pytest.approx(one.compute_s, rel=1e-12)
    assert mixed.latency_s.shape == r.shape
    grid = wm.predict_latency(conv(np.array([[1], [3]]), k=np.array([64, 128, 192]),
                                   padding=np.array([[0], [1]])), H100, CONV, profile=PROFILE)
    assert grid.latency_s.shape == (2, 3)
    assert grid.latency_s[0, 2] == pytest.approx(latency(conv(1, k=192), CONV), rel=1e-12)
    assert grid.latency_s[1, 0] == pytest.approx(latency(conv(3, k=64), CONV), rel=1e-12)


def test_the_closed_form_of_a_1x1_conv_takes_the_pointwise_family():
    x = np.arange(1, 1200)
    for r in (1, 3):
        fn = symbolic.latency_function(conv(r), CONV, H100, "n", profile=PROFILE)
        shapes = conv(r, k=x)
        np.testing.assert_allclose(fn(x), latency(shapes, CONV), rtol=1e-12)


def test_only_a_conv_kernel_has_a_pointwise_family():
    with pytest.raises(ValueError, match="pointwise_family"):
        replace(CONV, kind="gemm")


def test_our_conv_kernels_ship_both_families():
    shipped = calibration.profile_for(H100, "conv_f16_128x64")
    for name, cfg in own_kernels().items():
        if cfg.kind != "conv":
            assert cfg.pointwise_family == ""
            continue
        assert cfg.pointwise_family == f"{name}_1x1"
        assert {cfg.family, cfg.pointwise_family} <= set(shipped.families)
        assert shipped.families[cfg.family] != shipped.families[cfg.pointwise_family]


def row(kernel, r):
    return Row(kind="conv", kernel=kernel, backend="own", dtype="fp16",
               shape=(8, 64, 28, 28, 128, r, r, 1, r // 2), latency_us=50.0, set="calibration")


def test_calibration_fits_a_conv_kernels_1x1_rows_as_their_own_family():
    rows = [row("conv_f16_128x64", 1), row("conv_f16_128x64", 3), row("conv_f16_128x64", 1)]
    families, _ = C.catalogue_families("own", rows, H100)
    assert families == ["conv_f16_128x64", "conv_f16_128x64_1x1"]
    assert set(C.own_free(families)) == set(families)
    members = tuple(rows)
    shape = wm.Conv2d(**{c: np.array([r.dims[c] for r in rows]) for c in rows[0].dims})
    parts = C._split_by_filter(members, Group(shape, np.full(3, 50e-6), "conv_f16_128x64"))
    assert [len(m) for m, _ in parts] == [2, 1]
    assert all(np.all(g.shape.r == m[0].dims["r"]) for m, g in parts)
    gemm_rows = (Row(kind="gemm", kernel="tc_f16_128x128", backend="own", dtype="fp16",
                     shape=(1, 512, 512, 512), latency_us=20.0, set="calibration"),)
    g = Group(wm.Gemm(m=np.array([512]), n=np.array([512]), k=np.array([512])), np.array([20e-6]),
                     "tc_f16_128x128")
    assert C._split_by_filter(gemm_rows, g) == [(gemm_rows, g)]


def test_a_profile_fitted_before_the_split_keeps_the_kernels_family_for_every_filter():
    before = calibration.Profile(families={"t_conv": PROFILE.families["t_conv"]}, calibrated=True)
    as_rxs = replace(CONV, pointwise_family="")
    for r in (1, 3):
        assert (wm.predict_latency(conv(r), H100, CONV, profile=before).latency_s
                == wm.predict_latency(conv(r), H100, as_rxs, profile=before).latency_s)
    fn = symbolic.latency_function(conv(1), CONV, H100, "n", profile=before)
    np.testing.assert_allclose(fn(np.array([512])), wm.predict_latency(conv(1), H100, as_rxs, profile=before)
                               .latency_s, rtol=1e-12)
