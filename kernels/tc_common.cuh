// tc_common.cuh -- PTX helpers shared by tc_f16_gemm.cu and tc_f16_conv.cu (sm_80+ instructions:
// cp.async, ldmatrix, mma.sync.m16n8k16 fp16 -> fp32). No CUDA headers are needed, so NVRTC
// compiles it with no include path; the Python loader inlines this file where it is #included.
#pragma once

typedef unsigned int u32;

__device__ __forceinline__ u32 smem_addr(const void* p) {
    u32 r;
    asm volatile("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(r) : "l"(p));
    return r;
}

// 16-byte global -> shared copy, bypassing L1 (.cg); src_bytes = 0 writes 16 zero bytes and reads
// nothing (predicated zero-fill), so out-of-range chunks need no branch.
__device__ __forceinline__ void cp_async_16(u32 dst, const void* src, bool valid) {
    int n = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" :: "n"(N)); }

__device__ __forceinline__ void ldmatrix_x4(u32 (&r)[4], u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(u32 (&r)[4], u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}

// D = A(16x16, row) * B(16x8, col) + D, fp16 inputs, fp32 accumulators
__device__ __forceinline__ void mma_16816(float (&d)[4], const u32 (&a)[4], u32 b0, u32 b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// two fp32 -> one f16x2 word (lo in the low half), round to nearest even
__device__ __forceinline__ u32 pack_half2(float lo, float hi) {
    u32 r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

// Shared-memory layout of a tile whose rows are 32 halves (64 bytes = four 16-byte chunks), used
// for A tiles with BK = 32 (BM x 32, k contiguous) and for the conv filter tile (BN x 32): the chunk index is
// XORed with bits 1..2 of the row so that the 8 rows an ldmatrix reads (and the 8 rows a warp's
// cp.async writes) fall in 8 different 16-byte bank groups.
__device__ __forceinline__ int swz_k32(int row, int chunk) {
    return row * 64 + ((chunk ^ ((row >> 1) & 3)) << 4);
}

// Layout of a tile whose rows hold >= 8 chunks (the GEMM B tile, BK x BN, and A tiles with BK = 64):
// the low three bits of the chunk index are XORed with the row's low three bits.
template <int ROW_BYTES>
__device__ __forceinline__ int swz_wide(int row, int chunk) {
    return row * ROW_BYTES + ((chunk ^ (row & 7)) << 4);
}
