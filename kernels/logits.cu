// The end of a decoder step, fused: from the output-projection logits of
// each row (one row per sentence and beam) to what greedy and beam search
// need, in one launch per step:
//
//   score[v]     = logits[v] + final_logits_bias[v]    (f32; -inf at v = pad_id)
//   lse          = max + log(sum_v exp(score[v] - max))  (f32, online over the row)
//   log_probs[v] = score[v] - lse                       (optional output, f32)
//   topk         = the k largest scores, best first, ties to the lower id,
//                  returned as ids and log-probabilities (k = 1: greedy argmax)
//
// The bias add is CASES.md D1 (non-zero for multilingual opus-mt models);
// the pad column is masked before normalising (Marian never generates pad:
// HF bad_words_ids = [[pad_token_id]]). Beam search takes k = 2 * num_beams
// per row; the best 2 * num_beams of a sentence's num_beams * vocab
// candidates are among the union of its rows' top-k (HF `generate`).
// A row whose every score is -inf gets lse = -inf and log-probabilities -inf
// (never NaN).
//
// Masks: besides the pad column, a [vocab] byte mask of every row and a
// [rows, vocab] byte mask per row (the search's processors: bad words,
// min_length's EOS ban, the forced-EOS step) make ids -inf. With
// mask_after_normalise = 0 they are -inf before normalising (the op's
// original order, above). With 1 they follow Hugging Face `generate`, which
// the model's Backend::log_softmax_topk specifies: the log-softmax is over
// the raw row (masked ids included; a NaN or +inf anywhere makes the row
// NaN, as torch.log_softmax), then masked ids rank -inf and report -inf,
// without renormalising.
//
// Non-finite scores (the same rules as the CPU reference, src/cpu/logits.rs):
// - NaN anywhere in a row's scores (the pad column excepted: it is masked
//   before it is read) makes every log-probability of that row NaN, top-k
//   included: a broken row is never passed off as a finite distribution.
//   The top-k order ranks NaN above every number (as torch.topk and
//   torch.argmax do), NaN ids by lower id, so the ids name the NaN entries
//   first; the remaining ranks follow the numbers as usual.
// - n >= 1 scores at +inf (and no NaN): the limit of log-softmax as those n
//   scores grow together, i.e. log_probs = -ln(n) at each +inf entry and
//   -inf elsewhere (lse = +inf). Naively, exp(inf - inf) = NaN would poison
//   the sum and inf - inf = NaN the entry's own log-probability; the online
//   pair instead counts the +inf entries (exp(x - m) is taken as 1 when
//   x == m), so s is n exactly when m = +inf.
//
// Variants: logits_topk<K>_<dtype>, K = 1, 8, 32 (the compile-time maximum
// of k; the wrapper takes the smallest K >= k), dtype f32/f16/bf16 storage of
// logits and bias.
//
// Launch: one 256-thread block per row (grid = rows). When the row (and the
// bias) is 16-byte aligned (row 0 always; every row when vocab * sizeof(T)
// is a multiple of 16) thread t reads the 16-byte chunks t, t + 256, ...
// with 128-bit loads, two in flight, and the tail past the last whole chunk
// element by element; a misaligned row (odd vocabularies such as 58101 make
// most rows misaligned) is read element by element, t, t + 256, ..., eight
// loads in flight. Few rows (a greedy step of one sentence) leave the loop
// latency-bound, hence the loads in flight. Each thread keeps an online
// (max, sum of exp) pair and, in registers, its own best K (value, id)
// pairs sorted by insertion. The block merges the pairs by a shuffle +
// shared-memory reduction, then selects the k best by k rounds of block
// argmax over the threads' current heads (the winner pops its head): every
// element of the global top-k is in its thread's top-K, so k <= K rounds
// are exact. A second pass (L2-resident row) writes log_probs when asked.
// Vocabularies of any size (64k and beyond) run in this one launch.

#include <math_constants.h>

