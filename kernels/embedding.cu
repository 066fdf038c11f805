// Token embedding + sinusoidal positions, fused: the input of the encoder
// and of every decoder step (Marian / Hugging Face
// MarianSinusoidalPositionalEmbedding):
//
//   out[t, c] = table[ids[t], c] * scale + P(pos_t, c),  pos_t = offset + t % seq_len
//
// P is not interleaved: with n_sin = ceil(d_model / 2), column c < n_sin is
// sin(pos * 10000^(-2c / d_model)) and column n_sin + k is
// cos(pos * 10000^(-2k / d_model)) (first half sin, second half cos;
// CASES.md D4). `scale` is sqrt(d_model) when config.scale_embedding.
//
// Positions are computed, not read from a table. The op is memory-bound:
// per element it reads one table entry and writes one output (4 bytes for
// bf16); a precomputed f32 position table would add 4 bytes, doubling the
// traffic, while the computation costs a few dozen ALU instructions per
// element that overlap the loads. (Prediction from the roofline; no GPU run
// has measured it yet, see BENCHMARKS.md.) The angle is formed and reduced
// to [-pi, pi] in f64 (inverse frequency once per thread and column, then
// one multiply and one fused reduction per element), and sin/cos of the
// reduced angle are taken in f32 by the SFU (__sincosf, absolute error
// <= 2^-21.4 on [-pi, pi]): within ~5e-7 of the f64 reference at any
// position, where an f32 angle would lose ~pos * 2^-24.
//
// Variants: embedding_<dtype>, dtype f32/f16/bf16 (storage of table and out).
// Launch: 256-thread blocks of 8 warps; warp w of the grid handles tokens
// w, w + n_warps, ...; lane l handles the 16-byte chunks l, l + 32, ... of
// the row (outer loop, so the inverse frequencies are computed once per
// chunk and reused for every token of the warp). A chunk is one 128-bit load
// and store when the table and output rows are 16-byte aligned (d_model a
// multiple of the vector width), else element by element. An id outside
// [0, vocab) writes a row of NaN instead of reading out of bounds (the safe
// wrapper rejects such ids before launch).

#include "params.h"
#include "tk/convert.cuh"
#include "tk/vector.cuh"

namespace {

constexpr int kWarps = 8;

template <typename T>
__device__ __forceinline__ void embedding_impl(const EmbeddingParams& p) {
    constexpr int W = tk::Vec16<T>::N;
    const T* table = static_cast<const T*>(p.table);
    T* out = static_cast<T*>(p.out);
    const int64_t D = p.d_model;
    const int64_t n_sin = (D + 1) / 2;
    const int64_t n_chunks = (D + W - 1) / W;
    const bool vec = D % W == 0 && tk::aligned16(table) && tk::aligned16(out);
    const int lane = threadIdx.x & 31;
    const int64_t first = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
    const int64_t stride = static_cast<int64_t>(gridDim.x) * kWarps;
    // Read at run time when given: a replayed decode step's parameters are fixed.
    const int64_t position0 = p.position_device != nullptr ? static_cast<int64_t>(*p.position_device) : p.position_offset;
    // ln(10000) and 2*pi in f64.
    const double kLn10000 = 9.210340371976184;
    const double kTwoPi = 6.283185307179586;
    const double kInvTwoPi = 0.15915494309189535;

    for (int64_t c = lane; c < n_chunks; c += 32) {
        const int64_t e0 = c * W;
        double inv_freq[W];
        bool is_sin[W];
#pragma unroll
        for (int w = 0; w < W; ++w) {
            const int64_t e = e0 + w;
            is_sin[w] = e < n_sin;
            const int64_t k = is_sin[w] ? e : e - n_sin;
            inv_freq[w] = exp(-static_cast<double>(2 * k) / static_cast<double>(D) * kLn10000);
        }
        for (int64_t t = first; t < p.tokens; t += stride) {
            const int32_t id = p.ids[t];
            const double pos = static_cast<double>(position0 + t % p.seq_len);
            T* orow = out + t * D;
            const bool id_ok = id >= 0 && id < p.vocab;
            const T* trow = table + (id_ok ? static_cast<int64_t>(id) : 0) * D;
            float emb[W];
            const bool full = e0 + W <= D;
            if (vec && full) {
                tk::load16_f32<T>(trow + e0, emb);
            } else {
#pragma unroll
                for (int w = 0; w < W; ++w)
                    emb[w] = e0 + w < D ? tk::to_f32<T>(trow[e0 + w]) : 0.0f;
            }
            float y[W];
#pragma unroll
            for (int w = 0; w < W; ++w) {
                const double angle = pos * inv_freq[w];
                const double reduced = fma(-kTwoPi, rint(angle * kInvTwoPi), angle);
                // |reduced| <= pi: the SFU's __sincosf is within 2^-21.4
                // absolute there, and needs no slow-path argument reduction.
                float s, co;
                __sincosf(static_cast<float>(reduced), &s, &co);
                // __fmul_rn: no FMA contraction, so the product rounds as in the reference.
                y[w] = id_ok ? __fmul_rn(emb[w], p.scale) + (is_sin[w] ? s : co)
                             : __int_as_float(0x7fc00000);
            }
            if (vec && full) {
                tk::store16_from_f32<T>(orow + e0, y);
            } else {
#pragma unroll
                for (int w = 0; w < W; ++w)
                    if (e0 + w < D) orow[e0 + w] = tk::from_f32<T>(y[w]);
            }
        }
    }
}

}  // namespace

#define TK_EMBEDDING(NAME, T)                                                             \
    extern "C" __global__ void __launch_bounds__(256) embedding_##NAME(EmbeddingParams p) { \
        embedding_impl<T>(p);                                                             \
    }

TK_EMBEDDING(f32, float)
TK_EMBEDDING(f16, __half)
TK_EMBEDDING(bf16, __nv_bfloat16)
