// Numeric conversion between the storage dtypes (f32, f16, bf16) and the f32
// every kernel computes in: to_f32 widens (exact for every storage dtype),
// from_f32 rounds to nearest even (as half::f16::from_f32 /
// half::bf16::from_f32 do in the CPU reference): kernels widen on load and
// round once, on their store. The one place that knows the storage dtypes'
// conversion intrinsics; tk/vector.cuh builds its widening loads and
// rounding stores on it.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace tk {

// Widen a storage element to f32 (exact for every storage dtype).
template <typename T> __device__ __forceinline__ float to_f32(T x);
template <> __device__ __forceinline__ float to_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ float to_f32<__half>(__half x) { return __half2float(x); }
template <> __device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 x) {
    return __bfloat162float(x);
}

// Round an f32 to a storage element, round-to-nearest-even (as half::f16/bf16::from_f32).
template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

}  // namespace tk
