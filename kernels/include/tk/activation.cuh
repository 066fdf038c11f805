// The activations of the feed-forward sublayer (Hugging Face ACT2FN names,
// TkActivation in params.h), in f32 with the accurate libdevice erff /
// tanhf / expf (no fast-math intrinsics):
//   relu       max(h, 0)
//   gelu       0.5 h (1 + erf(h / sqrt 2))   (exact form: HF "gelu" = torch GELU)
//   gelu_tanh  0.5 h (1 + tanh(sqrt(2/pi) (h + 0.044715 h^3)))   ("gelu_new")
//   swish      h / (1 + exp(-h))              ("swish" / "silu"; opus-mt)
// Shared by bias_activation.cu (ACT a template parameter) and linear.cu's
// epilogue (ACT chosen at run time, a uniform branch per element).
#pragma once

#include <math.h>

#include "params.h"

namespace tk {

template <int ACT>
__device__ __forceinline__ float activate(float h) {
    if (ACT == TK_ACT_RELU) return fmaxf(h, 0.0f);
    if (ACT == TK_ACT_GELU) return 0.5f * h * (1.0f + erff(h * 0.70710678118654752f));
    if (ACT == TK_ACT_GELU_TANH) {
        const float c = 0.79788456080286536f;  // sqrt(2 / pi)
        return 0.5f * h * (1.0f + tanhf(c * (h + 0.044715f * h * h * h)));
    }
    // swish; for h << 0, exp(-h) = inf and the quotient is -0.
    return h / (1.0f + expf(-h));
}

// `act` a TkActivation, or any other value (TK_ACT_NONE) for the identity.
__device__ __forceinline__ float activate_dynamic(int act, float h) {
    switch (act) {
        case TK_ACT_RELU: return activate<TK_ACT_RELU>(h);
        case TK_ACT_GELU: return activate<TK_ACT_GELU>(h);
        case TK_ACT_GELU_TANH: return activate<TK_ACT_GELU_TANH>(h);
        case TK_ACT_SWISH: return activate<TK_ACT_SWISH>(h);
        default: return h;
    }
}

}  // namespace tk
