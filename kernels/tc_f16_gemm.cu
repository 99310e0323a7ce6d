// tc_f16_gemm.cu -- fp16 tensor-core GEMM, fp32 accumulate, fp16 output: C = A @ B.
//
// Operands (row-major, contiguous, one matrix per batch index; fp16 passed as raw 16-bit words):
//   A[batch][M][K], B[batch][K][N], C[batch][M][N]; batch strides in elements (0 broadcasts).
//
// Tiling (one configuration per compiled module, selected with -D):
//   BM x BN   CTA tile; BK = 32 or 64 (K tile: BK/16 k16 steps of mma.sync.m16n8k16)
//   WM x WN   warps per CTA along M and N; threads = WM * WN * 32; warp tile (BM/WM) x (BN/WN)
//   STAGES    cp.async pipeline depth: STAGES-1 K tiles are in flight while one is multiplied
//   smem      = STAGES * (BM + BN) * BK * 2 bytes, dynamic (A stage BM x BK then B stage BK x BN,
//             XOR-swizzled 16-byte chunks: conflict-free cp.async stores and ldmatrix loads)
//   MIN_BLOCKS  second __launch_bounds__ argument (register cap)
//   raster    row-major: blockIdx.x = tile column (N), blockIdx.y = tile row (M), blockIdx.z =
//             batch; one CTA per output tile, non-persistent, no split-K. -DRASTER_GROUP=G (> 1,
//             optional, unused by the registered kernels) maps the same grid to tiles in groups of
//             G tile rows walked column by column (deterministic; the tiles and waves are unchanged).
// Main loop (per K tile, as in CUTLASS's sm80 multistage mainloop): fragments of the next k16
// step are loaded with ldmatrix (A) / ldmatrix.trans (B) while the current one is multiplied;
// one cp.async.wait_group + __syncthreads per K tile, after which the stage the previous K tile
// was read from is refilled with the tile STAGES-1 ahead.
//
// Configurations used by wavemodel (registry names in wavemodel/hardware/kernels.py; registers as
// NVRTC 13.0 builds them for sm_90, blocks/SM on an H100):
//   tc_f16_128x128  -DBM=128 -DBN=128 -DBK=32 -DWM=2 -DWN=2 -DSTAGES=4 -DMIN_BLOCKS=2  128 thr (64x64
//                   warp tiles), 244 regs, 65536 B smem, 2 blocks/SM
//   tc_f16_128x256  -DBM=128 -DBN=256 -DBK=64 -DWM=2 -DWN=4 -DSTAGES=3 -DMIN_BLOCKS=1  256 thr (64x64),
//                   246 regs, 147456 B smem, 1 block/SM
//   tc_f16_256x128  -DBM=256 -DBN=128 -DBK=32 -DWM=4 -DWN=2 -DSTAGES=3 -DMIN_BLOCKS=1  256 thr (64x64),
//                   238 regs, 73728 B smem, 1 block/SM
//
// Shapes: any M >= 1; N and K must be multiples of 8 (16-byte cp.async chunks and 4-byte half2
// stores; the launcher raises ValueError otherwise) and the operands 16-byte aligned. Rows beyond
// M, columns beyond N and k beyond K are zero-filled by predicated cp.async (src-size 0).
// Entry point: extern "C" tc_f16_gemm.

#include "tc_common.cuh"
#include "trace_blocks.cuh"

#ifndef BM
#define BM 128
#endif
#ifndef BN
#define BN 256
#endif
#ifndef WM
#define WM 2
#endif
#ifndef WN
#define WN 4
#endif
#ifndef STAGES
#define STAGES 4
#endif
#ifndef MIN_BLOCKS
#define MIN_BLOCKS 1
#endif
#ifndef BK
#define BK 32
#endif
#ifndef RASTER_GROUP
#define RASTER_GROUP 1
#endif
#define KSTEPS (BK / 16)

#define THREADS (WM * WN * 32)
#define WTM (BM / WM)
#define WTN (BN / WN)
#define MI (WTM / 16)
#define NI (WTN / 8)
#define A_ROW_BYTES (BK * 2)
#define B_ROW_BYTES (BN * 2)
#define A_STAGE_BYTES (BM * BK * 2)
#define B_STAGE_BYTES (BK * BN * 2)
#define STAGE_BYTES (A_STAGE_BYTES + B_STAGE_BYTES)
#define A_CHUNKS (BM * (BK / 8) / THREADS)
#define B_CHUNKS (BK * (BN / 8) / THREADS)
#define A_ROW_STEP (THREADS / (BK / 8))      // rows between one thread's A chunks
#define B_ROW_STEP (THREADS / (BN / 8))      // k rows between one thread's B chunks

