"""Our kernels' catalogue (data/configs/own.toml) against the registry, on the CPU (no CuPy needed)."""

import re
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest

import wavemodel as wm
from wavemodel.configs import own_kernels
from wavemodel.hardware import kernels as K

H100 = wm.gpu("h100-sxm")
# blocks per SM on the H100 (occupancy calculator, checked against CUDA's in validation/); pinned so a
# change of tile, registers or shared memory that alters the wave size is a deliberate one
EXPECTED_BLOCKS_PER_SM = {
    "simt_f32_64x64": 8, "simt_f32_128x64": 4, "simt_f32_128x128": 2,
    "tc_f16_128x128": 2, "tc_f16_128x256": 1, "tc_f16_256x128": 1,
    "conv_f16_128x128": 2, "conv_f16_128x64": 3,
}


def test_registry_importable_without_cupy():
    code = ("import sys; sys.modules['cupy'] = None\n"
            "from wavemodel.hardware import kernels, correctness\n"
            "print(sorted(kernels.KERNELS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "simt_f32_128x128" in out.stdout


def test_names_match_registry():
    assert sorted(own_kernels()) == sorted(K.KERNELS)


@pytest.mark.parametrize("name", sorted(K.KERNELS))
def test_catalogue_entry_matches_registry(name):
    cfg = own_kernels()[name]
    kernel = K.KERNELS[name]
    static_smem = cfg.smem_per_block_bytes - kernel.dynamic_smem_bytes
    static = kernel.catalogue_config(cfg.regs_per_thread, static_smem)
    assert cfg == static, "own.toml disagrees with the registry's tiling (regenerate it)"
    assert cfg.smem_per_block_bytes >= kernel.dynamic_smem_bytes
    assert cfg.dtypes == (kernel.dtype,)
    assert cfg.math == ("simt" if kernel.family == "simt_f32_gemm" else "tensor")


@pytest.mark.parametrize("name", sorted(K.KERNELS))
def test_fits_on_h100(name):
    occ = own_kernels()[name].occupancy(H100)
    assert occ.blocks_per_sm == EXPECTED_BLOCKS_PER_SM[name]


@pytest.mark.parametrize("name", sorted(K.KERNELS))
def test_predict_latency_accepts_our_names(name):
    cfg = own_kernels()[name]
    dtype = cfg.dtypes[0]
    p = wm.predict_latency(wm.Gemm(m=4096, n=4096, k=4096, dtype=dtype), H100, backend=name)
    assert p.latency_s > 0
    assert p.tiles == (4096 // cfg.tile_m) * (4096 // cfg.tile_n)


def test_grid_is_one_block_per_tile():
    k = K.KERNELS["tc_f16_128x256"]
    assert k.grid(4096, 4096) == (16, 32, 1)
    assert k.grid(129, 257, 3) == (2, 2, 3)
    assert k.tiles(129, 257, 3) == 12


def test_dynamic_smem_formula():
    assert K.KERNELS["tc_f16_128x256"].dynamic_smem_bytes == 3 * (128 + 256) * 64 * 2
    assert K.KERNELS["conv_f16_128x64"].dynamic_smem_bytes == 4 * (128 + 64) * 32 * 2
    assert K.KERNELS["simt_f32_128x128"].dynamic_smem_bytes == 0


def test_sources_found_and_includes_inlined():
    for family, file in K.SOURCES.items():
        text = K.source(file)
        assert 'extern "C" __global__' in text and family in text
        assert '#include "' not in text
        assert "#pragma once" not in text


@pytest.mark.parametrize("name", sorted(K.KERNELS))
def test_source_header_documents_config(name):
    kernel = K.KERNELS[name]
    header = K.kernels_dir().joinpath(kernel.source_file).read_text().split("#include")[0].split("#ifndef")[0]
    assert name in header
    for key, value in kernel.defines:
        if key not in ("TM", "TN"):
            assert f"-D{key}={value}" in header.split(name, 1)[1].splitlines()[0], (name, key)


def test_unknown_kernel_lists_names():
    with pytest.raises(ValueError, match="simt_f32_128x128"):
        K.get("nope")


# --------------------------------------------------------------------------- launch argument checks


def _fake(shape, dtype, ptr=0, contiguous=True):
    size = 1
    for d in shape:
        size *= d
    return SimpleNamespace(shape=tuple(shape), ndim=len(shape), dtype=dtype, size=size,
                           flags=SimpleNamespace(c_contiguous=contiguous), data=SimpleNamespace(ptr=ptr))


def test_gemm_dims_batched_and_broadcast():
    k = K.KERNELS["simt_f32_128x128"]
    dims = K._gemm_dims(k, _fake((3, 5, 7), "float32"), _fake((7, 9), "float32"), _fake((3, 5, 9), "float32"))
    assert dims == (5, 9, 7, 3, (35, 0, 45))


@pytest.mark.parametrize("a,b,c,match", [
    ((64, 60), (60, 64), (64, 64), "multiples of 8"),        # K = 60
    ((64, 64), (64, 36), (64, 36), "multiples of 8"),        # N = 36
    ((64, 64), (32, 64), (64, 64), "does not give"),
    ((2, 64, 64), (64, 64), (64, 64), "must be 3-D"),
])
def test_tc_gemm_rejects_bad_shapes(a, b, c, match):
    k = K.KERNELS["tc_f16_128x128"]
    with pytest.raises(ValueError, match=match):
        K._gemm_dims(k, _fake(a, "float16"), _fake(b, "float16"), _fake(c, "float16"))


def test_rejects_wrong_dtype_and_misalignment():
    k = K.KERNELS["tc_f16_128x128"]
    with pytest.raises(ValueError, match="float16"):
        K._gemm_dims(k, _fake((8, 8), "float32"), _fake((8, 8), "float16"), _fake((8, 8), "float16"))
    with pytest.raises(ValueError, match="16-byte"):
        K._gemm_dims(k, _fake((8, 8), "float16", ptr=8), _fake((8, 8), "float16"), _fake((8, 8), "float16"))
    with pytest.raises(ValueError, match="contiguous"):
        K._gemm_dims(k, _fake((8, 8), "float16", contiguous=False), _fake((8, 8), "float16"),
                     _fake((8, 8), "float16"))


def test_conv_dims():
    k = K.KERNELS["conv_f16_128x128"]
    dims = K._conv_dims(k, _fake((2, 17, 13, 24), "float16"), _fake((40, 3, 3, 24), "float16"),
                        _fake((2, 9, 7, 40), "float16"), 2, 1)
    assert dims == (2, 17, 13, 24, 40, 3, 3, 9, 7)
    with pytest.raises(ValueError, match="multiples of 8"):
        K._conv_dims(k, _fake((2, 8, 8, 12), "float16"), _fake((16, 1, 1, 12), "float16"),
                     _fake((2, 8, 8, 16), "float16"), 1, 0)
    with pytest.raises(ValueError, match="NPQK"):
        K._conv_dims(k, _fake((2, 8, 8, 16), "float16"), _fake((16, 3, 3, 16), "float16"),
                     _fake((2, 8, 8, 16), "float16"), 1, 0)


# --------------------------------------------------------------------------- compile with nvcc if present


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
@pytest.mark.parametrize("name", sorted(K.KERNELS))
def test_nvcc_compiles_for_sm90_with_catalogue_registers(name, tmp_path):
    """nvcc 13.0 agrees with NVRTC 13.0 (the device's compiler, whose numbers own.toml holds) on the
    registers; it may spill a few bytes where NVRTC does not, so spills are checked on the device."""
    kernel = K.KERNELS[name]
    src = tmp_path / kernel.source_file
    src.write_text(K.source(kernel.source_file))
    out = subprocess.run(["nvcc", "-arch=sm_90", "-cubin", "--resource-usage", *kernel.options,
                          "-o", str(tmp_path / "k.cubin"), str(src)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    log = out.stdout + out.stderr
    regs = int(re.search(r"Used (\d+) registers", log).group(1))
    assert regs == own_kernels()[name].regs_per_thread, log
