/*
 * Launch-parameter structs and enums: the one ABI shared by the CUDA kernels
 * (C++) and the Rust wrappers (generated from this file by bindgen in
 * build.rs; `kernels/include/params_snapshot.rs` is the checked-in copy used
 * when libclang is absent).
 *
 * Rules: plain C, a doc comment before every field (bindgen copies it), fixed-width types, sizes and strides as int64_t, device
 * pointers as `const void*` / `void*` (typed inside the kernel by the
 * template instantiation the symbol name selects). Every kernel takes exactly
 * one of these structs by value.
 */
#ifndef TK_PARAMS_H
#define TK_PARAMS_H

#include <stdint.h>

/** Storage dtype of a tensor. Arithmetic is always f32. */
typedef enum TkDType {
    TK_DTYPE_F32 = 0,
    TK_DTYPE_F16 = 1,
    TK_DTYPE_BF16 = 2,
} TkDType;

/** convert.cu: dst[i] = round_to_dst(float(src[i])) for i in [0, n). */
typedef struct ConvertParams {
    /** Device pointer: n elements of the source dtype. */
    const void *src;
    /** Device pointer: n elements of the destination dtype; must not alias src. */
    void *dst;
    /** Number of elements, >= 0. */
    int64_t n;
} ConvertParams;

/**
 * layer_norm.cu: out = LN(x + residual) * gamma + beta over rows of `hidden`
 * elements (post-LN Transformer sublayer output), f32 statistics.
 */
typedef struct LayerNormParams {
    /** Device pointer: [rows, hidden] storage elements, row-major, contiguous. */
    const void *x;
    /** Device pointer: [rows, hidden] added to x before normalising, or NULL for plain LN. */
    const void *residual;
    /** Device pointer: [hidden] scale (LayerNorm weight). */
    const void *gamma;
    /** Device pointer: [hidden] shift (LayerNorm bias). */
    const void *beta;
    /** Device pointer: [rows, hidden] output; may be exactly x or residual (in place), must not partially overlap them. */
    void *out;
    /** Number of rows (tokens), >= 0. */
    int64_t rows;
    /** Elements per row, 1 ..= 8192 (the kernels keep a row in registers). */
    int64_t hidden;
    /** Added to the variance before the square root; > 0 (1e-5 in Marian). */
    float eps;
} LayerNormParams;

/**
 * embedding.cu: out[t] = table[ids[t]] * scale + sinusoid(position_offset + t % seq_len).
 */
typedef struct EmbeddingParams {
    /** Device pointer: [tokens] token ids (int32), row-major [batch, seq_len]. */
    const int32_t *ids;
    /** Device pointer: [vocab, d_model] embedding table (model.shared.weight). */
    const void *table;
    /** Device pointer: [tokens, d_model] output. */
    void *out;
    /** Number of ids (batch * seq_len), >= 0. */
    int64_t tokens;
    /** Tokens per sequence, >= 1: token t sits at position position_offset + t % seq_len. */
    int64_t seq_len;
    /** Model width, >= 1: elements per table and output row. */
    int64_t d_model;
    /** Rows of the table; an id outside [0, vocab) yields a row of NaN (the safe wrapper rejects it before launch). */
    int64_t vocab;
    /** Position of the first token of every sequence (the KV-cache length when decoding step by step), >= 0; unused when position_device is set. */
    int64_t position_offset;
    /**
     * Device pointer: [1] int32 position of the first token of every sequence, read when the
     * kernel runs (a decode step replayed as a CUDA graph, whose parameters are fixed), or
     * NULL to use position_offset. Must be >= 0.
     */
    const int32_t *position_device;
    /** Embedding scale: sqrt(d_model) when config.scale_embedding, else 1. */
    float scale;
} EmbeddingParams;

/**
 * logits.cu: per row, score = logits + final_logits_bias with the pad column
 * at -inf; log-softmax over the vocabulary in f32; the top-k scores.
 */
