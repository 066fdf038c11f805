// Warp and block reductions in f32 (the precision of every statistic the
// kernels keep, whatever the storage dtype), built on the __shfl_xor_sync
// intrinsic: a butterfly, so every lane ends with the result. Reductions
// that carry more than one value (logits.cu's online (max, sum) pair and
// its (value, id) argmax) stay beside their kernel. A shuffle that needs
// inline PTX beyond the intrinsics belongs in tk/ptx.cuh, not here.
#pragma once

namespace tk {

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
