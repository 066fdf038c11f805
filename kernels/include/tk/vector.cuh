// Memory access shared by the memory-bound kernels: 64-bit grid-stride
// indexing, the 16-byte alignment test, and 16-byte vector loads / stores
// that widen to and round from f32 (through tk/convert.cuh). One 16-byte
// access per thread step (LDG.E.128 / STG.E.128 in SASS, checked by
// tests/kernel_static_checks.rs) is what lets these kernels approach copy
// bandwidth; the helpers live here so that every kernel gets the same
// access pattern.
#pragma once

#include <stdint.h>

#include "tk/convert.cuh"

namespace tk {

// First index and stride of a 1-D grid-stride loop, in 64-bit so that
// tensors past 2^31 elements index correctly.
__device__ __forceinline__ int64_t global_thread_index() {
    return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t global_thread_count() {
    return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

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

// Rounds Vec16<T>::N f32 values to T, packed as one 16-byte chunk.
template <typename T>
__device__ __forceinline__ uint4 pack16_from_f32(const float (&in)[Vec16<T>::N]) {
    uint4 raw;
    T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int i = 0; i < Vec16<T>::N; ++i) e[i] = from_f32<T>(in[i]);
    return raw;
}

// Rounds Vec16<T>::N f32 values to T and stores them at `p` (16-byte aligned).
template <typename T>
__device__ __forceinline__ void store16_from_f32(T* p, const float (&in)[Vec16<T>::N]) {
    *reinterpret_cast<uint4*>(p) = pack16_from_f32<T>(in);
}

}  // namespace tk
