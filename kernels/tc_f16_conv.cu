// tc_f16_conv.cu -- fp16 implicit-GEMM 2-D convolution on tensor cores, fp32 accumulate, fp16 out.
//
// Layouts: input x NHWC [N][H][W][C], filter w KRSC [K][R][S][C], output y NHWC [N][P][Q][K],
//   P = (H + 2*pad - R) / stride + 1, Q = (W + 2*pad - S) / stride + 1 (dilation 1, cross-correlation
//   as in cuDNN / torch.nn.functional.conv2d).
// GEMM view: y[m][n] = sum_k A[m][k] * Bt[n][k] with m = (n_img, p, q) (M = N*P*Q), n = output
//   channel (GEMM N = K), k = (r, s, c) (GEMM K = R*S*C). A is gathered from x on the fly (a row of A
//   is the receptive field of one output pixel, zero where it falls in the padding); Bt is the filter
//   as stored (KRSC is already [n][k], k contiguous) and y is row-major [M][K].
//
// Tiling (one configuration per compiled module, selected with -D):
//   BM x BN   CTA tile of the implicit GEMM; BK = 32 (two k16 steps of mma.sync.m16n8k16)
//   WM x WN   warps along M and N; threads = WM * WN * 32; warp tile (BM/WM) x (BN/WN)
//   STAGES    cp.async pipeline depth (same mainloop as tc_f16_gemm.cu)
//   smem      = STAGES * (BM + BN) * BK * 2 bytes, dynamic (A stage BM x 32, filter stage BN x 32, both
//             with 64-byte rows and the swz_k32 chunk swizzle of tc_common.cuh)
//   raster    row-major: blockIdx.x = tile column (output channels), blockIdx.y = tile row (pixels);
//             one CTA per output tile, non-persistent, no split-K. -DRASTER_M swaps the two (a probe's
//             variant, not a registered configuration: validation/raster_probe.py).
// A 16-byte chunk of A is 8 consecutive input channels of one (r, s) tap, so C must be a multiple of
// 8; K must be a multiple of 8 (as in tc_f16_gemm). Each thread keeps the (r, s, c) tap of its chunk
// and advances it by BK per K tile (no division in the loop); its rows' input offsets are precomputed
// so a chunk's address is one add (x must hold fewer than 2**31 elements).
//
// Configurations used by wavemodel (registry names in wavemodel/hardware/kernels.py; registers as
// NVRTC 13.0 builds them for sm_90, blocks/SM on an H100):
//   conv_f16_128x128  -DBM=128 -DBN=128 -DWM=2 -DWN=2 -DSTAGES=4 -DMIN_BLOCKS=2  128 thr (64x64 warp
//                     tiles), 252 regs, 65536 B smem, 2 blocks/SM
//   conv_f16_128x64   -DBM=128 -DBN=64 -DWM=2 -DWN=2 -DSTAGES=4 -DMIN_BLOCKS=3   128 thr (64x32),
//                     168 regs, 49152 B smem, 3 blocks/SM
// Entry point: extern "C" tc_f16_conv.

#include "tc_common.cuh"
#include "trace_blocks.cuh"

#ifndef BM
#define BM 128
#endif
#ifndef BN
#define BN 128
#endif
#ifndef WM
#define WM 2
#endif
#ifndef WN
#define WN 2
#endif
#ifndef STAGES
#define STAGES 4
#endif
#ifndef MIN_BLOCKS
#define MIN_BLOCKS 1
#endif
#define BK 32
#define KSTEPS (BK / 16)

#define THREADS (WM * WN * 32)
#define WTM (BM / WM)
#define WTN (BN / WN)
#define MI (WTM / 16)
#define NI (WTN / 8)
#define A_STAGE_BYTES (BM * BK * 2)
#define B_STAGE_BYTES (BN * BK * 2)
#define STAGE_BYTES (A_STAGE_BYTES + B_STAGE_BYTES)
#define ROW_STEP (THREADS / (BK / 8))       // rows between one thread's chunks (A and filter)
#define A_CHUNKS (BM / ROW_STEP)
#define B_CHUNKS (BN / ROW_STEP)

static_assert(WTM % 16 == 0 && WTN % 16 == 0, "warp tile must be a multiple of 16x16");
static_assert(BM % ROW_STEP == 0 && BN % ROW_STEP == 0 && ROW_STEP % 8 == 0, "tiles must split evenly");
static_assert(STAGES >= 2, "need at least two stages");

