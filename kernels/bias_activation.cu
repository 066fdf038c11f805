// Bias add + activation, fused: the middle of the feed-forward sublayer,
// act(fc1(x)), for the paths where the GEMM epilogue does not fuse it:
//
//   out[r, c] = act(x[r, c] + bias[c])      (f32 arithmetic, one rounding to T)
//
// act is the config's activation_function (Hugging Face ACT2FN names):
// relu, gelu (erf form), gelu_tanh, swish, as tk/activation.cuh defines them
// (accurate libdevice erff / tanhf / expf, no fast-math intrinsics).
//
// Variants: bias_activation_<act>_<dtype>, act relu/gelu/gelu_tanh/swish,
// dtype f32/f16/bf16; the activation is a template parameter, chosen by the
// symbol (no per-element switch).
//
// Launch: 1-D grid-stride loop, 256 threads per block. When x, out and bias
// are 16-byte aligned and cols is a multiple of the vector width, each
// thread step handles one 16-byte chunk (128-bit load and store); otherwise
// one element. `out` may be exactly `x` (in place).

#include "params.h"
#include "tk/activation.cuh"
#include "tk/convert.cuh"
#include "tk/vector.cuh"

namespace {

template <typename T, int ACT>
__device__ __forceinline__ void bias_activation_impl(const BiasActivationParams& p) {
    constexpr int W = tk::Vec16<T>::N;
    const T* x = static_cast<const T*>(p.x);
    const T* bias = static_cast<const T*>(p.bias);
    T* out = static_cast<T*>(p.out);
    const int64_t cols = p.cols;
    const int64_t n = p.rows * cols;
    const bool vec = cols % W == 0 && tk::aligned16(x) && tk::aligned16(out) &&
                     (bias == nullptr || tk::aligned16(bias));
    if (vec) {
        for (int64_t i = tk::global_thread_index(); i < n / W; i += tk::global_thread_count()) {
            const int64_t e0 = i * W;
            const int64_t c0 = e0 % cols;
            float v[W];
            tk::load16_f32<T>(x + e0, v);
            if (bias != nullptr) {
                float b[W];
                tk::load16_f32<T>(bias + c0, b);
#pragma unroll
                for (int w = 0; w < W; ++w) v[w] += b[w];
            }
#pragma unroll
            for (int w = 0; w < W; ++w) v[w] = tk::activate<ACT>(v[w]);
            tk::store16_from_f32<T>(out + e0, v);
        }
    } else {
        for (int64_t e = tk::global_thread_index(); e < n; e += tk::global_thread_count()) {
            float h = tk::to_f32<T>(x[e]);
            if (bias != nullptr) h += tk::to_f32<T>(bias[e % cols]);
            out[e] = tk::from_f32<T>(tk::activate<ACT>(h));
        }
    }
}

}  // namespace

#define TK_BIAS_ACT(ANAME, ACT, NAME, T)                                      \
    extern "C" __global__ void __launch_bounds__(256)                         \
        bias_activation_##ANAME##_##NAME(BiasActivationParams p) {            \
        bias_activation_impl<T, ACT>(p);                                      \
    }

#define TK_BIAS_ACT_ALL_DTYPES(ANAME, ACT)              \
    TK_BIAS_ACT(ANAME, ACT, f32, float)                 \
    TK_BIAS_ACT(ANAME, ACT, f16, __half)                \
    TK_BIAS_ACT(ANAME, ACT, bf16, __nv_bfloat16)

TK_BIAS_ACT_ALL_DTYPES(relu, TK_ACT_RELU)
TK_BIAS_ACT_ALL_DTYPES(gelu, TK_ACT_GELU)
TK_BIAS_ACT_ALL_DTYPES(gelu_tanh, TK_ACT_GELU_TANH)
TK_BIAS_ACT_ALL_DTYPES(swish, TK_ACT_SWISH)