#include "params.h"
#include "tk/convert.cuh"
#include "tk/vector.cuh"

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
// Elements each thread loads before using any of them (scalar path).
constexpr int kUnroll = 8;
// 16-byte chunks each thread loads before using any of them (vector path).
constexpr int kVecUnroll = 2;

// The order of candidates: NaN first (above every number, as torch.topk
// ranks it), then larger score, then lower id (also among NaNs). Id -1 (as
// unsigned, the largest) marks an empty slot (-inf), worse than any real
// entry.
__device__ __forceinline__ bool better(float v1, int32_t i1, float v2, int32_t i2) {
    const bool n1 = isnan(v1);
    const bool n2 = isnan(v2);
    if (n1 != n2) return n1;
    if (n1 || v1 == v2) return static_cast<uint32_t>(i1) < static_cast<uint32_t>(i2);
    return v1 > v2;
}

// exp(x - m) for x <= m, with x == m counted as 1 so that +inf entries
// under a +inf maximum count instead of giving exp(inf - inf) = NaN.
// Never called with x == m == -inf (those contribute nothing).
__device__ __forceinline__ float exp_below(float x, float m) {
    return x == m ? 1.0f : expf(x - m);
}

// Online log-sum-exp pair: (running max m, sum of exp(x - m)); s = NaN once
// a NaN score was seen (sticky through every merge).
__device__ __forceinline__ void lse_merge(float& m, float& s, float m2, float s2) {
    const float mx = fmaxf(m, m2);
    if (isnan(s) || isnan(s2)) {
        m = mx;
        s = CUDART_NAN_F;
        return;
    }
    if (mx == -CUDART_INF_F) {
        m = mx;
        s = 0.0f;
        return;
    }
    s = s * exp_below(m, mx) + s2 * exp_below(m2, mx);
    m = mx;
}

// The row's log-softmax at score x from the merged pair (m, s) and
// lse = m + ln s: NaN for a NaN row, -inf everywhere for a row of only -inf,
// -ln(n) at the n entries of +inf (else -inf) when m = +inf, x - lse
// otherwise.
__device__ __forceinline__ float log_prob(float x, float m, float s, float lse) {
    if (isnan(lse)) return CUDART_NAN_F;
    if (lse == -CUDART_INF_F) return -CUDART_INF_F;
    if (m == CUDART_INF_F) return x == CUDART_INF_F ? -logf(s) : -CUDART_INF_F;
    return x - lse;
}

// Block-wide argmax under `better`; every thread gets the winner.
__device__ __forceinline__ void block_argmax(float& v, int32_t& i, float* sv, int32_t* si) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int32_t oi = __shfl_xor_sync(0xffffffffu, i, o);
        if (better(ov, oi, v, i)) {
            v = ov;
            i = oi;
        }
    }
    const int lane = threadIdx.x & 31;
    __syncthreads();  // the previous round may still read sv / si
    if (lane == 0) {
        sv[threadIdx.x >> 5] = v;
        si[threadIdx.x >> 5] = i;
    }
    __syncthreads();
    v = lane < kWarps ? sv[lane] : -CUDART_INF_F;
    i = lane < kWarps ? si[lane] : -1;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int32_t oi = __shfl_xor_sync(0xffffffffu, i, o);
        if (better(ov, oi, v, i)) {
            v = ov;
            i = oi;
        }
    }
}

// One thread's view of its share of a row: the online (max, sum of exp)
// pair and its best K (score, id) pairs, sorted, best first.
template <int K>
struct RowState {
    float m = -CUDART_INF_F;
    float s = 0.0f;
    float cv[K];
    int32_t ci[K];

    __device__ __forceinline__ RowState() {
#pragma unroll
        for (int j = 0; j < K; ++j) {
            cv[j] = -CUDART_INF_F;
            ci[j] = -1;
        }
    }

