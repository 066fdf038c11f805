// Multi-head attention, fused (FlashAttention-style: the q_len x k_len score
// matrix never leaves the chip):
//
//   out[b, i, h] = sum_j softmax_j(q[b, i, h] . k[b, j, h] * scale + mask) v[b, j, h]
//
// Q, K, V and out are read and written in place through strides
// (AttentionParams: the fused QKV buffer, the KV cache, the encoder
// memory's K / V projections); the softmax runs in f32 with a running row
// maximum and sum (online softmax, Milakov & Gimelshein 2018; Dao et al.,
// FlashAttention-2, 2023), the scale applied once to the scores. Masks: key
// padding (per-row lengths) and causal with an offset (query i is position
// k_len - q_len + i); keys past a row's length are never read (zero-filled
// in shared memory) and so contribute exactly 0; a query with no visible
// key writes 0, never NaN. Non-finite inputs give NaN on every path (a
// split does not turn them into a "no visible key" 0). Within a row's
// length, keys hidden by the causal mask may be read (the tensor-core
// kernel multiplies their V rows by P = 0), so they must be finite, as
// every written KV-cache position is.
//
// Kernels (src/cuda/attention.rs picks one per call):
//
// - attention_tc_d<D>_<dtype>, D in {32, 64, 96, 128}, f16 / bf16: tensor
//   cores. One CTA per (block of 64 queries, head, row), 4 warps of 16
//   query rows. The Q tile goes to registers (ldmatrix) once; K and V tiles
//   of 64 keys stream through a two-stage cp.async buffer (rows padded by 16
//   bytes: conflict-free ldmatrix, as in linear.cu). S = Q K^T with
//   mma.sync.m16n8k16 (K stored key-major is the "col" operand as it is);
//   the masked, scaled scores update the running max / sum per row (each row
//   spread over the 4 lanes of a quad, combined by shuffles), O is rescaled,
//   P is rounded to the storage type in registers (the accumulator layout
//   of S is the A-operand layout of P, FlashAttention-2's register reuse)
//   and O += P V with V read through ldmatrix.trans. Key tiles past the
//   row's length or the causal limit of the block are skipped.
//   Needs 16-byte aligned rows (pointers and strides multiples of 8).
// - attention_simt_<dtype> (f32, f16, bf16): any head_dim up to 256, any
//   strides, and split-KV ("flash-decoding"): gridDim.x splits the keys.
//   Keys go in chunks of 128: each thread scores one key (a row of K
//   against q in shared memory), block-wide max and sum update the online
//   softmax, then each thread accumulates two elements of O over the
//   chunk's keys (V read row by row, coalesced). With one split it writes
//   out; with several, unnormalised partial outputs and their (max, sum),
//   which attention_merge_<dtype> combines by log-sum-exp. The decode path (q_len of a few, the KV cache
//   long) and the f32 path of the model; also every head_dim without a
//   tensor-core kernel.

#include "params.h"
#include "tk/convert.cuh"
#include "tk/ptx.cuh"
#include "tk/smem.cuh"

namespace {

// Keys of row b that exist: min(k_len, key_lengths[b]), at least 0.
__device__ __forceinline__ int64_t row_kv_len(const AttentionParams& p, int64_t b) {
    int64_t n = p.k_len;
    if (p.key_lengths != nullptr) {
        const int64_t l = p.key_lengths[b];
        if (l < n) n = l;
    }
    return n < 0 ? 0 : n;
}

// ---- tensor-core prefill -----------------------------------------------------

constexpr int TC_BM = 64;       // queries per CTA
constexpr int TC_BN = 64;       // keys per step
constexpr int TC_WARPS = 4;     // 16 query rows each
constexpr int TC_THREADS = TC_WARPS * 32;

template <int D>
struct TcShape {
    static_assert(D % 16 == 0 && D >= 16 && D <= 128, "head_dim: whole k16 steps, at most 128");
    static constexpr int LDS = D + 8;  // shared row stride, elements (16-byte pad)
    // Q tile, then two stages of (K tile, V tile).
    static constexpr int SMEM_BYTES = (TC_BM + 4 * TC_BN) * LDS * 2;
};

// Two f32 rounded to T, packed as one .b32 register (low half first).
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    const T a = tk::from_f32<T>(lo), b = tk::from_f32<T>(hi);
    uint16_t ua, ub;
    memcpy(&ua, &a, 2);
    memcpy(&ub, &b, 2);
    return uint32_t(ua) | (uint32_t(ub) << 16);
}

