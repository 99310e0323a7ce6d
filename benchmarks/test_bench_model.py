"""CPU benchmarks of the model: ``pytest benchmarks --benchmark-only`` (one core: numpy ufuncs are serial).

Target (issue 2): one vectorised call over 1,000,000 GEMM shapes in under 1 s.
"""

import numpy as np
import pytest

import wavemodel as wm

H100 = wm.gpu("h100-sxm")
TARGET_S = 1.0


@pytest.fixture(scope="module")
def million_shapes():
    rng = np.random.default_rng(0)
    return wm.Gemm(m=rng.integers(1, 16385, 1_000_000), n=rng.integers(1, 16385, 1_000_000),
                   k=rng.integers(1, 16385, 1_000_000), dtype="fp16")


@pytest.fixture(scope="module")
def million_aligned_shapes():
    rng = np.random.default_rng(1)     # every shape 8-aligned: all of cuBLAS's fast configurations run
    return wm.Gemm(m=rng.integers(1, 2049, 1_000_000) * 8, n=rng.integers(1, 2049, 1_000_000) * 8,
                   k=rng.integers(1, 2049, 1_000_000) * 8, dtype="fp16")


def test_million_aligned_gemm_shapes_through_cublas(benchmark, million_aligned_shapes):
    p = benchmark.pedantic(wm.predict_latency, args=(million_aligned_shapes, H100), rounds=5, warmup_rounds=1)
    assert p.latency_s.shape == (1_000_000,)
    benchmark.extra_info["shapes"] = 1_000_000
    median_s = benchmark.stats["median"]
    assert median_s < TARGET_S, f"median {median_s:.3f}s over the 1 s target"


@pytest.mark.parametrize("backend", ["cublas", "own"])
def test_million_gemm_shapes_one_call(benchmark, million_shapes, backend):
    if backend == "own":
        from wavemodel.configs import own_kernels

        if not own_kernels():
            pytest.skip("no own kernels in the catalogue")
        backend = next(iter(own_kernels()))
        dtype = own_kernels()[backend].dtypes[0]
        shapes = wm.Gemm(million_shapes.m, million_shapes.n, million_shapes.k, dtype=dtype)
    else:
        shapes = million_shapes
    p = benchmark.pedantic(wm.predict_latency, args=(shapes, H100), kwargs={"backend": backend},
                           rounds=5, warmup_rounds=1)
    assert p.latency_s.shape == (1_000_000,) and np.all(p.latency_s > 0)
    benchmark.extra_info["shapes"] = 1_000_000
    median_s = benchmark.stats["median"]
    assert median_s < TARGET_S, f"median {median_s:.3f}s over the 1 s target"