typedef struct LogitsParams {
    /** Device pointer: [rows, vocab] storage elements, row r starting at r * row_stride. */
    const void *logits;
    /** Device pointer: [vocab] final_logits_bias (storage dtype), or NULL for none. */
    const void *bias;
    /** Device pointer: [rows, vocab] f32 log-probabilities, or NULL to skip writing them. */
    float *log_probs;
    /** Device pointer: [rows, k] int32 token ids of the k best scores per row, best first (ties: lower id first). */
    int32_t *topk_ids;
    /** Device pointer: [rows, k] f32 log-probabilities of topk_ids. */
    float *topk_log_probs;
    /** Number of rows (batch * beams), >= 0. */
    int64_t rows;
    /** Vocabulary size, >= 1 (58101 for opus-mt-en-de). */
    int64_t vocab;
    /** Elements between the starts of consecutive logits rows, >= vocab. */
    int64_t row_stride;
    /** Column forced to -inf (pad_token_id), or -1 for none: before normalising, or after when mask_after_normalise. */
    int64_t pad_id;
    /** Device pointer: [vocab] bytes, nonzero = token masked (-inf) in every row, or NULL for none. */
    const uint8_t *token_mask;
    /** Device pointer: [rows, vocab] bytes, nonzero = token masked (-inf) in that row, or NULL for none. */
    const uint8_t *row_mask;
    /** Number of best tokens per row, 1 ..= the kernel's compile-time maximum and <= vocab; 1 is greedy argmax. */
    int32_t k;
    /**
     * 0: masked columns are -inf before normalising (they leave the normaliser).
     * 1: Hugging Face `generate` order: log-softmax over the unmasked row (a NaN or +inf
     * anywhere in it makes the row NaN, as torch.log_softmax), then masked columns -inf
     * in the ranking and the log-probabilities (no renormalisation).
     */
    int32_t mask_after_normalise;
} LogitsParams;

/**
 * gather_rows.cu: for every destination row r and position p < positions, the
 * row_elems units at dst + r * dst_row_stride + p * dst_pos_stride = those at
 * src + s * src_row_stride + p * src_pos_stride, s = src_rows[r] (or r when
 * src_rows is NULL). The KV cache's write (a step's k or v columns of the fused
 * QKV output into the cache), reorder (beam search's surviving rows), drop
 * (finished sentences) and growth are all this one copy with different strides.
 */
typedef struct GatherRowsParams {
    /** Device pointer: the source's first unit. */
    const void *src;
    /** Device pointer: the destination's first unit; must not overlap src. */
    void *dst;
    /** Device pointer: [rows] int32 source row of each destination row, or NULL for the identity. */
    const int32_t *src_rows;
    /** Destination rows, >= 0. */
    int64_t rows;
    /** Positions copied per row, >= 0. */
    int64_t positions;
    /** Units copied per position, >= 0. */
    int64_t row_elems;
    /** Units between consecutive source rows. */
    int64_t src_row_stride;
    /** Units between consecutive positions of a source row. */
    int64_t src_pos_stride;
    /** Units between consecutive destination rows. */
    int64_t dst_row_stride;
    /** Units between consecutive positions of a destination row. */
    int64_t dst_pos_stride;
    /**
     * Device pointer: [1] int32 n >= 0 read when the kernel runs: the destination starts n
     * positions further (dst + n * dst_pos_stride), as the KV-cache write of a decode step
     * replayed as a CUDA graph, whose parameters are fixed; or NULL for none. The caller
     * guarantees that n + positions fits the destination.
     */
    const int32_t *dst_pos_device;
} GatherRowsParams;

/** Element-wise activation of bias_activation.cu (Hugging Face activation_function names). */
typedef enum TkActivation {
    /** "relu": max(x, 0). */
    TK_ACT_RELU = 0,
    /** "gelu": exact GELU, 0.5 x (1 + erf(x / sqrt 2)). */
    TK_ACT_GELU = 1,
    /** "gelu_new" / "gelu_pytorch_tanh": 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
    TK_ACT_GELU_TANH = 2,
    /** "swish" / "silu": x * sigmoid(x). */
    TK_ACT_SWISH = 3,
} TkActivation;

/** bias_activation.cu: out[r, c] = act(x[r, c] + bias[c]). */
typedef struct BiasActivationParams {
    /** Device pointer: [rows, cols] storage elements, row-major, contiguous. */
    const void *x;
    /** Device pointer: [cols] bias, or NULL for none. */
    const void *bias;
    /** Device pointer: [rows, cols] output; may be exactly x (in place). */
    void *out;
    /** Number of rows, >= 0. */
    int64_t rows;
    /** Elements per row, >= 1. */
    int64_t cols;
} BiasActivationParams;

/**
 * linear.cu: out = act(x . w^T + bias) + residual, the projection of every
 * Transformer sublayer (PyTorch nn.Linear layout: w is [n, k]); products
 * accumulated in f32. With splits > 1 each k-slice (gridDim.z) writes its
 * f32 partial sums to `partials` and linear_reduce_<dtype> adds them in
 * slice order and applies the epilogue.
 */