// `rows` rows of D elements from `src` (row r at src + r * stride) into the
// shared tile `dst` (row stride LDS) with 16-byte cp.async; rows >= valid
// are zero-filled without reading.
template <typename T, int D, int ROWS>
__device__ __forceinline__ void load_rows(T* dst, const T* src, int64_t stride, int64_t valid) {
    constexpr int LDS = TcShape<D>::LDS, CHUNKS = D / 8;
    for (int c = threadIdx.x; c < ROWS * CHUNKS; c += TC_THREADS) {
        const int r = c / CHUNKS, col = c % CHUNKS * 8;
        const bool inside = r < valid;
        tk::cp_async_16(dst + r * LDS + col, inside ? src + r * stride + col : src, inside ? 16 : 0);
    }
}

template <typename T, int D>
__device__ __forceinline__ void attention_tc(const AttentionParams& p) {
    constexpr int LDS = TcShape<D>::LDS;
    constexpr int KD = D / 16;  // k16 steps over head_dim (S = Q K^T)
    constexpr int ND = D / 8;   // n8 tiles over head_dim (O)
    constexpr int NK = TC_BN / 8;  // n8 tiles over the keys of a step (S)
    T* const q_s = reinterpret_cast<T*>(tk::dynamic_smem());  // [BM][LDS]
    T* const kv_s = q_s + TC_BM * LDS;                         // [2][K, V][BN][LDS]

    const int64_t b = blockIdx.z, h = blockIdx.y;
    const int64_t q0 = static_cast<int64_t>(blockIdx.x) * TC_BM;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, t4 = lane % 4;
    const T* q = static_cast<const T*>(p.q) + b * p.q_batch_stride + h * D;
    const T* k = static_cast<const T*>(p.k) + b * p.k_batch_stride + h * D;
    const T* v = static_cast<const T*>(p.v) + b * p.v_batch_stride + h * D;
    T* out = static_cast<T*>(p.out) + b * p.o_batch_stride + h * D;

    const int64_t kv_len = row_kv_len(p, b);
    const int64_t offset = p.k_len - p.q_len;  // absolute position of query 0
    int64_t key_end = kv_len;
    if (p.causal) {
        const int64_t q_last = (q0 + TC_BM < p.q_len ? q0 + TC_BM : p.q_len) - 1;
        const int64_t limit = offset + q_last + 1;
        if (limit < key_end) key_end = limit;
    }
    const int n_tiles = key_end > 0 ? static_cast<int>((key_end + TC_BN - 1) / TC_BN) : 0;

    auto load_kv = [&](int tile, int stage) {
        const int64_t j0 = static_cast<int64_t>(tile) * TC_BN;
        T* ks = kv_s + stage * 2 * TC_BN * LDS;
        load_rows<T, D, TC_BN>(ks, k + j0 * p.k_pos_stride, p.k_pos_stride, kv_len - j0);
        load_rows<T, D, TC_BN>(ks + TC_BN * LDS, v + j0 * p.v_pos_stride, p.v_pos_stride,
                               kv_len - j0);
    };

    if (n_tiles > 0) {
        load_rows<T, D, TC_BM>(q_s, q + q0 * p.q_pos_stride, p.q_pos_stride, p.q_len - q0);
        load_kv(0, 0);
    }
    tk::cp_async_commit();

    uint32_t qf[KD][4];
    float o[ND][4];
#pragma unroll
    for (int j = 0; j < ND; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[j][e] = 0.0f;
    // Rows g and g + 8 of the warp's 16: running max (-inf: no key yet) and
    // this lane's part of the running sum (the quad's parts add up at the end).
    float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};
    const int64_t row0 = q0 + warp * 16 + g;  // query index of row g

    for (int tile = 0; tile < n_tiles; ++tile) {
        // The next tile goes to the stage the previous one used; every warp
        // left it at the barrier that ended the previous iteration.
        if (tile + 1 < n_tiles) load_kv(tile + 1, (tile + 1) & 1);
        tk::cp_async_commit();
        tk::cp_async_wait<1>();  // this tile's group (and Q's) has landed
        __syncthreads();
        if (tile == 0) {
#pragma unroll
            for (int kk = 0; kk < KD; ++kk) {
                const int r = warp * 16 + lane % 16, c = kk * 16 + lane / 16 * 8;
                tk::ldmatrix_x4(qf[kk], q_s + r * LDS + c);
            }
        }
        const T* ks = kv_s + (tile & 1) * 2 * TC_BN * LDS;
        const T* vs = ks + TC_BN * LDS;

        // S = Q K^T for the 64 keys of this tile.
        float s[NK][4];
#pragma unroll
        for (int j = 0; j < NK; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) s[j][e] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KD; ++kk) {
#pragma unroll
            for (int j = 0; j < NK; j += 2) {
                // (keys 0-7, d 0-7), (keys 0-7, d 8-15), (keys 8-15, d 0-7), (keys 8-15, d 8-15).
                const int r = j * 8 + lane % 8 + lane / 16 * 8;
                const int c = kk * 16 + lane / 8 % 2 * 8;
                uint32_t f[4];
                tk::ldmatrix_x4(f, ks + r * LDS + c);
                const uint32_t b0[2] = {f[0], f[1]}, b1[2] = {f[2], f[3]};
                tk::mma_m16n8k16_acc<T>(s[j], qf[kk], b0);
                tk::mma_m16n8k16_acc<T>(s[j + 1], qf[kk], b1);
            }
        }

        // Mask and scale; the tile's row maxima.
        const int64_t j0 = static_cast<int64_t>(tile) * TC_BN;
        float m_tile[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int j = 0; j < NK; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int half = e / 2;
                const int64_t key = j0 + j * 8 + 2 * t4 + (e & 1);
                const int64_t query = row0 + 8 * half;
                const bool visible = key < kv_len && (!p.causal || key <= offset + query);
                s[j][e] = visible ? s[j][e] * p.scale : -INFINITY;
                m_tile[half] = fmaxf(m_tile[half], s[j][e]);
            }
        float alpha[2], m_use[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            m_tile[r] = fmaxf(m_tile[r], __shfl_xor_sync(0xffffffffu, m_tile[r], 1));
            m_tile[r] = fmaxf(m_tile[r], __shfl_xor_sync(0xffffffffu, m_tile[r], 2));
            const float m_new = fmaxf(m_run[r], m_tile[r]);
            // No visible key yet: exponentiate against 0 (every p is 0 anyway).
            m_use[r] = m_new == -INFINITY ? 0.0f : m_new;
            alpha[r] = expf(m_run[r] - m_use[r]);  // exp(-inf) = 0 on the first key
            m_run[r] = m_new;
            l_run[r] *= alpha[r];
        }
#pragma unroll
        for (int j = 0; j < ND; ++j) {
            o[j][0] *= alpha[0];
            o[j][1] *= alpha[0];
            o[j][2] *= alpha[1];
            o[j][3] *= alpha[1];
        }
#pragma unroll
        for (int j = 0; j < NK; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const float pe = expf(s[j][e] - m_use[e / 2]);  // masked: exp(-inf) = 0
                s[j][e] = pe;
                l_run[e / 2] += pe;
            }

        // O += P V: P's k16 step kk is S's n8 tiles 2 kk and 2 kk + 1.
#pragma unroll
        for (int kk = 0; kk < TC_BN / 16; ++kk) {
            const uint32_t a[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]),
                                   pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                                   pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                   pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int j = 0; j < ND; j += 2) {
                // V is [key][d] (k-major for this product): .trans gives the
                // b fragments of d-tiles j, j + 1: (keys 0-7 | 8-15) x (d 0-7 | 8-15).
                const int r = kk * 16 + lane % 8 + lane / 8 % 2 * 8;
                const int c = j * 8 + lane / 16 * 8;
                uint32_t f[4];
                tk::ldmatrix_x4_trans(f, vs + r * LDS + c);
                const uint32_t b0[2] = {f[0], f[1]}, b1[2] = {f[2], f[3]};
                tk::mma_m16n8k16_acc<T>(o[j], a, b0);
                tk::mma_m16n8k16_acc<T>(o[j + 1], a, b1);
            }
        }
        __syncthreads();  // every warp is done with this stage
    }
    tk::cp_async_wait_all();

    // out = O / l (0 for a query with no visible key).
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 1);
        l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 2);
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int64_t query = row0 + 8 * r;
        if (query >= p.q_len) continue;
        // l == 0: no visible key (0 out); a NaN l (NaN or inf in the
        // inputs) stays NaN.
        const float inv = l_run[r] != 0.0f ? 1.0f / l_run[r] : 0.0f;
        T* dst = out + query * p.o_pos_stride;
