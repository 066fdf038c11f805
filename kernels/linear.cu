// Linear layer with a fused epilogue: the projections of every sublayer
// (fused QKV, out_proj, cross-attention), the feed-forward fc1 / fc2 and the
// vocabulary logits:
//
//   out[i, j] = act(sum_k x[i, k] * w[j, k] + bias[j]) + residual[i, j]
//
// x [m, k] row-major, w [n, k] as PyTorch / Hugging Face store nn.Linear
// weights (both operands k-major: the `mma.sync ... .row.col` shape), bias
// [n] and residual [m, n] optional, act one of tk/activation.cuh or none.
// Products are accumulated in f32; the epilogue runs in f32 and rounds once
// to the storage dtype on the store.
//
// Kernels (see src/cuda/linear.rs for the shape heuristic that picks one):
//
// - linear_tc_<BM>x<BN>x<BK>_<dtype>[_unaligned], dtype f16 / bf16: tensor
//   cores (mma.sync.m16n8k16, f32 accumulate, sm_80+). A CTA computes a
//   BM x BN tile of out with WARPS_M x WARPS_N warps, each a (BM / WARPS_M) x
//   (BN / WARPS_N) sub-tile of 16 x 8 mma tiles. Operand tiles of BK columns
//   stream global -> shared through a STAGES-deep cp.async pipeline (16-byte
//   copies; rows and columns past the end are zero-filled with src-size 0,
//   never read) and shared -> registers through ldmatrix. Shared rows are
//   padded by 8 elements (16 bytes): the 8 row addresses of one ldmatrix
//   8x8 matrix then fall 80 (BK 32) or 144 (BK 64) bytes apart, i.e. on 8
//   distinct groups of 4 banks, free of conflicts, and every row stays
//   16-byte aligned for cp.async.
//   The _unaligned variant (k not a multiple of 8, or an operand not
//   16-byte aligned: rows cannot be copied 16 bytes at a time) fills the
//   same shared tiles with guarded element loads, synchronously; the
//   compute is the same.
// - linear_simt_f32: f32 storage (SIMT FMA, no TF32), 64 x 64 tiles, 4 x 4
//   outputs per thread, for f32 runs of the whole model.
// - Split-K: when the tile grid alone cannot fill the GPU (decode: m = batch
//   x beam rows), gridDim.z slices k; slice z writes its f32 partial sums to
//   `partials[z]` and linear_reduce_<dtype> adds the slices in order
//   (deterministic) and applies the epilogue.
//
// Epilogue: the accumulator tile goes through shared memory (f32) so that
// each thread then handles whole 16-byte chunks of a row: bias, activation
// and residual loaded and out stored 128 bits at a time when n is a
// multiple of the chunk and the pointers are 16-byte aligned, element by
// element otherwise. `residual` may be exactly `out`.

#include "params.h"
#include "tk/activation.cuh"
#include "tk/convert.cuh"
#include "tk/ptx.cuh"
#include "tk/smem.cuh"
#include "tk/vector.cuh"

