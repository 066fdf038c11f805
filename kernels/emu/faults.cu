// Deliberately broken kernels, compiled only into the SIMT emulator (build/
// emu.rs; nvcc never sees this file): each has one bug of a kind real
// kernels have had, and src/cuda/runtime/emu.rs's tests check that the
// emulator catches every one, so that its checks cannot rot. Each kernel
// also has a correct twin (`emu_ok_*`) the emulator must pass.
//
// Launch: one block of 64 threads (two warps), n <= 64 unless noted.

#include "params.h"
#include "tk/smem.cuh"

namespace {

// Block sum of one value per thread through `scratch` (two warps).
__device__ float block_sum_64(float v, float* scratch, bool sync_before_reuse) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (sync_before_reuse) __syncthreads();  // a previous call may still read scratch
    if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
    __syncthreads();
    return scratch[0] + scratch[1];
}

}  // namespace

// Correct: out[i] = in[i] for i < n (grid-stride).
extern "C" __global__ void emu_ok_copy(EmuFaultParams p) {
    for (int64_t i = threadIdx.x; i < p.n; i += blockDim.x) p.out[i] = p.in[i];
}

// Off-by-one tail: `<=` writes out[n], one past the end.
extern "C" __global__ void emu_fault_off_by_one(EmuFaultParams p) {
    for (int64_t i = threadIdx.x; i <= p.n; i += blockDim.x) p.out[i] = 1.0f;
}

// Out-of-bounds read: in[i + 1] reads one past the end for the last element.
extern "C" __global__ void emu_fault_oob_read(EmuFaultParams p) {
    for (int64_t i = threadIdx.x; i < p.n; i += blockDim.x) p.out[i] = p.in[i + 1];
}

// Correct: out[t] = sum(in) + sum(2 in) for every thread t, the two block
// sums sharing one scratch.
extern "C" __global__ void emu_ok_two_sums(EmuFaultParams p) {
    __shared__ float scratch[2];
    const float a = block_sum_64(p.in[threadIdx.x], scratch, true);
    const float b = block_sum_64(2.0f * p.in[threadIdx.x], scratch, true);
    p.out[threadIdx.x] = a + b;
}

// Missing __syncthreads before the scratch is reused: a fast warp
// overwrites scratch while the other still reads the first sum.
extern "C" __global__ void emu_fault_missing_sync(EmuFaultParams p) {
    __shared__ float scratch[2];
    const float a = block_sum_64(p.in[threadIdx.x], scratch, false);
    const float b = block_sum_64(2.0f * p.in[threadIdx.x], scratch, false);
    p.out[threadIdx.x] = a + b;
}

// A barrier only half the block reaches.
extern "C" __global__ void emu_fault_divergent_barrier(EmuFaultParams p) {
    if (threadIdx.x < 16) __syncthreads();
    if (threadIdx.x < p.n) p.out[threadIdx.x] = p.in[threadIdx.x];
}

// A shuffle whose partner (lane ^ 16) is outside the member mask.
extern "C" __global__ void emu_fault_shuffle_outside_mask(EmuFaultParams p) {
    if (threadIdx.x % 32 >= 16) return;
    const float v = __shfl_xor_sync(0x0000ffffu, p.in[threadIdx.x], 16);
    p.out[threadIdx.x] = v;
}

// A full-warp shuffle after half of the warp has returned.
extern "C" __global__ void emu_fault_shuffle_exited_lane(EmuFaultParams p) {
    if (threadIdx.x % 32 >= 16) return;
    const float v = __shfl_xor_sync(0xffffffffu, p.in[threadIdx.x], 1);
    p.out[threadIdx.x] = v;
}

// A mask without the calling lane.
extern "C" __global__ void emu_fault_mask_without_caller(EmuFaultParams p) {
    const float v = __shfl_xor_sync(0x1u, p.in[threadIdx.x], 0);
    p.out[threadIdx.x] = v;
}

// Dynamic shared memory used past the launch's size (launched with none):
// the first store lands in the fence.
extern "C" __global__ void emu_fault_dynamic_smem_oob(EmuFaultParams p) {
    float* s = reinterpret_cast<float*>(tk::dynamic_smem());
    s[threadIdx.x] = p.in[threadIdx.x];
    __syncthreads();
    p.out[threadIdx.x] = s[threadIdx.x];
}
