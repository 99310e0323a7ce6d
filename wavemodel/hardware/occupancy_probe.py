"""Compare the occupancy calculator with CUDA's cuOccupancyMaxActiveBlocksPerMultiprocessor.

A kernel that keeps ``REGS`` values live is compiled with ``--maxrregcount`` caps (the register count
is read back from the compiled function), with and without a static shared array; each is queried at
many block sizes and dynamic shared-memory sizes, and the driver's answer is set beside the model's.
"""

from __future__ import annotations

from ..gpus import GPUSpec
from ..occupancy import occupancy

_SRC = r"""
extern "C" __global__ void busy(float* out, int n) {
    extern __shared__ float dyn[];
#if STATIC_SMEM_FLOATS > 0
    __shared__ float stat[STATIC_SMEM_FLOATS];
    stat[threadIdx.x % STATIC_SMEM_FLOATS] = (float)threadIdx.x;
    __syncthreads();
#endif
    float v[LIVE];
#pragma unroll
    for (int i = 0; i < LIVE; ++i) v[i] = out[(threadIdx.x + i * 37) % n];
    for (int it = 0; it < n; ++it) {
#pragma unroll
        for (int i = 0; i < LIVE; ++i) v[i] = v[i] * v[(i + 1) % LIVE] + v[(i + 7) % LIVE];
    }
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < LIVE; ++i) s += v[i];
#if STATIC_SMEM_FLOATS > 0
    s += stat[(threadIdx.x + 1) % STATIC_SMEM_FLOATS];
#endif
    if (n > 1000000) dyn[threadIdx.x] = s;
    out[blockIdx.x * blockDim.x + threadIdx.x] = s;
}
"""

REG_CAPS = (24, 32, 40, 48, 64, 72, 80, 96, 128, 168, 200, 255)
THREADS = (32, 64, 96, 128, 160, 192, 256, 384, 512, 640, 768, 1024)
DYNAMIC_SMEM_BYTES = (0, 1000, 4096, 12288, 40000, 49152, 70000, 101376, 116736, 232448 - 8192)
STATIC_SMEM_FLOATS = (0, 2048)


def measure_grid(gpu: GPUSpec, reg_caps=REG_CAPS, threads=THREADS, smem=DYNAMIC_SMEM_BYTES):
    """Rows of (threads, regs, static, dynamic smem, CUDA's blocks per SM, the model's, its limiter)."""
    import cupy

    driver = cupy.cuda.driver
    rows = []
    for static_floats in STATIC_SMEM_FLOATS:
        for cap in reg_caps:
            mod = cupy.RawModule(code=_SRC, options=(f"--maxrregcount={cap}", "-DLIVE=96",
                                                     f"-DSTATIC_SMEM_FLOATS={static_floats}"))
            fn = mod.get_function("busy")
            regs = fn.attributes["num_regs"]
            static = fn.attributes["shared_size_bytes"]
            fn.max_dynamic_shared_size_bytes = gpu.max_smem_per_block_bytes - static
            for t in threads:
                for dyn in smem:
                    if static + dyn > gpu.max_smem_per_block_bytes:
                        continue
                    try:
                        cuda = driver.occupancyMaxActiveBlocksPerMultiprocessor(fn.kernel.ptr, t, dyn)
                    except cupy.cuda.driver.CUDADriverError:
                        cuda = 0
                    try:
                        occ = occupancy(t, regs, static + dyn, gpu)
                        model, limiter = occ.blocks_per_sm, occ.limiter
                    except ValueError:
                        model, limiter = 0, "cannot_launch"
                    rows.append(dict(threads=t, regs_per_thread=regs, reg_cap=cap, smem_static_bytes=static,
                                     smem_dynamic_bytes=dyn, blocks_per_sm_cuda=int(cuda),
                                     blocks_per_sm_model=model, limiter=limiter))
    return rows