namespace {

// ---- epilogue ---------------------------------------------------------------

// act(acc + bias) + residual for one element, in f32.
template <typename T>
__device__ __forceinline__ float finish(const LinearParams& p, float acc, int64_t row,
                                        int64_t col) {
    const T* bias = static_cast<const T*>(p.bias);
    const T* residual = static_cast<const T*>(p.residual);
    float v = acc;
    if (bias != nullptr) v += tk::to_f32<T>(bias[col]);
    v = tk::activate_dynamic(p.activation, v);
    if (residual != nullptr) v += tk::to_f32<T>(residual[row * p.n + col]);
    return v;
}

// The epilogue of W = 16 / sizeof(T) consecutive columns col .. col + W - 1
// of row `row` (all < n), from f32 sums `v`, with 16-byte accesses.
template <typename T>
__device__ __forceinline__ void finish_store16(const LinearParams& p, float (&v)[tk::Vec16<T>::N],
                                               int64_t row, int64_t col) {
    constexpr int W = tk::Vec16<T>::N;
    const T* bias = static_cast<const T*>(p.bias);
    const T* residual = static_cast<const T*>(p.residual);
    if (bias != nullptr) {
        float b[W];
        tk::load16_f32<T>(bias + col, b);
#pragma unroll
        for (int j = 0; j < W; ++j) v[j] += b[j];
    }
#pragma unroll
    for (int j = 0; j < W; ++j) v[j] = tk::activate_dynamic(p.activation, v[j]);
    if (residual != nullptr) {
        float r[W];
        tk::load16_f32<T>(residual + row * p.n + col, r);
#pragma unroll
        for (int j = 0; j < W; ++j) v[j] += r[j];
    }
    tk::st_global_16(static_cast<T*>(p.out) + row * p.n + col, tk::pack16_from_f32<T>(v));
}

// Whether the epilogue may use 16-byte accesses for every chunk of a row.
template <typename T>
__device__ __forceinline__ bool epilogue_vectorized(const LinearParams& p) {
    return p.n % tk::Vec16<T>::N == 0 && tk::aligned16(p.out) &&
           (p.bias == nullptr || tk::aligned16(p.bias)) &&
           (p.residual == nullptr || tk::aligned16(p.residual));
}

// Stores the BM x BN f32 tile `cs` (row stride LDC floats) at rows m0..,
// columns n0.. of the output: the finished epilogue when the launch has one
// k-slice, else the raw partial sums of slice blockIdx.z.
template <typename T, int BM, int BN, int LDC, int THREADS>
__device__ __forceinline__ void store_tile(const LinearParams& p, const float* cs, int64_t m0,
                                           int64_t n0) {
    if (p.splits > 1) {
        float* part = p.partials + static_cast<int64_t>(blockIdx.z) * p.m * p.n;
        if (p.n % 4 == 0 && tk::aligned16(p.partials)) {
            for (int idx = threadIdx.x; idx < BM * BN / 4; idx += THREADS) {
                const int r = idx / (BN / 4), c = idx % (BN / 4) * 4;
                const int64_t row = m0 + r, col = n0 + c;
                if (row >= p.m || col >= p.n) continue;
                const float4 v = *reinterpret_cast<const float4*>(cs + r * LDC + c);
                *reinterpret_cast<float4*>(part + row * p.n + col) = v;
            }
        } else {
            for (int idx = threadIdx.x; idx < BM * BN; idx += THREADS) {
                const int r = idx / BN, c = idx % BN;
                const int64_t row = m0 + r, col = n0 + c;
                if (row < p.m && col < p.n) part[row * p.n + col] = cs[r * LDC + c];
            }
        }
        return;
    }
    constexpr int W = tk::Vec16<T>::N;
    static_assert(BN % W == 0, "a tile row holds whole 16-byte chunks");
    static_assert(LDC % 4 == 0, "f32 tile rows are 16-byte aligned");
    if (epilogue_vectorized<T>(p)) {
        for (int idx = threadIdx.x; idx < BM * BN / W; idx += THREADS) {
            const int r = idx / (BN / W), c = idx % (BN / W) * W;
            const int64_t row = m0 + r, col = n0 + c;
            if (row >= p.m || col >= p.n) continue;
            float v[W];
#pragma unroll
            for (int j = 0; j < W; j += 4) {
                const float4 q = *reinterpret_cast<const float4*>(cs + r * LDC + c + j);
                v[j] = q.x;
                v[j + 1] = q.y;
                v[j + 2] = q.z;
                v[j + 3] = q.w;
            }
            finish_store16<T>(p, v, row, col);
        }
    } else {
        T* out = static_cast<T*>(p.out);
        for (int idx = threadIdx.x; idx < BM * BN; idx += THREADS) {
            const int r = idx / BN, c = idx % BN;
            const int64_t row = m0 + r, col = n0 + c;
            if (row < p.m && col < p.n)
                out[row * p.n + col] = tk::from_f32<T>(finish<T>(p, cs[r * LDC + c], row, col));
        }
    }
}

// The k-steps [kt0, kt1) of this CTA's slice, of `bk` columns each.
__device__ __forceinline__ void slice_range(const LinearParams& p, int bk, int64_t& kt0,
                                            int64_t& kt1) {
    const int64_t steps = (p.k + bk - 1) / bk;
    kt0 = static_cast<int64_t>(blockIdx.z) * p.k_steps_per_split;
    kt1 = kt0 + p.k_steps_per_split;
    if (kt1 > steps) kt1 = steps;
    if (kt0 > kt1) kt0 = kt1;
}

// ---- tensor-core kernel (f16 / bf16) ----------------------------------------

template <int BM_, int BN_, int BK_, int WARPS_M_, int WARPS_N_, int STAGES_, int MIN_BLOCKS_>
struct Tile {
    static constexpr int BM = BM_, BN = BN_, BK = BK_;
    static constexpr int WARPS_M = WARPS_M_, WARPS_N = WARPS_N_, STAGES = STAGES_;
    // CTAs per multiprocessor the register budget is sized for
    // (__launch_bounds__'s second argument: 65536 / (THREADS * MIN_BLOCKS)
    // registers per thread at most; a spill fails the static checks).
    static constexpr int MIN_BLOCKS = MIN_BLOCKS_;
    static constexpr int THREADS = WARPS_M * WARPS_N * 32;
    static constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;  // warp sub-tile
    static constexpr int MI = WM / 16, NI = WN / 8;             // mma tiles per warp
    static constexpr int LDS = BK + 8;   // shared row stride, elements (16-byte pad)
    static constexpr int LDC = BN + 4;   // f32 epilogue row stride, floats
    static constexpr int PIPE_BYTES = STAGES * (BM + BN) * LDS * 2;
    static constexpr int EPI_BYTES = BM * LDC * 4;
    // The dynamic shared memory a launch must pass (src/cuda/linear.rs
    // computes the same; an emulator run of a smaller launch faults at the
    // first access past it).
    static constexpr int SMEM_BYTES = PIPE_BYTES > EPI_BYTES ? PIPE_BYTES : EPI_BYTES;
    static_assert(SMEM_BYTES <= 232448, "fits sm_90's 227 KiB of shared memory per block");
    static_assert(BM % (16 * WARPS_M) == 0, "warp rows are whole m16 mma tiles");
    static_assert(BN % (16 * WARPS_N) == 0, "warp columns are whole pairs of n8 tiles (ldmatrix.x4)");
    static_assert(BK % 16 == 0 && BK >= 16, "BK is whole k16 mma steps");
    static_assert(STAGES >= 2, "a pipeline has at least two stages");
    static_assert(THREADS <= 1024, "at most 1024 threads per block");
};

// Fills `rows` x BK of shared tile `dst` (row stride LDS) from rows r0.. of
// the row-major [rows_total, k] operand `src`, k-columns kc0 .. kc0 + BK,
// zero outside the operand. ALIGNED: 16-byte cp.async copies (k % 8 == 0,
// `src` 16-byte aligned); else guarded element loads.
template <typename T, int ROWS, int BK, int LDS, int THREADS, bool ALIGNED>
__device__ __forceinline__ void load_operand(T* dst, const T* src, int64_t rows_total, int64_t k,
                                             int64_t r0, int64_t kc0) {
    constexpr int CHUNKS_PER_ROW = BK / 8;
    for (int c = threadIdx.x; c < ROWS * CHUNKS_PER_ROW; c += THREADS) {
        const int r = c / CHUNKS_PER_ROW, kc = c % CHUNKS_PER_ROW * 8;
        const int64_t row = r0 + r, col = kc0 + kc;
        T* d = dst + r * LDS + kc;
        if (ALIGNED) {
            // k % 8 == 0: a chunk is either wholly inside a row or past its end.
            const bool inside = row < rows_total && col < k;
            tk::cp_async_16(d, inside ? src + row * k + col : src, inside ? 16 : 0);
        } else {
#pragma unroll
            for (int j = 0; j < 8; ++j)
                d[j] = row < rows_total && col + j < k ? src[row * k + col + j]
                                                       : tk::from_f32<T>(0.0f);
        }
    }
}

template <typename T, typename C, bool ALIGNED>
__device__ __forceinline__ void linear_tc(const LinearParams& p) {
    constexpr int BM = C::BM, BN = C::BN, BK = C::BK, LDS = C::LDS, STAGES = C::STAGES;
    constexpr int MI = C::MI, NI = C::NI, THREADS = C::THREADS;
    T* const a_tiles = reinterpret_cast<T*>(tk::dynamic_smem());  // [STAGES][BM][LDS]
    T* const b_tiles = a_tiles + STAGES * BM * LDS;               // [STAGES][BN][LDS]
    const T* x = static_cast<const T*>(p.x);
    const T* w = static_cast<const T*>(p.w);
    // Row tiles on x (up to 2^31 - 1), column tiles on y (65535 is 4M+
    // columns even for the 64-wide tiles).
    const int64_t m0 = static_cast<int64_t>(blockIdx.x) * BM;
    const int64_t n0 = static_cast<int64_t>(blockIdx.y) * BN;
    int64_t kt0, kt1;
    slice_range(p, BK, kt0, kt1);

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int wm = warp / C::WARPS_N * C::WM, wn = warp % C::WARPS_N * C::WN;

    auto load_stage = [&](int stage, int64_t kt) {
        load_operand<T, BM, BK, LDS, THREADS, ALIGNED>(a_tiles + stage * BM * LDS, x, p.m, p.k,
                                                       m0, kt * BK);
        load_operand<T, BN, BK, LDS, THREADS, ALIGNED>(b_tiles + stage * BN * LDS, w, p.n, p.k,
                                                       n0, kt * BK);
    };

    float acc[MI][NI][4];
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

    // Prologue: the first STAGES - 1 k-steps in flight, one group each
    // (empty groups past the slice keep the group count uniform).
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (kt0 + s < kt1) load_stage(s, kt0 + s);
        tk::cp_async_commit();
    }
    for (int64_t kt = kt0; kt < kt1; ++kt) {
        // Step kt's group has landed for this thread; the barrier makes it
        // visible to all, and also ends every warp's reads of the stage the
        // prefetch below overwrites (the one step kt - 1 used).
        tk::cp_async_wait<STAGES - 2>();
        __syncthreads();
        const int64_t next = kt + STAGES - 1;
        if (next < kt1) load_stage(static_cast<int>((next - kt0) % STAGES), next);
        tk::cp_async_commit();

        const int stage = static_cast<int>((kt - kt0) % STAGES);
        const T* a_s = a_tiles + stage * BM * LDS;
        const T* b_s = b_tiles + stage * BN * LDS;
#pragma unroll
        for (int ks = 0; ks < BK; ks += 16) {
            uint32_t af[MI][4];
#pragma unroll
            for (int i = 0; i < MI; ++i) {
                // Matrices (rows 0-7, k 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15).
                const int row = wm + i * 16 + lane % 16, col = ks + lane / 16 * 8;
                tk::ldmatrix_x4(af[i], a_s + row * LDS + col);
            }
#pragma unroll
            for (int j = 0; j < NI; j += 2) {
                // Matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7),
                // (n 8-15, k 8-15): the b fragments of n-tiles j and j + 1,
                // used at once (fewer live registers than loading all first:
                // the 128 x 128 tile fits ptxas's 128-register budget).
                const int row = wn + j * 8 + lane % 8 + lane / 16 * 8;
                const int col = ks + lane / 8 % 2 * 8;
                uint32_t r[4];
                tk::ldmatrix_x4(r, b_s + row * LDS + col);
                const uint32_t b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
#pragma unroll
                for (int i = 0; i < MI; ++i) {
                    tk::mma_m16n8k16_acc<T>(acc[i][j], af[i], b0);
                    tk::mma_m16n8k16_acc<T>(acc[i][j + 1], af[i], b1);
                }
            }
        }
    }
    tk::cp_async_wait_all();
    __syncthreads();  // every warp is done with the pipeline's shared memory