#pragma unroll
        for (int j = 0; j < ND; ++j) {
            const int c = j * 8 + 2 * t4;
            dst[c] = tk::from_f32<T>(o[j][2 * r] * inv);
            dst[c + 1] = tk::from_f32<T>(o[j][2 * r + 1] * inv);
        }
    }
}

// ---- SIMT path (any head_dim, any dtype, split-KV) -------------------------------

constexpr int SIMT_THREADS = 128;   // keys per chunk, and lanes over head_dim
constexpr int SIMT_MAX_D = 256;     // head_dim <= 256: two elements per thread
// Shared floats: q (head_dim), the chunk's scores, 4 per-warp partials.
constexpr int SIMT_SMEM_BYTES = (SIMT_MAX_D + SIMT_THREADS + 4) * 4;

// Block-wide max or sum of one float per thread (4 warps); every thread
// gets the result. `red` holds 4 floats; the trailing barrier lets the
// caller reuse it.
template <bool MAX>
__device__ __forceinline__ float block_reduce(float x, float* red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float y = __shfl_xor_sync(0xffffffffu, x, o);
        x = MAX ? fmaxf(x, y) : x + y;
    }
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = x;
    __syncthreads();
    const float r = MAX ? fmaxf(fmaxf(red[0], red[1]), fmaxf(red[2], red[3]))
                        : (red[0] + red[1]) + (red[2] + red[3]);
    __syncthreads();
    return r;
}