static_assert(WTM % 16 == 0 && WTN % 16 == 0, "warp tile must be a multiple of 16x16");
static_assert(A_CHUNKS >= 1 && (BM * (BK / 8)) % THREADS == 0, "A tile must split evenly");
static_assert(B_CHUNKS >= 1 && (BK * (BN / 8)) % THREADS == 0, "B tile must split evenly");
static_assert(BN / 8 >= 8 && THREADS % (BN / 8) == 0, "B row must hold >= 8 chunks");
static_assert(STAGES >= 2, "need at least two stages");
static_assert(BK == 32 || BK == 64, "BK must be 32 or 64");
static_assert(A_ROW_STEP % 8 == 0 && B_ROW_STEP % 8 == 0, "row steps must keep the swizzle key");

// A tile rows are BK halves: 64-byte rows use the swz_k32 layout, 128-byte rows swz_wide<128>;
// swz_key is the part of the XOR that depends on the row
__device__ __forceinline__ int a_swz_key(int row) { return BK == 32 ? ((row >> 1) & 3) : (row & 7); }
__device__ __forceinline__ int a_swz(int row, int chunk) {
    return row * A_ROW_BYTES + ((chunk ^ a_swz_key(row)) << 4);
}

extern "C" __global__ void __launch_bounds__(THREADS, MIN_BLOCKS)
tc_f16_gemm(const unsigned short* __restrict__ A, const unsigned short* __restrict__ B,
            unsigned short* __restrict__ C, int M, int N, int K,
            long long stride_a, long long stride_b, long long stride_c
#ifdef TRACE_BLOCKS
            , unsigned long long* __restrict__ trace
#endif
            )
{
    TRACE_BEGIN();
    extern __shared__ __align__(128) unsigned char smem[];
    const u32 smem0 = smem_addr(smem);

    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int wm = warp / WN;
    const int wn = warp % WN;
    // raster: block (x, y) of the (tiles_n, tiles_m) grid -> output tile (tile_n, tile_m). With
    // RASTER_GROUP = G > 1, consecutive blocks walk down a group of G tile rows before moving right
    // (column-major inside the group), so a wave reuses fewer B columns from L2; G = 1: row-major.
    int tile_m = blockIdx.y, tile_n = blockIdx.x;
    if (RASTER_GROUP > 1) {
        const int tiles_n = gridDim.x, tiles_m = gridDim.y;
        const int linear = blockIdx.y * tiles_n + blockIdx.x;
        const int per_group = RASTER_GROUP * tiles_n;
        const int first_m = (linear / per_group) * RASTER_GROUP;
        const int rows = min(tiles_m - first_m, RASTER_GROUP);
        const int in_group = linear % per_group;
        tile_m = first_m + in_group % rows;
        tile_n = in_group / rows;
    }
    const int block_m = tile_m * BM;
    const int block_n = tile_n * BN;
    const long long bz = blockIdx.z;
    A += bz * stride_a;
    B += bz * stride_b;
    C += bz * stride_c;

    // ---- global -> shared assignment (fixed per thread) ----
    const int a_row0 = tid / (BK / 8);
    const int a_chunk = tid % (BK / 8);
    const int b_row0 = tid / (BN / 8);
    const int b_chunk = tid % (BN / 8);
    u32 a_ok = 0;                                   // bit i: row a_row0 + i*A_ROW_STEP < M
#pragma unroll
    for (int i = 0; i < A_CHUNKS; ++i)
        if (block_m + a_row0 + i * A_ROW_STEP < M) a_ok |= 1u << i;
    const bool b_col_ok = block_n + b_chunk * 8 < N;
    const unsigned short* a_src = A + (long long)(block_m + a_row0) * K + a_chunk * 8;
    const unsigned short* b_src = B + (long long)b_row0 * N + block_n + b_chunk * 8;
    const long long a_step = (long long)A_ROW_STEP * K;
    const long long b_step = (long long)B_ROW_STEP * N;
    const u32 a_dst = a_swz(a_row0, a_chunk);
    const u32 b_dst = A_STAGE_BYTES + swz_wide<B_ROW_BYTES>(b_row0, b_chunk);

    auto load_stage = [&](int stage, int kt) {
        const int k0 = kt * BK;
        const u32 base = smem0 + stage * STAGE_BYTES;
        const bool a_k_ok = k0 + a_chunk * 8 < K;
#pragma unroll
        for (int i = 0; i < A_CHUNKS; ++i) {
            const bool ok = a_k_ok && ((a_ok >> i) & 1u);
            cp_async_16(base + a_dst + i * (A_ROW_STEP * A_ROW_BYTES), ok ? a_src + i * a_step + k0 : A, ok);
        }
#pragma unroll
        for (int i = 0; i < B_CHUNKS; ++i) {
            const bool ok = b_col_ok && (k0 + b_row0 + i * B_ROW_STEP < K);
            cp_async_16(base + b_dst + i * (B_ROW_STEP * B_ROW_BYTES),
                        ok ? b_src + i * b_step + (long long)k0 * N : B, ok);
        }
    };

    // ---- fragment addresses (ldmatrix) ----
    // A (x4): lane supplies row (lane & 15) of the 16-row block, k chunk 2*kstep + (lane >> 4)
    const u32 a_frag = (wm * WTM + (lane & 15)) * A_ROW_BYTES;
    const int a_xor = a_swz_key(lane & 15);
    // B (x4.trans): lane supplies k row kstep*16 + (lane & 15), n chunk (ni pair) + (lane >> 4)
    const u32 b_frag = A_STAGE_BYTES + (lane & 15) * B_ROW_BYTES;
    const int b_chunk0 = wn * (WTN / 8) + (lane >> 4);
    const int b_xor = lane & 7;

    u32 af[2][MI][4];
    u32 bf[2][NI / 2][4];
    float acc[MI][NI][4];
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.f;

    auto load_frags = [&](int buf, u32 stage_base, int ks) {
#pragma unroll
        for (int i = 0; i < MI; ++i)
            ldmatrix_x4(af[buf][i], stage_base + a_frag + i * 16 * A_ROW_BYTES +
                                        (((ks * 2 + (lane >> 4)) ^ a_xor) << 4));
#pragma unroll
        for (int j = 0; j < NI / 2; ++j)
            ldmatrix_x4_trans(bf[buf][j], stage_base + b_frag + ks * 16 * B_ROW_BYTES +
                                              (((b_chunk0 + j * 2) ^ b_xor) << 4));
    };

    const int ktiles = (K + BK - 1) / BK;

    // ---- prologue: STAGES-1 tiles in flight ----
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < ktiles) load_stage(s, s);
        cp_async_commit();
    }
    cp_async_wait<STAGES - 2>();
    __syncthreads();

    int read_stage = 0;
    int write_stage = STAGES - 1;
    load_frags(0, smem0, 0);

    for (int kt = 0; kt < ktiles; ++kt) {
#pragma unroll
        for (int ks = 0; ks < KSTEPS; ++ks) {
            if (ks == KSTEPS - 1) {             // next K tile must have landed
                cp_async_wait<STAGES - 2>();
                __syncthreads();
                read_stage = (read_stage + 1 == STAGES) ? 0 : read_stage + 1;
            }
            load_frags((ks + 1) & 1, smem0 + read_stage * STAGE_BYTES, (ks + 1) % KSTEPS);
            if (ks == 0) {                      // refill the stage everyone finished reading
                if (kt + STAGES - 1 < ktiles) load_stage(write_stage, kt + STAGES - 1);
                cp_async_commit();
                write_stage = (write_stage + 1 == STAGES) ? 0 : write_stage + 1;
            }
#pragma unroll
            for (int i = 0; i < MI; ++i)
#pragma unroll
                for (int j = 0; j < NI; ++j)
                    mma_16816(acc[i][j], af[ks & 1][i], bf[ks & 1][j / 2][(j & 1) * 2],
                              bf[ks & 1][j / 2][(j & 1) * 2 + 1]);
        }
    }
    cp_async_wait<0>();

    // ---- epilogue: fp32 -> fp16, half2 stores (N is a multiple of 8, so col < N covers col+1) ----
    const int row_base = block_m + wm * WTM + (lane >> 2);
    const int col_base = block_n + wn * WTN + (lane & 3) * 2;
#pragma unroll
    for (int i = 0; i < MI; ++i) {
#pragma unroll
        for (int j = 0; j < NI; ++j) {
            const int row = row_base + i * 16;
            const int col = col_base + j * 8;
            if (col < N) {
                if (row < M)
                    *reinterpret_cast<u32*>(C + (long long)row * N + col) = pack_half2(acc[i][j][0], acc[i][j][1]);
                if (row + 8 < M)
                    *reinterpret_cast<u32*>(C + (long long)(row + 8) * N + col) = pack_half2(acc[i][j][2], acc[i][j][3]);
            }
        }
    }
    TRACE_END();
}