    // Registers -> the f32 epilogue tile: lane (g, t) of mma tile (i, j)
    // holds rows g and g + 8, columns 2t and 2t + 1.
    float* cs = reinterpret_cast<float*>(tk::dynamic_smem());
    const int g = lane / 4, t = lane % 4;
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j) {
            const int r = wm + i * 16 + g, c = wn + j * 8 + 2 * t;
            cs[r * C::LDC + c] = acc[i][j][0];
            cs[r * C::LDC + c + 1] = acc[i][j][1];
            cs[(r + 8) * C::LDC + c] = acc[i][j][2];
            cs[(r + 8) * C::LDC + c + 1] = acc[i][j][3];
        }
    __syncthreads();
    store_tile<T, BM, BN, C::LDC, THREADS>(p, cs, m0, n0);
}

// The tile configurations (src/cuda/linear.rs::Tile mirrors them).
// 128 x 256: the largest tiles (m and n in the thousands); 8 warps of 64 x 64
// (128 f32 accumulators per thread), 3 stages.
using Tile128x256 = Tile<128, 256, 32, 2, 4, 3, 1>;
// 128 x 128: large m; 8 warps of 64 x 32 (64 f32 accumulators per thread);
// two CTAs per multiprocessor (<= 128 registers, 2 x 80 KiB shared).
using Tile128x128 = Tile<128, 128, 32, 2, 4, 4, 2>;
// 64 x 64: m up to a few hundred, or too few 128 x 128 tiles to fill the GPU.
using Tile64x64 = Tile<64, 64, 32, 2, 2, 4, 1>;
// 16 x 64 with BK 64: decode (m <= 16), usually split over k; 4 warps of 16 x 16.
using Tile16x64 = Tile<16, 64, 64, 1, 4, 4, 1>;