template <typename T>
__device__ __forceinline__ void attention_simt(const AttentionParams& p) {
    float* const smem = reinterpret_cast<float*>(tk::dynamic_smem());
    float* const q_s = smem;                        // [head_dim], f32
    float* const sc_s = smem + SIMT_MAX_D;          // [128] scores, then probabilities
    float* const red = sc_s + SIMT_THREADS;         // [4]
    const int64_t split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int t = threadIdx.x;
    const int64_t dh = p.head_dim;
    const T* q = static_cast<const T*>(p.q) + b * p.q_batch_stride + h * dh;
    const T* k = static_cast<const T*>(p.k) + b * p.k_batch_stride + h * dh;
    const T* v = static_cast<const T*>(p.v) + b * p.v_batch_stride + h * dh;
    const int64_t kv_len = row_kv_len(p, b);
    const int64_t offset = p.k_len - p.q_len;
    const int64_t s0 = split * p.keys_per_split;
    int64_t s1 = s0 + p.keys_per_split;
    if (s1 > kv_len) s1 = kv_len;
    const int64_t plane = p.rows * p.heads * p.q_len;

    for (int64_t i = 0; i < p.q_len; ++i) {
        int64_t end = s1;
        if (p.causal && offset + i + 1 < end) end = offset + i + 1;
        for (int64_t d = t; d < dh; d += SIMT_THREADS) q_s[d] = tk::to_f32<T>(q[i * p.q_pos_stride + d]);
        __syncthreads();
        float m = -INFINITY, l = 0.0f;  // uniform over the block
        float acc[SIMT_MAX_D / SIMT_THREADS] = {0.0f, 0.0f};  // O[d] for d = t, t + 128
        for (int64_t c0 = s0; c0 < end; c0 += SIMT_THREADS) {
            // Scores: thread t takes key c0 + t (a whole row of K).
            const int64_t j = c0 + t;
            float sc = -INFINITY;
            if (j < end) {
                const T* kj = k + j * p.k_pos_stride;
                float dot = 0.0f;
                for (int64_t d = 0; d < dh; ++d) dot = fmaf(q_s[d], tk::to_f32<T>(kj[d]), dot);
                sc = dot * p.scale;
            }
            const float m_new = fmaxf(m, block_reduce<true>(sc, red));
            const float alpha = expf(m - m_new);  // 0 on the first chunk (m = -inf)
            const float pj = expf(sc - m_new);    // 0 for keys past the end
            sc_s[t] = pj;
            l = l * alpha + block_reduce<false>(pj, red);  // its barriers publish sc_s
            m = m_new;
            // O: thread t takes elements d = t, t + 128 over the chunk's keys.
            const int n = end - c0 < SIMT_THREADS ? static_cast<int>(end - c0) : SIMT_THREADS;
#pragma unroll
            for (int e = 0; e < SIMT_MAX_D / SIMT_THREADS; ++e) {
                const int64_t d = t + e * SIMT_THREADS;
                if (d >= dh) continue;
                float x = acc[e] * alpha;
                for (int jj = 0; jj < n; ++jj)
                    x = fmaf(sc_s[jj], tk::to_f32<T>(v[(c0 + jj) * p.v_pos_stride + d]), x);
                acc[e] = x;
            }
            __syncthreads();  // before the next chunk overwrites sc_s
        }
        const int64_t row = (b * p.heads + h) * p.q_len + i;  // (b, h, i)
        if (p.splits > 1) {
#pragma unroll
            for (int e = 0; e < SIMT_MAX_D / SIMT_THREADS; ++e) {
                const int64_t d = t + e * SIMT_THREADS;
                if (d < dh) p.partial_out[(split * plane + row) * dh + d] = acc[e];
            }
            if (t == 0) {
                p.partial_ml[2 * (split * plane + row)] = m;
                p.partial_ml[2 * (split * plane + row) + 1] = l;
            }
        } else {
            T* dst = static_cast<T*>(p.out) + b * p.o_batch_stride + i * p.o_pos_stride + h * dh;
            const float inv = l != 0.0f ? 1.0f / l : 0.0f;  // NaN stays NaN
#pragma unroll
            for (int e = 0; e < SIMT_MAX_D / SIMT_THREADS; ++e) {
                const int64_t d = t + e * SIMT_THREADS;
                if (d < dh) dst[d] = tk::from_f32<T>(acc[e] * inv);
            }
        }
        __syncthreads();  // before the next query overwrites q_s
    }
}

