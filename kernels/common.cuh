// Shared device helpers: dtype conversion to and from f32, grid-stride
// indexing in 64-bit, 16-byte vector loads/stores and warp/block
// reductions. Everything here is header-only and inlined.
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


// ---- vector loads / stores ------------------------------------------------
// A 16-byte chunk of storage elements: 4 x f32 or 8 x f16 / bf16. Loaded and
// stored through `uint4` so that the compiler emits one 128-bit global access
// (LDG.E.128 / STG.E.128); the caller guarantees 16-byte alignment.
template <typename T> struct Vec16 {
    static constexpr int N = 16 / static_cast<int>(sizeof(T));
    static_assert(16 % sizeof(T) == 0, "storage element must divide 16 bytes");
};

// True when `p` is 16-byte aligned (the condition for a Vec16 access).
__device__ __forceinline__ bool aligned16(const void* p) {
    return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// Loads Vec16<T>::N elements at `p` (16-byte aligned) and widens them to f32.
template <typename T>
__device__ __forceinline__ void load16_f32(const T* p, float (&out)[Vec16<T>::N]) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < Vec16<T>::N; ++i) out[i] = to_f32<T>(e[i]);
}

// Rounds Vec16<T>::N f32 values to T and stores them at `p` (16-byte aligned).
template <typename T>
__device__ __forceinline__ void store16_from_f32(T* p, const float (&in)[Vec16<T>::N]) {
    uint4 raw;
    T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int i = 0; i < Vec16<T>::N; ++i) e[i] = from_f32<T>(in[i]);
    *reinterpret_cast<uint4*>(p) = raw;
}

// ---- warp / block reductions (f32) ----------------------------------------
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over a block of NWARPS full warps; every thread gets the result.
// `scratch` is NWARPS floats of shared memory; the function may be called
// repeatedly with the same scratch (it synchronises before reuse).
template <int NWARPS>
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    static_assert(NWARPS >= 1 && NWARPS <= 32, "block of 1..32 warps");
    v = warp_sum(v);
    if (NWARPS == 1) return v;
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    __syncthreads();  // a previous call may still be reading scratch
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = lane < NWARPS ? scratch[lane] : 0.0f;
    return warp_sum(t);
}

}  // namespace tk