// ---- SIMT f32 kernel -----------------------------------------------------------

constexpr int SIMT_BM = 64, SIMT_BN = 64, SIMT_BK = 16, SIMT_THREADS = 256;
constexpr int SIMT_LDA = SIMT_BM + 4;  // as[k][m] and bs[k][n] row stride, floats (16-byte rows)
static_assert(SIMT_BM == SIMT_BN, "as and bs share one row stride");
constexpr int SIMT_LDC = SIMT_BN + 4;

__device__ __forceinline__ void simt_f32(const LinearParams& p) {
    float* const smem = reinterpret_cast<float*>(tk::dynamic_smem());
    float* const as = smem;                         // [BK][BM + 4]: x tile, transposed
    float* const bs = smem + SIMT_BK * SIMT_LDA;    // [BK][BN + 4]: w tile, transposed
    const float* x = static_cast<const float*>(p.x);
    const float* w = static_cast<const float*>(p.w);
    const int64_t m0 = static_cast<int64_t>(blockIdx.x) * SIMT_BM;
    const int64_t n0 = static_cast<int64_t>(blockIdx.y) * SIMT_BN;
    int64_t kt0, kt1;
    slice_range(p, SIMT_BK, kt0, kt1);
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;  // 4 columns, 4 rows each

    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

    for (int64_t kt = kt0; kt < kt1; ++kt) {
        const int64_t kc0 = kt * SIMT_BK;
        // Consecutive threads read consecutive k of one row (coalesced).
        for (int e = threadIdx.x; e < SIMT_BM * SIMT_BK; e += SIMT_THREADS) {
            const int r = e / SIMT_BK, c = e % SIMT_BK;
            const int64_t row = m0 + r, col = kc0 + c;
            as[c * SIMT_LDA + r] = row < p.m && col < p.k ? x[row * p.k + col] : 0.0f;
            const int64_t wrow = n0 + r;
            bs[c * SIMT_LDA + r] = wrow < p.n && col < p.k ? w[wrow * p.k + col] : 0.0f;
        }
        __syncthreads();
        // Two-level sum: the step's 16 products in `part`, then one add to
        // `acc`. One running sum over all of k loses accuracy as k grows
        // (its rounding error grows with k, not with k / 16): measured at
        // k = 1001, 5x the CPU reference's error (8 partial sums) before
        // this, about the same after.
        float part[4][4];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) part[i][j] = 0.0f;
#pragma unroll
        for (int c = 0; c < SIMT_BK; ++c) {
            const float4 a = *reinterpret_cast<const float4*>(as + c * SIMT_LDA + ty * 4);
            const float4 b = *reinterpret_cast<const float4*>(bs + c * SIMT_LDA + tx * 4);
            const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) part[i][j] = fmaf(av[i], bv[j], part[i][j]);
        }
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[i][j] += part[i][j];
        __syncthreads();  // before the next step overwrites the tiles
    }
    float* cs = smem;  // [BM][BN + 4], after the last barrier above
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) cs[(ty * 4 + i) * SIMT_LDC + tx * 4 + j] = acc[i][j];
    __syncthreads();
    store_tile<float, SIMT_BM, SIMT_BN, SIMT_LDC, SIMT_THREADS>(p, cs, m0, n0);
}

