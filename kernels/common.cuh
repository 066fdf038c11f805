// Shared device helpers: dtype conversion to and from f32, grid-stride
// indexing in 64-bit, and (added by later kernels) vector loads/stores and
// warp/block reductions. Everything here is header-only and inlined.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "params.h"

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

// First index and stride of a 1-D grid-stride loop, in 64-bit so that
// tensors past 2^31 elements index correctly.
__device__ __forceinline__ int64_t global_thread_index() {
    return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t global_thread_count() {
    return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

}  // namespace tk