    // Takes token id with score x for the normaliser and score r for the
    // ranking (the same unless masks apply after normalising), in any order:
    // the result does not depend on it beyond the rounding of the sum.
    __device__ __forceinline__ void consume(float x, float r, int32_t id) {
        if (isnan(x)) {
            s = CUDART_NAN_F;  // sticky: the whole row's log-probs become NaN
        } else if (x > m) {
            // m < x, so m - x is -inf or finite negative: exp(-inf) = 0 on
            // the first element and when x = +inf follows a finite maximum.
            s = s * expf(m - x) + 1.0f;
            m = x;
        } else if (x > -CUDART_INF_F) {
            s += exp_below(x, m);
        }
        if (better(r, id, cv[K - 1], ci[K - 1])) {
            cv[K - 1] = r;
            ci[K - 1] = id;
#pragma unroll
            for (int j = K - 1; j > 0; --j) {
                if (better(cv[j], ci[j], cv[j - 1], ci[j - 1])) {
                    const float tv = cv[j];
                    const int32_t ti = ci[j];
                    cv[j] = cv[j - 1];
                    ci[j] = ci[j - 1];
                    cv[j - 1] = tv;
                    ci[j - 1] = ti;
                }
            }
        }
    }
};

// The masks of one row: the pad column, the every-row byte mask and the
// row's own byte mask (see LogitsParams), and when they apply.
struct RowMask {
    int64_t pad;
    const uint8_t* every;
    const uint8_t* row;
    bool after;

    __device__ __forceinline__ bool masked(int64_t v) const {
        return v == pad || (every != nullptr && every[v] != 0) || (row != nullptr && row[v] != 0);
    }

    // Feeds score x of id v to the state: masked ids are -inf in the
    // ranking, and in the normaliser too unless masks apply after it.
    template <int K>
    __device__ __forceinline__ void feed(RowState<K>& st, float x, int64_t v) const {
        const float r = masked(v) ? -CUDART_INF_F : x;
        st.consume(after ? x : r, r, static_cast<int32_t>(v));
    }

    // The score that ranks (and whose log-probability is reported).
    __device__ __forceinline__ float ranked(float x, int64_t v) const {
        return masked(v) ? -CUDART_INF_F : x;
    }
};

template <typename T>
__device__ __forceinline__ float raw_score(const T* row, const T* bias, int64_t v) {
    float x = tk::to_f32<T>(row[v]);
    if (bias != nullptr) x += tk::to_f32<T>(bias[v]);
    return x;
}