typedef struct LinearParams {
    /** Device pointer: [m, k] activations, row-major, contiguous. */
    const void *x;
    /** Device pointer: [n, k] weight (out_features x in_features), row-major, contiguous. */
    const void *w;
    /** Device pointer: [n] bias, or NULL for none. */
    const void *bias;
    /** Device pointer: [m, n] added after the activation, or NULL; may be exactly out. */
    const void *residual;
    /** Device pointer: [m, n] output; must not overlap x, w or bias. */
    void *out;
    /** Device pointer: [splits, m, n] f32 partial sums when splits > 1, else NULL. */
    float *partials;
    /** Rows of x and out (tokens), >= 0. */
    int64_t m;
    /** Rows of w, columns of out (out_features), >= 0. */
    int64_t n;
    /** Columns of x and w (in_features), >= 0. */
    int64_t k;
    /** A TkActivation applied after the bias, or -1 for none. */
    int32_t activation;
    /** Number of k-slices (gridDim.z of the GEMM kernel), >= 1. */
    int32_t splits;
    /** K-steps (the kernel's BK columns) per slice: slice z covers steps [z * per, (z + 1) * per). */
    int32_t k_steps_per_split;
} LinearParams;

/**
 * attention.cu: out = softmax(Q K^T * scale + mask) V per batch row and
 * head (Vaswani et al. 2017, eq. 1), f32 softmax. Q, K, V and out are read
 * and written in place through strides (element units): head h of row b,
 * position p starts at ptr + b * batch_stride + p * pos_stride + h * head_dim,
 * so the fused QKV buffer [rows, seq, 3 d_model] and the KV cache
 * [rows, cap, d_model] need no copies. Masks: key j of row b is visible iff
 * j < min(k_len, key_lengths[b]) and, when causal, j <= k_len - q_len + i
 * for query i. A query with no visible key writes 0.
 */
typedef struct AttentionParams {
    /** Device pointer: queries (head h at column h * head_dim). */
    const void *q;
    /** Device pointer: keys. */
    const void *k;
    /** Device pointer: values. */
    const void *v;
    /** Device pointer: output [rows, q_len, heads * head_dim] through its strides; must not overlap q, k, v. */
    void *out;
    /** Device pointer: [rows] real keys per row (int32, right padding), or NULL for k_len. */
    const int32_t *key_lengths;
    /** Device pointer: split-KV partial outputs [splits, rows, heads, q_len, head_dim] f32 (unnormalised), or NULL when splits == 1. */
    float *partial_out;
    /** Device pointer: split-KV partial (running max, sum) pairs [splits, rows, heads, q_len, 2] f32, or NULL when splits == 1. */
    float *partial_ml;
    /** Batch rows, >= 0. */
    int64_t rows;
    /** Heads, >= 1. */
    int64_t heads;
    /** Query positions, >= 0. */
    int64_t q_len;
    /** Key positions used (the KV cache's filled length), >= 0. */
    int64_t k_len;
    /** Elements per head, 1 ..= 256. */
    int64_t head_dim;
    /** Elements between the starts of consecutive rows of q. */
    int64_t q_batch_stride;
    /** Elements between consecutive positions of q. */
    int64_t q_pos_stride;
    /** Elements between the starts of consecutive rows of k. */
    int64_t k_batch_stride;
    /** Elements between consecutive positions of k. */
    int64_t k_pos_stride;
    /** Elements between the starts of consecutive rows of v. */
    int64_t v_batch_stride;
    /** Elements between consecutive positions of v. */
    int64_t v_pos_stride;
    /** Elements between the starts of consecutive rows of out. */
    int64_t o_batch_stride;
    /** Elements between consecutive positions of out. */
    int64_t o_pos_stride;
    /** Multiplies Q K^T (head_dim^-0.5 in Marian). */
    float scale;
    /** Non-zero: causal mask (queries are the last q_len of the k_len positions). */
    int32_t causal;
    /** Key splits (split-KV, gridDim.x of the SIMT kernel), >= 1. */
    int32_t splits;
    /** Keys per split: split s covers keys [s * keys_per_split, (s + 1) * keys_per_split). */
    int32_t keys_per_split;
} AttentionParams;

/**
 * kernels/emu/faults.cu (emulator self-tests only, never built by nvcc):
 * deliberately broken kernels that the SIMT emulator must catch.
 */
typedef struct EmuFaultParams {
    /** Host address (emulator memory): n f32 inputs. */
    const float *in;
    /** Host address (emulator memory): n f32 outputs. */
    float *out;
    /** Number of elements, >= 0. */
    int64_t n;
} EmuFaultParams;

#endif /* TK_PARAMS_H */