// ---- split-K reduction ------------------------------------------------------------

// out = epilogue(sum over z of partials[z]), z in order; one 16-byte chunk
// of a row per thread step (grid-stride).
template <typename T>
__device__ __forceinline__ void linear_reduce(const LinearParams& p) {
    constexpr int W = tk::Vec16<T>::N;
    const int64_t chunks_per_row = (p.n + W - 1) / W;
    const int64_t chunks = p.m * chunks_per_row;
    const int64_t plane = p.m * p.n;
    const bool vec = epilogue_vectorized<T>(p);
    T* out = static_cast<T*>(p.out);
    for (int64_t i = tk::global_thread_index(); i < chunks; i += tk::global_thread_count()) {
        const int64_t row = i / chunks_per_row, col = i % chunks_per_row * W;
        const int width = p.n - col < W ? static_cast<int>(p.n - col) : W;
        float v[W];
#pragma unroll
        for (int j = 0; j < W; ++j) v[j] = 0.0f;
        const float* src = p.partials + row * p.n + col;
        for (int z = 0; z < p.splits; ++z)
#pragma unroll
            for (int j = 0; j < W; ++j)
                if (j < width) v[j] += src[z * plane + j];
        if (vec) {
            finish_store16<T>(p, v, row, col);
        } else {
#pragma unroll
            for (int j = 0; j < W; ++j)
                if (j < width)
                    out[row * p.n + col + j] = tk::from_f32<T>(finish<T>(p, v[j], row, col + j));
        }
    }
}

}  // namespace

