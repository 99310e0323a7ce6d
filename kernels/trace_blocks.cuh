// trace_blocks.cuh -- optional per-block timeline for validation/block_trace.py.
//
// Compiled with -DTRACE_BLOCKS, a kernel takes one extra last argument, unsigned long long* trace,
// and its thread 0 writes, per block (linear index over the grid), three words: the %globaltimer
// (ns) when the block started, when all its threads finished, and the SM it ran on. Without
// TRACE_BLOCKS both macros are empty: the registered kernels are compiled exactly as before.
#pragma once

#ifdef TRACE_BLOCKS
__device__ __forceinline__ unsigned long long trace_globaltimer() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
__device__ __forceinline__ unsigned trace_smid() {
    unsigned s;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(s));
    return s;
}
#define TRACE_BEGIN() const unsigned long long trace_t0 = trace_globaltimer()
#define TRACE_END()                                                                              \
    do {                                                                                         \
        __syncthreads();                                                                         \
        if (threadIdx.x == 0) {                                                                  \
            const unsigned long long b =                                                         \
                blockIdx.x + (unsigned long long)gridDim.x * (blockIdx.y + (unsigned long long)gridDim.y * blockIdx.z); \
            trace[3 * b + 0] = trace_t0;                                                         \
            trace[3 * b + 1] = trace_globaltimer();                                              \
            trace[3 * b + 2] = trace_smid();                                                     \
        }                                                                                        \
    } while (0)
#else
#define TRACE_BEGIN() ((void)0)
#define TRACE_END() ((void)0)
#endif
