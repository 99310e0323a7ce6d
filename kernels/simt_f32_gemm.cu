// simt_f32_gemm.cu -- register-blocked fp32 SIMT GEMM (CUDA cores, FFMA), C = A @ B.
//
// Operands (row-major, contiguous, one matrix per batch index):
//   A[batch][M][K], B[batch][K][N], C[batch][M][N]   (fp32 in, fp32 accumulate, fp32 out)
//   batch strides stride_a/stride_b/stride_c in elements (0 broadcasts an operand over the batch).
//
// Tiling (selected at compile time with -D, one configuration per compiled module):
//   BM x BN  CTA tile (output rows x columns), BK the K tile
//   TM x TN  per-thread micro-tile (TM = TN = 8: two 4-wide groups in each direction, the second
//            group offset by BM/2 resp. BN/2 so that a warp's shared-memory reads are float4 and
//            conflict-free)
//   threads  = (BM / TM) * (BN / TN)
//   stages   = 2: double-buffered shared memory; the next K tile is fetched from global memory into
//            registers while the current one is multiplied, then stored to the other buffer
//            (one __syncthreads per K tile)
//   smem     = 2 * BK * ((BM + 4) + BN) * 4 bytes, static (A is stored transposed, k-major, each
//            k-row padded by 4 floats so the transposing stores do not conflict)
//   raster   = row-major: blockIdx.x = tile column (N), blockIdx.y = tile row (M),
//            blockIdx.z = batch index; one block per output tile, no persistence, no split-K.
//
// Configurations used by wavemodel (registry names in wavemodel/hardware/kernels.py; registers as
// NVRTC 13.0 builds them for sm_90, blocks/SM on an H100):
//   simt_f32_64x64    -DBM=64 -DBN=64 -DBK=8 -DMIN_BLOCKS=8      64 thr, 128 regs,  8448 B smem, 8 blocks/SM
//   simt_f32_128x64   -DBM=128 -DBN=64 -DBK=8 -DMIN_BLOCKS=4    128 thr, 128 regs, 12544 B smem, 4 blocks/SM
//   simt_f32_128x128  -DBM=128 -DBN=128 -DBK=16 -DMIN_BLOCKS=2  256 thr, 128 regs, 33280 B smem, 2 blocks/SM
//   (all with -DTM=8 -DTN=8)
//   MIN_BLOCKS (default 1) is the second __launch_bounds__ argument.
//
// Loads: thread t fetches the float4s at A rows t/(BK/4) + i*NTHREADS/(BK/4), column (t%(BK/4))*4
// and B k-rows t/(BN/4) + i*NTHREADS/(BN/4), column (t%(BN/4))*4, through two pointers that advance
// one K tile per step.
// Shapes: any M, N, K >= 1. Global loads are float4 when the launcher says the operand is 16-byte
// aligned (vec_a: K % 4 == 0 and A, stride_a 16-byte aligned; vec_b likewise with N), scalar
// otherwise; every access is bounds-checked and out-of-range operands read as zero.
// Entry point: extern "C" simt_f32_gemm (fixed name; the tile is in the compile options).

#include "trace_blocks.cuh"

#ifndef BM
#define BM 128
#endif
#ifndef BN
#define BN 128
#endif
#ifndef BK
#define BK 8
#endif
#ifndef TM
#define TM 8
#endif
#ifndef TN
#define TN 8
#endif
#ifndef MIN_BLOCKS
#define MIN_BLOCKS 1
#endif

#define NTHREADS ((BM / TM) * (BN / TN))
#define TX (BN / TN)            // threads along N
#define AS_LD (BM + 4)          // padded k-row of the transposed A tile
#define A_VEC_PER_THREAD (BM * BK / 4 / NTHREADS)
#define B_VEC_PER_THREAD (BK * BN / 4 / NTHREADS)
#define A_RSTEP (NTHREADS / (BK / 4))     // rows between one thread's A float4s
#define B_RSTEP (NTHREADS / (BN / 4))     // k rows between one thread's B float4s

static_assert(TM == 8 && TN == 8, "micro-tile must be 8x8 (two float4 groups per direction)");
static_assert(BM % 8 == 0 && BN % 8 == 0 && BK % 4 == 0, "tile must be a multiple of 8 (BK of 4)");
static_assert((BM * BK / 4) % NTHREADS == 0, "A tile must split evenly into float4 per thread");
static_assert((BK * BN / 4) % NTHREADS == 0, "B tile must split evenly into float4 per thread");
static_assert(NTHREADS % (BK / 4) == 0 && NTHREADS % (BN / 4) == 0, "loads must keep one column per thread");

struct F4 { float x, y, z, w; };

// four consecutive floats at p, of which the first `cols_left` exist (zero beyond, and all zero when
// the row does not exist); one 16-byte load when the row is 16-byte aligned (vec) and all four exist
__device__ __forceinline__ F4 load4(const float* __restrict__ p, bool row_ok, int cols_left, int vec) {
    F4 v = {0.f, 0.f, 0.f, 0.f};
    if (!row_ok) return v;
    if (vec && cols_left >= 4) {
        float4 t = __ldg(reinterpret_cast<const float4*>(p));
        v.x = t.x; v.y = t.y; v.z = t.z; v.w = t.w;
    } else {
        if (cols_left > 0) v.x = __ldg(p + 0);
        if (cols_left > 1) v.y = __ldg(p + 1);
        if (cols_left > 2) v.z = __ldg(p + 2);
        if (cols_left > 3) v.w = __ldg(p + 3);
    }
    return v;
}