// ---- entry points ---------------------------------------------------------------

#define TK_LINEAR_TC(TILE, NAME, T)                                                    \
    extern "C" __global__ void __launch_bounds__(TILE::THREADS, TILE::MIN_BLOCKS)     \
        linear_tc_##NAME(LinearParams p) {                                             \
        linear_tc<T, TILE, true>(p);                                                   \
    }                                                                                  \
    extern "C" __global__ void __launch_bounds__(TILE::THREADS, TILE::MIN_BLOCKS)     \
        linear_tc_##NAME##_unaligned(LinearParams p) {                                 \
        linear_tc<T, TILE, false>(p);                                                  \
    }

TK_LINEAR_TC(Tile128x256, 128x256x32_bf16, __nv_bfloat16)
TK_LINEAR_TC(Tile128x256, 128x256x32_f16, __half)
TK_LINEAR_TC(Tile128x128, 128x128x32_bf16, __nv_bfloat16)
TK_LINEAR_TC(Tile128x128, 128x128x32_f16, __half)
TK_LINEAR_TC(Tile64x64, 64x64x32_bf16, __nv_bfloat16)
TK_LINEAR_TC(Tile64x64, 64x64x32_f16, __half)
TK_LINEAR_TC(Tile16x64, 16x64x64_bf16, __nv_bfloat16)
TK_LINEAR_TC(Tile16x64, 16x64x64_f16, __half)

extern "C" __global__ void __launch_bounds__(SIMT_THREADS) linear_simt_f32(LinearParams p) {
    simt_f32(p);
}

extern "C" __global__ void __launch_bounds__(256) linear_reduce_f32(LinearParams p) {
    linear_reduce<float>(p);
}
extern "C" __global__ void __launch_bounds__(256) linear_reduce_f16(LinearParams p) {
    linear_reduce<__half>(p);
}
extern "C" __global__ void __launch_bounds__(256) linear_reduce_bf16(LinearParams p) {
    linear_reduce<__nv_bfloat16>(p);
}
