// Storage dtype conversion on the device: dst[i] = round_to_D(float(src[i])).
//
// Used to upload checkpoint weights stored in one dtype (f32 / f16 / bf16)
// and run the model in another. Going through f32 is exact for the widening
// step, so f16 -> bf16 rounds once, like the CPU reference
// (`cpu::convert`, which uses the `half` crate's round-to-nearest-even).
//
// Launch: 1-D grid-stride loop, 256 threads per block, any grid size; one
// element per thread per iteration (memory-bound; no vectorisation needed
// for a once-per-load conversion).
//
// Symbols: convert_<src>_to_<dst>, for every ordered pair of distinct dtypes.

#include "params.h"
#include "tk/convert.cuh"
#include "tk/vector.cuh"

namespace {

template <typename S, typename D>
__device__ void convert_impl(const ConvertParams& p) {
    const S* __restrict__ src = static_cast<const S*>(p.src);
    D* __restrict__ dst = static_cast<D*>(p.dst);
    for (int64_t i = tk::global_thread_index(); i < p.n; i += tk::global_thread_count()) {
        dst[i] = tk::from_f32<D>(tk::to_f32<S>(src[i]));
    }
}

}  // namespace

#define TK_CONVERT(SNAME, S, DNAME, D)                                                 \
    extern "C" __global__ void __launch_bounds__(256) convert_##SNAME##_to_##DNAME( \
        ConvertParams p) {                                                             \
        convert_impl<S, D>(p);                                                         \
    }

TK_CONVERT(f32, float, f16, __half)
TK_CONVERT(f32, float, bf16, __nv_bfloat16)
TK_CONVERT(f16, __half, f32, float)
TK_CONVERT(f16, __half, bf16, __nv_bfloat16)
TK_CONVERT(bf16, __nv_bfloat16, f32, float)
TK_CONVERT(bf16, __nv_bfloat16, f16, __half)
