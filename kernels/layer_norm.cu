// Residual add + LayerNorm, fused: the output of every post-LN Transformer
// sublayer (Marian / opus-mt, `normalize_before = false`):
//
//   h   = x + residual                      (f32 add of the widened inputs)
//   out = (h - mean(h)) / sqrt(var(h) + eps) * gamma + beta
//
// with the biased variance var(h) = mean((h - mean)^2) (PyTorch nn.LayerNorm,
// Ba et al. 2016). Fusing the add saves one full write + read of the
// [tokens, d_model] activation per sublayer; the op is memory-bound.
//
// Statistics are f32 whatever the storage dtype, two-pass over the row held
// in registers (never E[h^2] - E[h]^2), and every pass works on h - h[0]
// rather than h: the mean is kept as m = mean(h - h[0]) and centred values
// as (h - h[0]) - m, never as h - (h[0] + m). The shift makes the mean
// exact for a constant row (which therefore gives exactly beta, never NaN,
// also in f16 with eps 1e-5) and keeps the rounding of the mean relative to
// the row's spread, not to its magnitude (CASES.md C1: rows of 40000 +
// small, or 100 + 0.01 noise). Rounding h[0] + m to f32 first, as this
// kernel once did, costs half an ulp of the magnitude (3.8e-6 at 100):
// a relative error of 3.6e-4 on rows of spread 0.01, found by the SIMT
// emulator's first run of the C1 test.
//
// Variants (symbol layer_norm_residual_<variant>_<dtype>, dtype f32/f16/bf16):
//   warp:  one warp per row, 4 rows per 128-thread block; hidden <= 1024
//          (512 and 1024, the model widths, take this path);
//   block: one 256-thread block per row; hidden <= 8192.
// Each thread keeps up to 32 f32 values of its row in registers, so the row
// is read from global memory exactly once and written once.
//
// Memory access: the row is cut into 16-byte chunks (4 x f32, 8 x f16/bf16);
// thread t of a group owns chunks t, t + G, t + 2G, ... (G = group size), so
// every warp-wide access is contiguous. A chunk is loaded / stored with one
// 128-bit access (LDG.E.128, checked in tests/kernel_static_checks.rs) when
// the row's x, residual, out and gamma, beta are 16-byte aligned and the
// chunk lies inside the row; the partial last chunk (hidden not a multiple
// of the vector width) and every chunk of a misaligned row go element by
// element. Rows misalign when hidden * sizeof(T) is not a multiple of 16.
//
// Launch: grid-stride over rows; grid = min(ceil(rows / rows_per_block), cap).
// `out` may be exactly `x` or `residual`: a group reads its whole row before
// the reductions that precede its first store.

#include "params.h"
#include "tk/convert.cuh"
#include "tk/reduce.cuh"
#include "tk/vector.cuh"

