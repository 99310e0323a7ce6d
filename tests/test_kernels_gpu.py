"""Our CUDA kernels on a real GPU: attributes equal own.toml, results equal cuBLAS (skipped without one)."""

import pytest

from wavemodel.configs import own_kernels
from wavemodel.hardware import correctness
from wavemodel.hardware.kernels import KERNELS

pytestmark = pytest.mark.gpu

GEMMS = sorted(n for n, k in KERNELS.items() if k.kind == "gemm")
CONVS = sorted(n for n, k in KERNELS.items() if k.kind == "conv")


@pytest.fixture(scope="module")
def gpu_spec():
    import wavemodel as wm

    return wm.gpu("local")


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_compiled_attributes_equal_catalogue(name, gpu_spec):
    kernel = KERNELS[name]
    compiled, toml = kernel.config, own_kernels()[name]
    assert compiled.regs_per_thread == toml.regs_per_thread
    assert compiled.smem_per_block_bytes == toml.smem_per_block_bytes
    assert kernel.attributes()["local_size_bytes"] == 0, "register spills"
    if gpu_spec.arch == "sm_90":
        assert kernel.blocks_per_sm() == toml.occupancy(gpu_spec).blocks_per_sm


@pytest.mark.parametrize("name", GEMMS)
@pytest.mark.parametrize("m,n,k,batch", [(512, 512, 512, 1), (127, 136, 264, 1), (1, 8, 8, 1),
                                         (65, 72, 40, 3)])
def test_gemm_matches_cublas(name, m, n, k, batch):
    correctness.check_gemm(name, m, n, k, batch=batch)


@pytest.mark.parametrize("name", [n for n in GEMMS if KERNELS[n].math == "simt"])
@pytest.mark.parametrize("m,n,k", [(37, 5, 3), (129, 257, 33), (1, 1, 1)])
def test_simt_gemm_any_shape(name, m, n, k):
    correctness.check_gemm(name, m, n, k)


@pytest.mark.parametrize("name", GEMMS)
def test_gemm_broadcast_b(name):
    correctness.check_gemm(name, 100, 72, 48, batch=2, broadcast_b=True)


@pytest.mark.parametrize("name", CONVS)
@pytest.mark.parametrize("shape", [
    (2, 64, 14, 14, 64, 3, 3, 1, 1), (2, 32, 15, 15, 48, 3, 3, 2, 1),
    (2, 64, 9, 11, 128, 1, 1, 1, 0), (3, 24, 17, 13, 40, 1, 1, 2, 0), (1, 8, 12, 12, 16, 7, 7, 2, 3),
])
def test_conv_matches_reference(name, shape):
    correctness.check_conv(name, *shape)


def test_conv_reference_agrees_with_torch():
    torch = pytest.importorskip("torch")
    import cupy

    rng = cupy.random.RandomState(3)
    x = rng.uniform(-1, 1, (2, 9, 11, 16), dtype=cupy.float32)
    w = rng.uniform(-1, 1, (24, 3, 3, 16), dtype=cupy.float32)
    ours = correctness.reference_conv(x, w, 2, 1)
    ref = torch.nn.functional.conv2d(torch.from_dlpack(x).permute(0, 3, 1, 2).double(),
                                     torch.from_dlpack(w).permute(0, 3, 1, 2).double(), stride=2, padding=1)
    ref = cupy.from_dlpack(ref.permute(0, 2, 3, 1).contiguous())
    assert float(cupy.abs(ours - ref).max()) < 1e-9


def test_unwritten_output_is_caught():
    """A kernel launched on a grid too small must fail the check (the poisoned NaNs stay)."""
    import cupy

    kernel = KERNELS["simt_f32_64x64"]
    a = cupy.ones((100, 16), dtype=cupy.float32)
    b = cupy.ones((16, 100), dtype=cupy.float32)
    c = cupy.full((100, 100), cupy.nan, dtype=cupy.float32)
    fn = kernel.compiled()
    import numpy as np

    fn((1, 1, 1), (kernel.threads, 1, 1), (a, b, c, *[np.int32(v) for v in (100, 100, 16)],
                                            *[np.int64(0)] * 3, *[np.int32(1)] * 3))
    ref = cupy.matmul(a.astype(cupy.float64), b.astype(cupy.float64))
    with pytest.raises(AssertionError, match="nonfinite"):
        correctness.compare(kernel.name, "fp32", (1, 100, 100, 16), 0, c, ref)


def test_launch_captures_in_cuda_graph():
    import cupy

    kernel = KERNELS["tc_f16_128x128"]
    a = cupy.random.uniform(-1, 1, (256, 64)).astype(cupy.float16)
    b = cupy.random.uniform(-1, 1, (64, 128)).astype(cupy.float16)
    c = cupy.full((256, 128), cupy.nan, dtype=cupy.float16)
    kernel.compiled()
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        kernel.launch(a, b, c, stream=stream)
        graph = stream.end_capture()
        graph.launch(stream)
        stream.synchronize()
    ref = cupy.matmul(a.astype(cupy.float64), b.astype(cupy.float64))
    correctness.compare(kernel.name, "fp16", (1, 256, 128, 64), 0, c, ref)


def test_tc_gemm_rejects_unaligned_k():
    import cupy

    kernel = KERNELS["tc_f16_128x128"]
    a = cupy.zeros((16, 12), dtype=cupy.float16)
    b = cupy.zeros((12, 16), dtype=cupy.float16)
    c = cupy.zeros((16, 16), dtype=cupy.float16)
    with pytest.raises(ValueError, match="multiples of 8"):
        kernel.launch(a, b, c)