// out = sum_s O_s e^(m_s - M) / sum_s l_s e^(m_s - M), M = max_s m_s, over
// the splits in order; 0 when no split saw a key. One thread per output element.
template <typename T>
__device__ __forceinline__ void attention_merge(const AttentionParams& p) {
    const int64_t dh = p.head_dim;
    const int64_t plane = p.rows * p.heads * p.q_len;
    const int64_t n = plane * dh;
    for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
         e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t row = e / dh, d = e % dh;
        float mx = -INFINITY;
        for (int s = 0; s < p.splits; ++s) mx = fmaxf(mx, p.partial_ml[2 * (s * plane + row)]);
        // A split that saw no key has (m, l) = (-inf, 0) and weight 0; any
        // other pair with m = -inf, or a NaN, comes from NaN / inf in the
        // inputs and must stay NaN (as with one split), not read as masked.
        float num = 0.0f, den = 0.0f;
        for (int s = 0; s < p.splits; ++s) {
            const float ms = p.partial_ml[2 * (s * plane + row)];
            const float ls = p.partial_ml[2 * (s * plane + row) + 1];
            const float f = ms == -INFINITY ? (ls == 0.0f ? 0.0f : NAN) : expf(ms - mx);
            den += ls * f;
            num += p.partial_out[(s * plane + row) * dh + d] * f;
        }
        const int64_t i = row % p.q_len, bh = row / p.q_len;
        const int64_t h = bh % p.heads, b = bh / p.heads;
        T* dst = static_cast<T*>(p.out) + b * p.o_batch_stride + i * p.o_pos_stride + h * dh;
        dst[d] = tk::from_f32<T>(den != 0.0f ? num / den : 0.0f);  // NaN stays NaN
    }
}

}  // namespace

// ---- entry points ----------------------------------------------------------------

#define TK_ATTN_TC(D, NAME, T)                                                       \
    extern "C" __global__ void __launch_bounds__(TC_THREADS)                        \
        attention_tc_d##D##_##NAME(AttentionParams p) {                              \
        attention_tc<T, D>(p);                                                       \
    }
TK_ATTN_TC(32, bf16, __nv_bfloat16)
TK_ATTN_TC(32, f16, __half)
TK_ATTN_TC(64, bf16, __nv_bfloat16)
TK_ATTN_TC(64, f16, __half)
TK_ATTN_TC(96, bf16, __nv_bfloat16)
TK_ATTN_TC(96, f16, __half)
TK_ATTN_TC(128, bf16, __nv_bfloat16)
TK_ATTN_TC(128, f16, __half)

#define TK_ATTN_SIMT(NAME, T)                                                        \
    extern "C" __global__ void __launch_bounds__(SIMT_THREADS)                      \
        attention_simt_##NAME(AttentionParams p) {                                   \
        attention_simt<T>(p);                                                        \
    }                                                                                \
    extern "C" __global__ void __launch_bounds__(256) attention_merge_##NAME(AttentionParams p) { \
        attention_merge<T>(p);                                                       \
    }
TK_ATTN_SIMT(f32, float)
TK_ATTN_SIMT(f16, __half)
TK_ATTN_SIMT(bf16, __nv_bfloat16)