template <typename T, int K>
__device__ __forceinline__ void logits_impl(const LogitsParams& p) {
    __shared__ float s_m[kWarps];
    __shared__ float s_s[kWarps];
    __shared__ float s_v[kWarps];
    __shared__ int32_t s_i[kWarps];

    const int64_t row_idx = blockIdx.x;
    if (row_idx >= p.rows) return;
    const T* row = static_cast<const T*>(p.logits) + row_idx * p.row_stride;
    const T* bias = static_cast<const T*>(p.bias);
    const int64_t V = p.vocab;

    const RowMask mask{p.pad_id, p.token_mask,
                       p.row_mask != nullptr ? p.row_mask + row_idx * V : nullptr,
                       p.mask_after_normalise != 0};
    RowState<K> st;
    int64_t scalar_from = 0;

    // Aligned row (always row 0; every row when vocab * sizeof(T) is a
    // multiple of 16): whole 16-byte chunks by 128-bit loads, kVecUnroll
    // chunks in flight per thread. Chunk c covers ids c*W .. c*W + W - 1,
    // so the bias chunk is aligned too.
    constexpr int W = tk::Vec16<T>::N;
    if (tk::aligned16(row) && (bias == nullptr || tk::aligned16(bias))) {
        const int64_t n_chunks = V / W;
        for (int64_t c0 = threadIdx.x; c0 < n_chunks;
             c0 += static_cast<int64_t>(kThreads) * kVecUnroll) {
            float xs[kVecUnroll][W];
#pragma unroll
            for (int u = 0; u < kVecUnroll; ++u) {
                const int64_t c = c0 + static_cast<int64_t>(u) * kThreads;
                if (c < n_chunks) {
                    tk::load16_f32<T>(row + c * W, xs[u]);
                    if (bias != nullptr) {
                        float b[W];
                        tk::load16_f32<T>(bias + c * W, b);
#pragma unroll
                        for (int w = 0; w < W; ++w) xs[u][w] += b[w];
                    }
                }
            }
#pragma unroll
            for (int u = 0; u < kVecUnroll; ++u) {
                const int64_t c = c0 + static_cast<int64_t>(u) * kThreads;
                if (c >= n_chunks) break;
#pragma unroll
                for (int w = 0; w < W; ++w) {
                    mask.feed(st, xs[u][w], c * W + w);
                }
            }
        }
        scalar_from = n_chunks * W;
    }

    // The rest (the tail past the last whole chunk, or a misaligned row)
    // element by element, kUnroll independent loads in flight per thread
    // before any is used: with few rows the loop is latency-bound.
    for (int64_t base = scalar_from + threadIdx.x; base < V;
         base += static_cast<int64_t>(kThreads) * kUnroll) {
        float xs[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int64_t v = base + static_cast<int64_t>(u) * kThreads;
            xs[u] = v < V ? raw_score<T>(row, bias, v) : -CUDART_INF_F;
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int64_t v = base + static_cast<int64_t>(u) * kThreads;
            if (v >= V) break;
            mask.feed(st, xs[u], v);
        }
    }
    float m = st.m, s = st.s;

    // Row log-sum-exp: warp merge, then across warps.
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
        const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
        lse_merge(m, s, m2, s2);
    }
    const int lane = threadIdx.x & 31;
    if (lane == 0) {
        s_m[threadIdx.x >> 5] = m;
        s_s[threadIdx.x >> 5] = s;
    }
    __syncthreads();
    m = -CUDART_INF_F;
    s = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) lse_merge(m, s, s_m[w], s_s[w]);
    // NaN row: NaN; only -inf: -inf; m = +inf: +inf (m + ln n), or NaN
    // when masks apply after normalising (torch.log_softmax: inf - inf).
    const float lse = isnan(s) || (mask.after && m == CUDART_INF_F)
                          ? CUDART_NAN_F
                          : (m == -CUDART_INF_F ? -CUDART_INF_F : m + logf(s));

    // Top-k: k rounds of block argmax over the threads' heads.
    const int k = p.k < K ? p.k : K;
    for (int r = 0; r < k; ++r) {
        float wv = st.cv[0];
        int32_t wi = st.ci[0];
        block_argmax(wv, wi, s_v, s_i);
        if (threadIdx.x == 0) {
            p.topk_ids[row_idx * p.k + r] = wi;
            p.topk_log_probs[row_idx * p.k + r] = log_prob(wv, m, s, lse);
        }
        if (wi != -1 && st.ci[0] == wi) {
#pragma unroll
            for (int j = 0; j < K - 1; ++j) {
                st.cv[j] = st.cv[j + 1];
                st.ci[j] = st.ci[j + 1];
            }
            st.cv[K - 1] = -CUDART_INF_F;
            st.ci[K - 1] = -1;
        }
    }

    if (p.log_probs != nullptr) {
        float* lp = p.log_probs + row_idx * V;
        for (int64_t v = threadIdx.x; v < V; v += kThreads) {
            lp[v] = log_prob(mask.ranked(raw_score<T>(row, bias, v), v), m, s, lse);
        }
    }
}

}  // namespace

#define TK_LOGITS(KV, NAME, T)                                                      \
    extern "C" __global__ void __launch_bounds__(kThreads) logits_topk##KV##_##NAME( \
        LogitsParams p) {                                                           \
        logits_impl<T, KV>(p);                                                      \
    }

TK_LOGITS(1, f32, float)
TK_LOGITS(1, f16, __half)
TK_LOGITS(1, bf16, __nv_bfloat16)
TK_LOGITS(8, f32, float)
TK_LOGITS(8, f16, __half)
TK_LOGITS(8, bf16, __nv_bfloat16)
TK_LOGITS(32, f32, float)
TK_LOGITS(32, f16, __half)
TK_LOGITS(32, bf16, __nv_bfloat16)