namespace {

// f32 values of a row that each thread keeps in registers.
constexpr int kMaxPerThread = 32;

// Normalises rows with groups of G threads, ROWS_PER_BLOCK groups per block.
template <typename T, int G, int ROWS_PER_BLOCK>
__device__ __forceinline__ void layer_norm_impl(const LayerNormParams& p) {
    constexpr int W = tk::Vec16<T>::N;
    constexpr int CH = kMaxPerThread / W;  // chunks per thread
    constexpr int NWARPS = G / 32;
    static_assert(G % 32 == 0, "a group is whole warps");
    static_assert(kMaxPerThread % W == 0, "register row holds whole chunks");
    static_assert(ROWS_PER_BLOCK == 1 || G == 32, "multi-group blocks are warp groups");
    __shared__ float scratch[NWARPS];

    const T* x = static_cast<const T*>(p.x);
    const T* res = static_cast<const T*>(p.residual);
    const T* gamma = static_cast<const T*>(p.gamma);
    const T* beta = static_cast<const T*>(p.beta);
    T* out = static_cast<T*>(p.out);
    const int64_t H = p.hidden;
    const bool has_res = res != nullptr;
    const bool params_aligned = tk::aligned16(gamma) && tk::aligned16(beta);
    const int tid = threadIdx.x % G;
    const int group = threadIdx.x / G;
    const float inv_h = 1.0f / static_cast<float>(H);

    for (int64_t row = static_cast<int64_t>(blockIdx.x) * ROWS_PER_BLOCK + group; row < p.rows;
         row += static_cast<int64_t>(gridDim.x) * ROWS_PER_BLOCK) {
        const T* xr = x + row * H;
        const T* rr = has_res ? res + row * H : nullptr;
        T* orow = out + row * H;
        const bool vec = params_aligned && tk::aligned16(xr) && tk::aligned16(orow) &&
                         (!has_res || tk::aligned16(rr));
        // The shift: h[0], read by every thread of the group (one broadcast load).
        const float shift = tk::to_f32<T>(xr[0]) + (has_res ? tk::to_f32<T>(rr[0]) : 0.0f);

        // Load h - shift (h = x + residual) and sum it (pass 1). Elements
        // past the row end hold 0, so they add nothing.
        float v[CH][W];
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < CH; ++j) {
            const int64_t e0 = (static_cast<int64_t>(j) * G + tid) * W;
            if (vec && e0 + W <= H) {
                tk::load16_f32<T>(xr + e0, v[j]);
                if (has_res) {
                    float r[W];
                    tk::load16_f32<T>(rr + e0, r);
#pragma unroll
                    for (int w = 0; w < W; ++w) v[j][w] += r[w];
                }
#pragma unroll
                for (int w = 0; w < W; ++w) {
                    v[j][w] -= shift;
                    s += v[j][w];
                }
            } else {
#pragma unroll
                for (int w = 0; w < W; ++w) {
                    const int64_t e = e0 + w;
                    float h = 0.0f;
                    if (e < H) {
                        h = tk::to_f32<T>(xr[e]);
                        if (has_res) h += tk::to_f32<T>(rr[e]);
                        h -= shift;
                    }
                    v[j][w] = h;
                    s += h;
                }
            }
        }

        // Pass 1 (summed while loading): m = sum(h - shift) / H, the mean
        // relative to the shift (h - shift is exact when h is within a
        // factor 2 of shift).
        s = NWARPS == 1 ? tk::warp_sum(s) : tk::block_sum<NWARPS>(s, scratch);
        const float mean = s * inv_h;

        // Pass 2: var = sum((h - shift - m)^2) / H over the elements of the row.
        float q = 0.0f;
#pragma unroll
        for (int j = 0; j < CH; ++j) {
            const int64_t e0 = (static_cast<int64_t>(j) * G + tid) * W;
#pragma unroll
            for (int w = 0; w < W; ++w) {
                const float d = v[j][w] - mean;
                q += (e0 + w < H) ? d * d : 0.0f;
            }
        }
        q = NWARPS == 1 ? tk::warp_sum(q) : tk::block_sum<NWARPS>(q, scratch);
        const float rstd = 1.0f / sqrtf(q * inv_h + p.eps);

        // Normalise, scale, shift, store.
#pragma unroll
        for (int j = 0; j < CH; ++j) {
            const int64_t e0 = (static_cast<int64_t>(j) * G + tid) * W;
            if (vec && e0 + W <= H) {
                float g[W], b[W], y[W];
                tk::load16_f32<T>(gamma + e0, g);
                tk::load16_f32<T>(beta + e0, b);
#pragma unroll
                for (int w = 0; w < W; ++w) y[w] = (v[j][w] - mean) * rstd * g[w] + b[w];
                tk::store16_from_f32<T>(orow + e0, y);
            } else {
#pragma unroll
                for (int w = 0; w < W; ++w) {
                    const int64_t e = e0 + w;
                    if (e < H) {
                        const float y = (v[j][w] - mean) * rstd * tk::to_f32<T>(gamma[e]) +
                                        tk::to_f32<T>(beta[e]);
                        orow[e] = tk::from_f32<T>(y);
                    }
                }
            }
        }
    }
}

}  // namespace

// Warp per row: hidden <= 32 * kMaxPerThread = 1024.
#define TK_LN_WARP(NAME, T)                                                                   \
    extern "C" __global__ void __launch_bounds__(128) layer_norm_residual_warp_##NAME(       \
        LayerNormParams p) {                                                                  \
        layer_norm_impl<T, 32, 4>(p);                                                         \
    }
// Block per row: hidden <= 256 * kMaxPerThread = 8192.
#define TK_LN_BLOCK(NAME, T)                                                                  \
    extern "C" __global__ void __launch_bounds__(256) layer_norm_residual_block_##NAME(      \
        LayerNormParams p) {                                                                  \
        layer_norm_impl<T, 256, 1>(p);                                                        \
    }

TK_LN_WARP(f32, float)
TK_LN_WARP(f16, __half)
TK_LN_WARP(bf16, __nv_bfloat16)
TK_LN_BLOCK(f32, float)
TK_LN_BLOCK(f16, __half)
TK_LN_BLOCK(bf16, __nv_bfloat16)
