// SIMT emulator: what a kernel source sees when build.rs compiles it as host
// C++17 (g++, `-include emu.h`, TK_EMU defined) instead of with nvcc. The
// kernel files stay unmodified CUDA C++; this header supplies the CUDA
// built-ins they use, and kernels/emu/runtime.cpp executes them:
//
// - every CUDA thread is a fiber (a ucontext with its own stack); the blocks
//   of a launch run one after another on the launching OS thread, the
//   threads of a block interleaved cooperatively by the scheduler;
// - threadIdx / blockIdx / blockDim / gridDim read the current fiber's and
//   launch's values;
// - __syncthreads() is a block barrier: a thread waits until every thread of
//   its block has arrived; a barrier that some thread of the block never
//   reaches (it exited, or waits elsewhere) is an error naming the kernel,
//   the block and the threads, not a hang;
// - warp collectives (__shfl*_sync, __ballot_sync, __any/__all_sync,
//   __syncwarp) wait for every lane their member mask names; a mask without
//   the calling lane, naming a lane that has exited or waits elsewhere, or a
//   shuffle source outside the mask, is an error;
// - `__shared__` variables become function-local statics: one copy per
//   template instantiation, shared by the threads of the running block
//   (launches are serialised process-wide, so no two blocks share it at once).
//
// Device intrinsics get host definitions with the same contract (not the
// same rounding: `__expf`-style fast paths are computed by the host libm).
#pragma once

#define TK_EMU 1

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

// ---- qualifiers -------------------------------------------------------------
#undef __launch_bounds__
#define __launch_bounds__(...)
#undef __shared__
#define __shared__ static
#ifndef __global__
#define __global__
#endif
#ifndef __device__
#define __device__
#endif
#ifndef __forceinline__
#define __forceinline__ inline __attribute__((always_inline))
#endif

namespace tk_emu {

// A CUDA dim3 / uint3 as the built-ins expose it.
struct Dim3 {
    unsigned x, y, z;
};

// The running launch (launches are serialised; one at a time per process).
extern Dim3 g_grid_dim, g_block_dim, g_block_idx;

// The running fiber's threadIdx.
const Dim3& thread_idx();

// Block barrier of the calling thread.
void syncthreads();

// Warp barrier over the lanes of `mask` (the calling lane must be in it).
void syncwarp(unsigned mask);

// Warp exchange: every lane of `mask` publishes `value`, then reads the
// value lane `src` published. `src` must be in `mask`. `what` names the
// collective for error messages.
uint64_t exchange(unsigned mask, uint64_t value, int src, const char* what);

// Warp vote: every lane of `mask` publishes `pred`; returns the ballot of
// the lanes of `mask`.
unsigned ballot(unsigned mask, bool pred, const char* what);

// The calling thread's lane (0..31).
int lane_id();

// The launch's dynamic shared memory (shared_mem_bytes of the launch,
// 128-byte aligned, poison 0xFF at the start of each block, fenced).
void* dynamic_smem();

// ---- tensor-core and async-copy instructions (ptx.cuh's emulated twins) ----
// cp.async: `bytes` at `dst` are poisoned (0xFF) at issue; `src_bytes` of
// `src` (the rest zero) land only when the issuing thread waits for the
// copy's group, so a read of a stage before its wait reads poison (NaN).
void cp_async(void* dst, const void* src, int bytes, int src_bytes);
// Closes the group of copies issued since the last commit.
void cp_async_commit();
// Lands every copy of the groups older than the `n` most recent committed
// ones; `n < 0`: every copy, committed or not (cp.async.wait_all).
void cp_async_wait(int n);
// ldmatrix.sync.aligned.m8n8.x{count}[.trans].shared.b16 (full warp).
void ldmatrix(uint32_t* r, int count, bool trans, const void* smem);
// mma.sync.aligned.m16n8k16.row.col.f32.{bf16|f16}.{bf16|f16}.f32 (full warp).
void mma_m16n8k16(float* d, const uint32_t* a, const uint32_t* b, const float* c, bool bf16);

template <typename T>
inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8, "a warp shuffle moves at most 8 bytes");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof(T));
    return b;
}

template <typename T>
inline T from_bits(uint64_t b) {
    T v;
    memcpy(&v, &b, sizeof(T));
    return v;
}

// Source lane of a shuffle within segments of `width` lanes (PTX shfl.sync
// semantics as the CUDA intrinsics define them).
inline int shfl_src_idx(int lane, int src, int width) {
    return (lane & ~(width - 1)) + (src & (width - 1));
}

}  // namespace tk_emu

#define threadIdx (::tk_emu::thread_idx())
#define blockIdx (::tk_emu::g_block_idx)
#define blockDim (::tk_emu::g_block_dim)
#define gridDim (::tk_emu::g_grid_dim)

inline void __syncthreads() { ::tk_emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::tk_emu::syncwarp(mask); }

template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    const int s = ::tk_emu::shfl_src_idx(::tk_emu::lane_id(), src, width);
    return ::tk_emu::from_bits<T>(
        ::tk_emu::exchange(mask, ::tk_emu::to_bits(v), s, "__shfl_sync"));
}

template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    const int lane = ::tk_emu::lane_id();
    int s = lane ^ lane_mask;
    // A source in a later segment of `width` lanes reads the lane's own
    // value; earlier segments may be read (CUDA Programming Guide, warp
    // shuffle functions).
    if (s >= (lane & ~(width - 1)) + width) s = lane;
    return ::tk_emu::from_bits<T>(
        ::tk_emu::exchange(mask, ::tk_emu::to_bits(v), s, "__shfl_xor_sync"));
}

template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    const int lane = ::tk_emu::lane_id();
    int s = lane + static_cast<int>(delta);
    if ((s & ~(width - 1)) != (lane & ~(width - 1))) s = lane;
    return ::tk_emu::from_bits<T>(
        ::tk_emu::exchange(mask, ::tk_emu::to_bits(v), s, "__shfl_down_sync"));
}

template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    const int lane = ::tk_emu::lane_id();
    int s = lane - static_cast<int>(delta);
    if (s < (lane & ~(width - 1))) s = lane;
    return ::tk_emu::from_bits<T>(
        ::tk_emu::exchange(mask, ::tk_emu::to_bits(v), s, "__shfl_up_sync"));
}

inline unsigned __ballot_sync(unsigned mask, int pred) {
    return ::tk_emu::ballot(mask, pred != 0, "__ballot_sync");
}
inline int __any_sync(unsigned mask, int pred) {
    return ::tk_emu::ballot(mask, pred != 0, "__any_sync") != 0;
}
inline int __all_sync(unsigned mask, int pred) {
    return ::tk_emu::ballot(mask, pred != 0, "__all_sync") == mask;
}

// ---- intrinsics -------------------------------------------------------------
inline float __int_as_float(int i) { return ::tk_emu::from_bits<float>(static_cast<uint32_t>(i)); }
inline int __float_as_int(float f) { return static_cast<int>(static_cast<uint32_t>(::tk_emu::to_bits(f))); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline void __sincosf(float x, float* s, float* c) {
    *s = sinf(x);
    *c = cosf(x);
}
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
template <typename T>
inline T __ldg(const T* p) {
    return *p;
}
// Blocks run one at a time and their threads cooperatively: a plain
// read-modify-write is atomic here.
template <typename T>
inline T atomicAdd(T* p, T v) {
    T old = *p;
    *p = old + v;
    return old;
}
template <typename T>
inline T atomicMax(T* p, T v) {
    T old = *p;
    *p = old < v ? v : old;
    return old;
}