extern "C" __global__ void __launch_bounds__(NTHREADS, MIN_BLOCKS)
simt_f32_gemm(const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C,
              int M, int N, int K, long long stride_a, long long stride_b, long long stride_c,
              int vec_a, int vec_b, int vec_c
#ifdef TRACE_BLOCKS
              , unsigned long long* __restrict__ trace
#endif
              )
{
    TRACE_BEGIN();
    __shared__ __align__(16) float As[2][BK][AS_LD];   // transposed: As[k][m]
    __shared__ __align__(16) float Bs[2][BK][BN];      // Bs[k][n]

    const int tid = threadIdx.x;
    const int tx = tid % TX;
    const int ty = tid / TX;
    const int block_m = blockIdx.y * BM;
    const int block_n = blockIdx.x * BN;
    const long long bz = blockIdx.z;
    A += bz * stride_a + (long long)block_m * K;
    B += bz * stride_b + block_n;
    C += bz * stride_c;

    // global-load assignment: A tile BM x BK as float4 along k (rows a_r0 + i*A_RSTEP, column a_c),
    // B tile BK x BN as float4 along n (k rows b_r0 + i*B_RSTEP, column b_c)
    const int a_r0 = tid / (BK / 4), a_c = (tid % (BK / 4)) * 4;
    const int b_r0 = tid / (BN / 4), b_c = (tid % (BN / 4)) * 4;
    const int m_rem = M - block_m;      // rows of A left for this block
    const int n_rem = N - block_n;
    const float* a_ptr = A + (long long)a_r0 * K + a_c;      // advances by BK per K tile
    const float* b_ptr = B + (long long)b_r0 * N + b_c;      // advances by BK rows per K tile
    const long long a_step = (long long)A_RSTEP * K;
    const long long b_step = (long long)B_RSTEP * N;

    F4 ra[A_VEC_PER_THREAD], rb[B_VEC_PER_THREAD];
    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

    const int ktiles = (K + BK - 1) / BK;

    auto load_tile = [&](int k0) {       // global -> registers, K tile starting at k0
#pragma unroll
        for (int i = 0; i < A_VEC_PER_THREAD; ++i)
            ra[i] = load4(a_ptr + i * a_step, a_r0 + i * A_RSTEP < m_rem, K - k0 - a_c, vec_a);
#pragma unroll
        for (int i = 0; i < B_VEC_PER_THREAD; ++i)
            rb[i] = load4(b_ptr + i * b_step, k0 + b_r0 + i * B_RSTEP < K, n_rem - b_c, vec_b);
        a_ptr += BK;
        b_ptr += (long long)BK * N;
    };
    auto store_tile = [&](int buf) {     // registers -> shared buffer (A transposed)
#pragma unroll
        for (int i = 0; i < A_VEC_PER_THREAD; ++i) {
            const int row = a_r0 + i * A_RSTEP;
            As[buf][a_c + 0][row] = ra[i].x;
            As[buf][a_c + 1][row] = ra[i].y;
            As[buf][a_c + 2][row] = ra[i].z;
            As[buf][a_c + 3][row] = ra[i].w;
        }
#pragma unroll
        for (int i = 0; i < B_VEC_PER_THREAD; ++i)
            *reinterpret_cast<float4*>(&Bs[buf][b_r0 + i * B_RSTEP][b_c]) =
                make_float4(rb[i].x, rb[i].y, rb[i].z, rb[i].w);
    };

    // prologue: tile 0 -> registers -> buffer 0
    load_tile(0);
    store_tile(0);
    __syncthreads();

    for (int kt = 0; kt < ktiles; ++kt) {
        const int cur = kt & 1;
        const bool has_next = kt + 1 < ktiles;
        if (has_next) load_tile((kt + 1) * BK);
#pragma unroll
        for (int k = 0; k < BK; ++k) {
            float fa[TM], fb[TN];
            float4 t;
            t = *reinterpret_cast<const float4*>(&As[cur][k][ty * 4]);
            fa[0] = t.x; fa[1] = t.y; fa[2] = t.z; fa[3] = t.w;
            t = *reinterpret_cast<const float4*>(&As[cur][k][ty * 4 + BM / 2]);
            fa[4] = t.x; fa[5] = t.y; fa[6] = t.z; fa[7] = t.w;
            t = *reinterpret_cast<const float4*>(&Bs[cur][k][tx * 4]);
            fb[0] = t.x; fb[1] = t.y; fb[2] = t.z; fb[3] = t.w;
            t = *reinterpret_cast<const float4*>(&Bs[cur][k][tx * 4 + BN / 2]);
            fb[4] = t.x; fb[5] = t.y; fb[6] = t.z; fb[7] = t.w;
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(fa[i], fb[j], acc[i][j]);
        }
        if (has_next) store_tile(cur ^ 1);
        __syncthreads();
    }

    // epilogue: rows ty*4 + {0..3} and +BM/2, columns tx*4 + {0..3} and +BN/2
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int row = block_m + ty * 4 + (i % 4) + (i / 4) * (BM / 2);
        if (row >= M) continue;
        float* crow = C + (long long)row * N;
#pragma unroll
        for (int g = 0; g < 2; ++g) {
            const int col = block_n + tx * 4 + g * (BN / 2);
            const float* v = &acc[i][g * 4];
            if (vec_c && col + 3 < N) {
                *reinterpret_cast<float4*>(crow + col) = make_float4(v[0], v[1], v[2], v[3]);
            } else {
#pragma unroll
                for (int j = 0; j < 4; ++j)
                    if (col + j < N) crow[col + j] = v[j];
            }
        }
    }
    TRACE_END();
}