extern "C" __global__ void __launch_bounds__(THREADS, MIN_BLOCKS)
tc_f16_conv(const unsigned short* __restrict__ X, const unsigned short* __restrict__ Wt,
            unsigned short* __restrict__ Y,
            int N, int H, int W, int C, int K, int R, int S, int P, int Q, int stride, int pad
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
    const int M = N * P * Q;
    const int KG = R * S * C;                  // GEMM K
#ifdef RASTER_M     // a probe's variant (validation/raster_probe.py): consecutive CTAs walk the pixel tiles
    const int block_m = blockIdx.x * BM;
    const int block_n = blockIdx.y * BN;
#else
    const int block_m = blockIdx.y * BM;
    const int block_n = blockIdx.x * BN;
#endif

    // ---- per-thread gather state: rows row0 + i*ROW_STEP of A, chunk `chunk` of each K tile ----
    const int row0 = tid / (BK / 8);
    const int chunk = tid % (BK / 8);
    int a_base[A_CHUNKS];                      // x offset of (n_img, h0, w0, 0); h0/w0 may be < 0
    int a_h0[A_CHUNKS], a_w0[A_CHUNKS];        // top-left input coordinate of the receptive field
    u32 a_ok = 0;                              // bit i: row i is inside M
#pragma unroll
    for (int i = 0; i < A_CHUNKS; ++i) {
        const int m_row = block_m + row0 + i * ROW_STEP;
        const int m = m_row < M ? m_row : 0;   // rows past M are masked; keep their offsets in range
        const int img = m / (P * Q);
        const int pq = m - img * (P * Q);
        const int p = pq / Q;
        const int q = pq - p * Q;
        a_h0[i] = p * stride - pad;
        a_w0[i] = q * stride - pad;
        a_base[i] = ((img * H + a_h0[i]) * W + a_w0[i]) * C;
        if (m_row < M) a_ok |= 1u << i;
    }
    // (r, s, c) of this thread's chunk in the next K tile to load; load_stage is called for
    // kt = 0, 1, 2, ... in order, so the tap advances incrementally (no division in the loop)
    int ld_kg = chunk * 8;
    int ld_r, ld_s, ld_c;
    {
        const int rs = ld_kg / C;
        ld_c = ld_kg - rs * C;
        ld_r = rs / S;
        ld_s = rs - ld_r * S;
    }
    const u32 a_dst = swz_k32(row0, chunk);
    const u32 b_dst = A_STAGE_BYTES + swz_k32(row0, chunk);
    const unsigned short* b_src = Wt + (long long)(block_n + row0) * KG + chunk * 8;
    u32 b_ok = 0;
#pragma unroll
    for (int i = 0; i < B_CHUNKS; ++i)
        if (block_n + row0 + i * ROW_STEP < K) b_ok |= 1u << i;

    auto load_stage = [&](int stage, int kt) {
        const u32 base = smem0 + stage * STAGE_BYTES;
        const bool k_ok = ld_kg < KG;
        const int tap = (ld_r * W + ld_s) * C + ld_c;      // x offset of tap (r, s), channel c
#pragma unroll
        for (int i = 0; i < A_CHUNKS; ++i) {
            const int h = a_h0[i] + ld_r;
            const int w = a_w0[i] + ld_s;
            const bool ok = k_ok && ((a_ok >> i) & 1u) && (unsigned)h < (unsigned)H && (unsigned)w < (unsigned)W;
            cp_async_16(base + a_dst + i * (ROW_STEP * 64), ok ? X + (a_base[i] + tap) : X, ok);
        }
#pragma unroll
        for (int i = 0; i < B_CHUNKS; ++i) {
            const bool ok = k_ok && ((b_ok >> i) & 1u);
            cp_async_16(base + b_dst + i * (ROW_STEP * 64),
                        ok ? b_src + (long long)i * ROW_STEP * KG + kt * BK : Wt, ok);
        }
        ld_kg += BK;
        ld_c += BK;
        while (ld_c >= C) {
            ld_c -= C;
            if (++ld_s == S) { ld_s = 0; ++ld_r; }
        }
    };

    // ---- fragment addresses (ldmatrix, both operands k-contiguous) ----
    // A (x4): lane -> row (lane & 15), k chunk 2*kstep + (lane >> 4)
    const u32 a_frag = (wm * WTM + (lane & 15)) * 64;
    const int a_xor = ((lane & 15) >> 1) & 3;
    // filter (x4, no transpose): lane -> n row (lane & 7) + 8*(lane >> 4), k chunk 2*kstep + ((lane >> 3) & 1)
    const u32 b_frag = A_STAGE_BYTES + (wn * WTN + (lane & 7) + ((lane >> 4) << 3)) * 64;
    const int b_xor = (lane >> 1) & 3;
    const int b_khalf = (lane >> 3) & 1;

    u32 af[2][MI][4];
    u32 bf[2][NI / 2][4];
    float acc[MI][NI][4];
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;

    auto load_frags = [&](int buf, u32 stage_base, int ks) {
#pragma unroll
        for (int i = 0; i < MI; ++i)
            ldmatrix_x4(af[buf][i], stage_base + a_frag + i * 16 * 64 + (((ks * 2 + (lane >> 4)) ^ a_xor) << 4));
#pragma unroll
        for (int j = 0; j < NI / 2; ++j)
            ldmatrix_x4(bf[buf][j], stage_base + b_frag + j * 16 * 64 + (((ks * 2 + b_khalf) ^ b_xor) << 4));
    };

    const int ktiles = (KG + BK - 1) / BK;

#pragma unroll
    for (int st = 0; st < STAGES - 1; ++st) {
        if (st < ktiles) load_stage(st, st);
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
            if (ks == KSTEPS - 1) {
                cp_async_wait<STAGES - 2>();
                __syncthreads();
                read_stage = (read_stage + 1 == STAGES) ? 0 : read_stage + 1;
            }
            load_frags((ks + 1) & 1, smem0 + read_stage * STAGE_BYTES, (ks + 1) % KSTEPS);
            if (ks == 0) {
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

    // ---- epilogue: y is row-major [M][K]; K is a multiple of 8 ----
    const int row_base = block_m + wm * WTM + (lane >> 2);
    const int col_base = block_n + wn * WTN + (lane & 3) * 2;
#pragma unroll
    for (int i = 0; i < MI; ++i) {
#pragma unroll
        for (int j = 0; j < NI; ++j) {
            const int row = row_base + i * 16;
            const int col = col_base + j * 8;
            if (col < K) {
                if (row < M)
                    *reinterpret_cast<u32*>(Y + (long long)row * K + col) = pack_half2(acc[i][j][0], acc[i][j][1]);
                if (row + 8 < M)
                    *reinterpret_cast<u32*>(Y + (long long)(row + 8) * K + col) = pack_half2(acc[i][j][2], acc[i][j][3]);
            }
        }
    }
    TRACE_END();
}
