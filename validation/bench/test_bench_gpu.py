"""pytest-benchmark suite: our kernels, cuBLAS and cuDNN on a representative set of shapes.

    pytest validation --benchmark-only --benchmark-json=bench.json

Device time comes from the timing harness (CUDA-graph replays timed with CUDA events) and is stored
in each benchmark's ``extra_info`` (``device_us_median``, p10/p90, launches per graph, rotation sets,
the host overhead of one eager call, TFLOP/s and, for library calls, the profiler's kernel names).
pytest-benchmark's own statistics time one graph replay of ``launches_per_graph`` calls plus a
synchronize (wall clock), so they include a few microseconds of launch and sync per replay, never the
per-call Python cost; ``extra_info["wall_us_per_call"]`` is that median divided by the launches.
Without a GPU every test is skipped.
"""

from __future__ import annotations

import pytest

from validation import shapesets as S
from validation.sweep import Job, SkipRow, job_from_shape

pytestmark = pytest.mark.gpu
ROUNDS = 10


def _gemm(backend, kernel, dtype, m, n, k, batch=1):
    return job_from_shape("gemm", backend, kernel, S.gemm("bench", dtype, m, n, k, batch))


def _conv(backend, kernel, n, c, h, k, r, stride, padding):
    return job_from_shape("conv", backend, kernel, S.conv("bench", n, c, h, k, r, stride, padding))


OWN_GEMMS = {"simt_f32": ("fp32", ("simt_f32_64x64", "simt_f32_128x64", "simt_f32_128x128")),
             "tc_f16": ("fp16", ("tc_f16_128x128", "tc_f16_128x256", "tc_f16_256x128"))}
OWN_CONVS = ("conv_f16_128x128", "conv_f16_128x64")
CONVS = ((32, 64, 56, 64, 3, 1, 1), (32, 256, 14, 1024, 1, 1, 0), (32, 128, 112, 128, 3, 1, 1))


def _cases() -> list:
    own, lib = pytest.mark.needs("cupy"), pytest.mark.needs("torch")
    cases = []
    for dtype, names in OWN_GEMMS.values():
        for name in names:
            for m, n, k in ((4096, 4096, 4096), (1000, 1000, 1000)):
                cases.append(pytest.param(_gemm("own", name, dtype, m, n, k), marks=own))
    for name in OWN_CONVS:
        cases += [pytest.param(_conv("own", name, *c), marks=own) for c in CONVS]
    for dtype in ("fp16", "bf16", "fp32", "tf32", "fp8"):
        cases.append(pytest.param(_gemm("cublas", "", dtype, 4096, 4096, 4096), marks=lib))
    for m, n, k, dtype, batch in ((1000, 1000, 1000, "fp32", 1), (1000, 1000, 1000, "fp16", 1),
                                  (4095, 4095, 4095, "fp16", 1), (1, 4096, 4096, "fp16", 1),
                                  (16, 28672, 8192, "fp16", 1), (2048, 11008, 4096, "bf16", 1),
                                  (512, 512, 64, "fp16", 96)):
        cases.append(pytest.param(_gemm("cublas", "", dtype, m, n, k, batch), marks=lib))
    cases += [pytest.param(_conv("cudnn", "", *c), marks=lib) for c in CONVS]
    return cases


def _id(job: Job) -> str:
    shape = "x".join(map(str, job.shape))
    return f"{job.kernel or job.backend}-{job.dtype}-{shape}"


def _flops(job: Job) -> float:
    return S.gemm_flops(job.shape_dict) if job.kind == "gemm" else S.conv_flops(job.shape_dict)


@pytest.fixture(scope="session")
def runner():
    from validation.sweep_gpu import Runner

    return Runner(budget_s=0.1)


@pytest.mark.parametrize("job", _cases(), ids=_id)
def test_device_time(benchmark, runner, job):
    from wavemodel.hardware.timing import graph_replayer

    try:
        call = runner.build(job)                    # our kernels: correctness check on first use
    except SkipRow as e:
        pytest.fail(str(e))
    timing = runner.time_call(call)
    info = {"device_us_median": timing["latency_us_median"], "device_us_p10": timing["latency_us_p10"],
            "device_us_p90": timing["latency_us_p90"], "reps": timing["reps"],
            "launches_per_graph": timing["launches_per_graph"], "rotation_sets": timing["rotation_sets"],
            "host_overhead_us": timing["host_overhead_us"], "backend": job.backend, "dtype": job.dtype,
            "shape": job.shape_dict, "tflops": _flops(job) / timing["latency_us_median"] / 1e6}
    if job.backend != "own":
        (ck,) = runner.kernel_names([call])
        info["kernel"] = ck.kernel if ck is not None else ""
    else:
        info["kernel"] = job.kernel
    call.setup()
    run = graph_replayer(call.launch, timing["launches_per_graph"], framework=call.framework,
                         backend=runner.backend(call.framework))
    benchmark.extra_info.update(info)
    benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    if stats is not None:
        benchmark.extra_info["wall_us_per_call"] = stats.median / timing["launches_per_graph"] * 1e6
    assert timing["latency_us_p10"] <= timing["latency_us_median"] <= timing["latency_us_p90"]
