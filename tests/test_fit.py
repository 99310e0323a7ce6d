import numpy as np
import pytest

import wavemodel as wm
from wavemodel import fit
from wavemodel.calibration import Profile

H100 = wm.gpu("h100-sxm")
CFG = wm.KernelConfig(name="fitme", family="fam", tile_m=128, tile_n=128, tile_k=32, threads=256,
                      regs_per_thread=128, smem_per_block_bytes=65536)
TRUE = Profile(launch_overhead_s=1.0e-6, l2_bandwidth_bytes_per_s=8e12, sm_bandwidth_bytes_per_s=60e9,
               families={"fam": {"efficiency": 0.62, "tile_overhead_s": 0.4e-6, "kernel_fixed_s": 3.1e-6,
                                 "bandwidth_efficiency": 0.8}}, calibrated=True)


def synthetic(seed, n=300, noise=0.01):
    rng = np.random.default_rng(seed)
    g = wm.Gemm(m=rng.integers(1, 6000, n), n=rng.integers(1, 6000, n), k=rng.integers(8, 6000, n))
    t = wm.predict_latency(g, H100, CFG, profile=TRUE).latency_s
    return fit.Group(g, t * (1 + noise * rng.standard_normal(n)))


def test_fit_recovers_the_parameters_that_made_the_data():
    res = fit.fit_profile([synthetic(1)], H100, CFG, families=["fam"],
                          free_gpu=("sm_bandwidth_bytes_per_s",),
                          free_family=("efficiency", "tile_overhead_s", "kernel_fixed_s"), iterations=40)
    p = res.parameters
    assert p["fam.efficiency"] == pytest.approx(0.62, rel=0.03)
    assert p["fam.kernel_fixed_s"] == pytest.approx(3.1e-6, rel=0.15)
    assert p["sm_bandwidth_bytes_per_s"] == pytest.approx(60e9, rel=0.1)
    held_out = fit.relative_errors([synthetic(2, noise=0.0)], H100, CFG, res.profile)
    assert np.median(np.abs(held_out)) < 0.01      # the noise was 1 %; the model itself is exact


def test_fit_reports_the_error_it_could_not_remove():
    data = synthetic(3, noise=0.0)
    biased = fit.Group(data.shape, data.measured_s * 1.5)
    res = fit.fit_profile([biased], H100, CFG, families=["fam"], free_gpu=(), free_family=("kernel_fixed_s",),
                          iterations=20)
    # only a fixed cost is free: it cannot scale every latency by 1.5, so an error must remain
    assert res.median_abs_error > 0.05


def grid(seed, n, lo_k, hi_k):
    rng = np.random.default_rng(seed)
    m, n_ = rng.integers(2000, 8000, n), rng.integers(2000, 8000, n)
    return wm.Gemm(m=m, n=n_, k=rng.integers(lo_k, hi_k, n))


def test_a_prior_sets_a_parameter_the_rows_leave_free_and_not_one_they_pin():
    free = ("efficiency", "tile_overhead_s", "kernel_fixed_s", "bandwidth_efficiency")
    gpu_level = Profile(launch_overhead_s=1.0e-6, l2_bandwidth_bytes_per_s=8e12,
                        sm_bandwidth_bytes_per_s=60e9)

    def fitted(rows, **kw):
        return fit.fit_profile([rows], H100, CFG, families=["fam"], start=gpu_level, free_gpu=(),
                               free_family=free, **kw)

    # long K: no row's latency depends on the DRAM rate (checked below): the prior decides it
    g = grid(4, 150, 4000, 8000)
    p = wm.predict_latency(g, H100, CFG, profile=TRUE)
    for rate in (0.5, 1.0):
        fam = {**TRUE.families["fam"], "bandwidth_efficiency": rate}
        other = Profile(**{**vars(TRUE), "families": {"fam": fam}})
        np.testing.assert_array_equal(wm.predict_latency(g, H100, CFG, profile=other).latency_s, p.latency_s)
    rows = fit.Group(g, p.latency_s)
    loose = fitted(rows, initial={"fam.bandwidth_efficiency": 0.5})
    held = fitted(rows, initial={"fam.bandwidth_efficiency": 0.5},
                  priors={"bandwidth_efficiency": (0.9, 1.0)})
    assert loose.parameters["fam.bandwidth_efficiency"] == pytest.approx(0.5, rel=0.01)
    assert held.parameters["fam.bandwidth_efficiency"] == pytest.approx(0.9, rel=0.01)
    assert held.relative_errors.size == 150                   # the rows' errors only, not the prior's
    np.testing.assert_allclose(held.relative_errors, loose.relative_errors, atol=1e-9)
    # K of 8-24: the DRAM term binds and the rows pin the rate at its true 0.8 against a prior at 0.5
    g = grid(5, 150, 8, 24)
    p = wm.predict_latency(g, H100, CFG, profile=TRUE)
    rows = fit.Group(g, p.latency_s)
    pinned = fitted(rows, priors={"bandwidth_efficiency": (0.5, 1.0)})
    assert pinned.parameters["fam.bandwidth_efficiency"] == pytest.approx(0.8, rel=0.03)
