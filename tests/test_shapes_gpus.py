import csv
from pathlib import Path

import numpy as np
import pytest

import wavemodel as wm
from wavemodel.gpus import GPUSpec, catalogue


def test_gemm_accepts_ints_and_arrays():
    g = wm.Gemm(m=np.arange(64, 257, 64), n=128, k=32)
    assert g.m.dtype == np.int64 and g.n == 128 and g.batch == 1 and g.dtype == "fp16"
    assert np.array_equal(g.flops, 2.0 * np.array([64, 128, 192, 256]) * 128 * 32)
    assert wm.Gemm(4.0, 8, 8).m == 4


@pytest.mark.parametrize("field,value", [("m", 0), ("n", -3), ("k", 2.5), ("batch", 0), ("m", True),
                                         ("n", "x"), ("k", np.array([4, 0]))])
def test_gemm_rejects_bad_dimensions_naming_the_field(field, value):
    kw = dict(m=8, n=8, k=8)
    kw[field] = value
    with pytest.raises(ValueError, match=rf"^{field}: must be an integer"):
        wm.Gemm(**kw)


def test_unknown_dtype_lists_allowed_values():
    with pytest.raises(ValueError, match="dtype: 'fp64'.*fp32, tf32, fp16, bf16, fp8, int8"):
        wm.Gemm(8, 8, 8, dtype="fp64")


def test_conv_lowers_to_implicit_gemm():
    c = wm.Conv2d(n=32, c=64, h=56, w=56, k=128, r=3, s=3, stride=2, padding=1)
    assert (c.p, c.q) == (28, 28)                         # (56 + 2 - 3) // 2 + 1
    g = c.gemm()
    assert (g.m, g.n, g.k, g.batch) == (32 * 28 * 28, 128, 64 * 9, 1)
    d = wm.Conv2d(n=1, c=8, h=10, w=10, k=8, r=3, s=3, dilation=2)
    assert (d.p, d.q) == (6, 6)                           # (10 - 2*2 - 1) // 1 + 1
    dw = wm.Conv2d(n=2, c=32, h=8, w=8, k=32, r=3, s=3, padding=1, groups=32)
    assert (dw.gemm().batch, dw.gemm().n, dw.gemm().k) == (32, 1, 9)


def test_conv_rejects_empty_output_and_bad_groups():
    with pytest.raises(ValueError, match="r, s"):
        wm.Conv2d(n=1, c=8, h=2, w=2, k=8, r=3, s=3)
    with pytest.raises(ValueError, match="groups"):
        wm.Conv2d(n=1, c=6, h=8, w=8, k=8, r=1, s=1, groups=4)
    with pytest.raises(ValueError, match="padding"):
        wm.Conv2d(n=1, c=8, h=8, w=8, k=8, padding=-1)


def test_catalogue_has_required_gpus_with_valid_limits():
    need = {"v100-sxm2", "t4", "a10", "a100-40gb", "a100-80gb", "l4", "l40s", "rtx-3090", "rtx-4090",
            "h100-pcie", "h100-sxm", "h200", "b200"}
    cat = catalogue()
    assert need <= set(cat)
    for spec in cat.values():
        assert spec.max_warps_per_sm * 32 == spec.max_threads_per_sm
        assert spec.peak_flops("fp16") > spec.peak_flops_per_s["fp32"]


def test_h100_matches_device_reading():
    h = wm.gpu("h100-sxm")       # validation/data/h100-sxm/occupancy_env.json was read off the device
    assert (h.sm_count, h.l2_bytes, h.smem_per_sm_bytes, h.max_smem_per_block_bytes) == (
        132, 52428800, 233472, 232448)


@pytest.mark.parametrize("alias", ["h100", "H100 SXM5", "NVIDIA H100 80GB HBM3", "h100-sxm"])
def test_aliases(alias):
    assert wm.gpu(alias).name == "h100-sxm"


def test_unknown_gpu_lists_closest_names():
    with pytest.raises(ValueError, match=r"unknown GPU 'h10'; closest known names: .*h100-sxm"):
        wm.gpu("h10")


def test_local_gpu_without_device_says_so():
    import importlib.util

    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy present: the message path for a machine without it is not reachable")
    with pytest.raises(ValueError, match="gpu: 'local' needs CuPy"):
        wm.gpu("local")


def test_spec_validation_rejects_inconsistent_entries():
    base = dict(name="x", display_name="X", arch="sm_90", compute_capability="9.0", sm_count=10,
                boost_clock_mhz=1000, l2_bytes=1, dram_bytes=1, dram_bandwidth_bytes_per_s=1.0,
                peak_flops_per_s={d: 1.0 for d in ("fp32", "tf32", "fp16", "bf16", "fp8", "int8")})
    GPUSpec(**base)
    with pytest.raises(ValueError, match="sm_count"):
        GPUSpec(**(base | {"sm_count": 0}))
    with pytest.raises(ValueError, match="peak_flops_per_s lacks"):
        GPUSpec(**(base | {"peak_flops_per_s": {"fp32": 1.0}}))
    with pytest.raises(ValueError, match="max_warps_per_sm"):
        GPUSpec(**(base | {"max_warps_per_sm": 48}))


def test_missing_tensor_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="has no bf16 tensor-core mode"):
        wm.predict_latency(wm.Gemm(256, 256, 256, dtype="bf16"), "v100")


def test_the_measured_dram_read_fraction_is_carried_and_checked():
    import dataclasses

    h100 = wm.gpu("h100-sxm")
    probe = Path(__file__).resolve().parents[1] / "validation/data/h100-sxm/dram_probe/dram_probe.csv"
    with open(probe, newline="") as f:      # the fastest streaming read the probe measured on the card
        best = max(float(r["fraction_of_catalogue"]) for r in csv.DictReader(f) if r["kernel"] == "read")
    assert h100.dram_read_fraction == pytest.approx(best, abs=0.001)
    with pytest.raises(ValueError, match="dram_read_fraction"):
        dataclasses.replace(h100, dram_read_fraction=1.2)
    assert dataclasses.replace(h100, dram_read_fraction=None).dram_read_fraction is None
