// Every inline PTX of the project lives in this header, as named
// __device__ functions; no kernel writes `asm` itself. The reason is the
// CPU-side SIMT emulator (kernels/emu/, next): it runs the same kernel
// sources as host C++ and must give each PTX instruction an emulated twin.
// With all of them here it has exactly one file to mirror, and a wrapper
// added here without its twin is easy to spot in review.
//
// Each wrapper cites the PTX ISA section (NVIDIA "Parallel Thread
// Execution ISA", 9.0 for CUDA 13.0) that defines the instruction and, for
// the warp-collective ones, its fragment layout: which lane holds which
// matrix element. An emulated twin must reproduce that layout exactly, and
// a kernel indexes its fragments by it. Notation in the layout comments:
// lane = threadIdx.x % 32, g = lane / 4 (the "groupID"), t = lane % 4 (the
// "threadID_in_group"); a .b32 register holds two 16-bit elements, the
// lower-indexed one in its low half.
//
// The wrappers: cp.async (global -> shared, asynchronous, zero fill),
// ldmatrix (shared -> mma fragments), mma.sync m16n8k16 with f32
// accumulation (used by the tensor-core GEMM, kernels/linear.cu, and by
// fused attention, kernels/attention.cu) and st.global.v4 (a 128-bit store the
// compiler cannot split). All require sm_80 or newer. They are defined for nvcc's host
// pass and for device passes targeting sm_80+ (the build targets sm_80 and
// sm_90a; see TK_CUDA_ARCHS); the emulator's host compile (TK_EMU) gets
// asm-free twins with the same layouts. On an older device target each name is a
// stand-in whose static_assert fires only where it is called: a kernel
// that uses them fails to compile for that target with a message naming
// the wrapper, a kernel that does not is unaffected.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <vector_types.h>

namespace tk {

#if defined(TK_EMU)

// ---- the SIMT emulator's twins (kernels/emu/emu.h, runtime.cpp) ------------
// The same functions with the same fragment layouts (documented with each
// PTX version below), executed as warp collectives by the emulator; no asm.

__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, int src_bytes) {
    ::tk_emu::cp_async(smem, gmem, 16, src_bytes);
}
__device__ __forceinline__ void cp_async_commit() { ::tk_emu::cp_async_commit(); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    static_assert(N >= 0, "cp.async.wait_group takes a non-negative count");
    ::tk_emu::cp_async_wait(N);
}
__device__ __forceinline__ void cp_async_wait_all() { ::tk_emu::cp_async_wait(-1); }
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
    ::tk_emu::ldmatrix(r, 4, false, smem);
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
    ::tk_emu::ldmatrix(r, 4, true, smem);
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* smem) {
    ::tk_emu::ldmatrix(r, 2, false, smem);
}
__device__ __forceinline__ void mma_m16n8k16_f32_bf16(float (&d)[4], const uint32_t (&a)[4],
                                                      const uint32_t (&b)[2],
                                                      const float (&c)[4]) {
    ::tk_emu::mma_m16n8k16(d, a, b, c, true);
}
__device__ __forceinline__ void mma_m16n8k16_f32_f16(float (&d)[4], const uint32_t (&a)[4],
                                                     const uint32_t (&b)[2],
                                                     const float (&c)[4]) {
    ::tk_emu::mma_m16n8k16(d, a, b, c, false);
}
__device__ __forceinline__ void st_global_16(void* gmem, uint4 v) {
    *static_cast<uint4*>(gmem) = v;
}

#elif !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800

// ---- cp.async: asynchronous global -> shared copies -----------------------
// PTX ISA: "Data Movement and Conversion Instructions: cp.async",
// "cp.async.commit_group", "cp.async.wait_group / cp.async.wait_all".
// A thread's cp.async operations are invisible to it until it waits for
// their group, and to the other threads of the block until they have
// waited too and passed a __syncthreads().

// Copies 16 bytes from global `gmem` to shared `smem`, bypassing L1 (.cg).
// Only the first `src_bytes` (0..16) are read; the rest of the 16 shared
// bytes are zero-filled, which is how a tile edge past the end of a matrix
// loads as zeros without a branch. Both addresses must be 16-byte aligned;
// with src_bytes == 0 nothing is read, but `gmem` should still point into
// the tensor (clamp an out-of-range address to a valid one, such as the
// tensor's first element).
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, int src_bytes) {
    const uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
    const uint64_t src = static_cast<uint64_t>(__cvta_generic_to_global(gmem));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(src_bytes)
                 : "memory");
}

// Closes the group of this thread's cp.async operations issued since the
// previous commit.
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Waits until at most N of this thread's committed groups are still in
// flight (N = stages - 1 in a multi-stage pipeline).
template <int N> __device__ __forceinline__ void cp_async_wait() {
    static_assert(N >= 0, "cp.async.wait_group takes a non-negative count");
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Waits for every cp.async of this thread, committed or not.
__device__ __forceinline__ void cp_async_wait_all() {
    asm volatile("cp.async.wait_all;\n" ::: "memory");
}

// ---- ldmatrix: shared memory -> mma fragments -----------------------------
// PTX ISA: "Warp-level matrix load instruction: ldmatrix" (.m8n8, .b16).
// Warp-collective (.sync.aligned): all 32 lanes execute it together.
// Loads 8x8 matrices of 16-bit elements. Lane 8*i + r supplies the shared
// address of row r of matrix i (one 16-byte row, 16-byte aligned; rows may
// be anywhere, which is what lets a swizzled tile be read). Lane l receives
// in r[i] row l / 4, elements 2 * (l % 4) and 2 * (l % 4) + 1 of matrix i:
// for .x4 matrices 0..3 are the four 8x8 quadrants of an mma A fragment
// (see mma below) when lanes address them in the order (rows 0-7, k 0-7),
// (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15).
// `.trans` delivers each matrix transposed: lane l receives rows
// 2 * (l % 4) and 2 * (l % 4) + 1 of column l / 4, which turns an operand
// stored k-major (B as [k][n]) into the same fragment.

// Four 8x8 matrices; every lane supplies an address.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
    const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

// Four 8x8 matrices, each transposed.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
    const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

// Two 8x8 matrices: an mma B fragment when B is stored n-major (W[n][k],
// as y = x W^T has it), matrix 0 holding k 0-7 and matrix 1 k 8-15 of 8
// columns n. Lanes 0-15 supply the addresses; those of lanes 16-31 are
// ignored.
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* smem) {
    const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(a));
}

// ---- mma.sync m16n8k16, f32 accumulate --------------------------------------
// PTX ISA: "Warp-level matrix multiply-accumulate instruction: mma" and,
// for the layout, "Matrix Fragments for mma.m16n8k16 with floating point
// type". Warp-collective: D (16x8, f32) = A (16x16, row) * B (16x8, col) + C.
// Fragments, per lane (g = lane / 4, t = lane % 4):
//   a[0] = A[g][2t, 2t+1]       a[1] = A[g+8][2t, 2t+1]
//   a[2] = A[g][2t+8, 2t+9]     a[3] = A[g+8][2t+8, 2t+9]
//   b[0] = B[2t, 2t+1][g]       b[1] = B[2t+8, 2t+9][g]     (k-consecutive pairs)
//   c[0], c[1] = C[g][2t], C[g][2t+1]
//   c[2], c[3] = C[g+8][2t], C[g+8][2t+1]                   (d likewise)
// d may alias c (accumulate in place).

// bf16 inputs, f32 accumulate.
__device__ __forceinline__ void mma_m16n8k16_f32_bf16(float (&d)[4], const uint32_t (&a)[4],
                                                      const uint32_t (&b)[2],
                                                      const float (&c)[4]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]),
          "f"(c[1]), "f"(c[2]), "f"(c[3]));
}

// f16 inputs, f32 accumulate.
__device__ __forceinline__ void mma_m16n8k16_f32_f16(float (&d)[4], const uint32_t (&a)[4],
                                                     const uint32_t (&b)[2],
                                                     const float (&c)[4]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]),
          "f"(c[1]), "f"(c[2]), "f"(c[3]));
}

// ---- st.global.v4.b32: one 16-byte store -------------------------------------
// PTX ISA: "Data Movement and Conversion Instructions: st" (.v4, .b32).
// A plain `*(uint4*)p = v` is sometimes split by the compiler into four
// 32-bit stores (CUDA 13.0, linear.cu's epilogue: the uint4 is rebuilt from
// converted halves and the store vectorizer does not re-join it); this
// states the 128-bit store (STG.E.128). `gmem` must be a 16-byte aligned
// global address.
__device__ __forceinline__ void st_global_16(void* gmem, uint4 v) {
    asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"l"(__cvta_generic_to_global(gmem)),
                 "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w)
                 : "memory");
}

#else  // a device pass for an architecture below sm_80

// Stand-ins: any call fails to compile, naming the wrapper and the reason.
#define TK_PTX_NEEDS_SM80(name)                                                   \
    template <typename... Args> __device__ void name(Args&&...) {                 \
        static_assert(sizeof...(Args) < 0, "tk::" #name " needs sm_80 or newer"); \
    }
TK_PTX_NEEDS_SM80(cp_async_16)
TK_PTX_NEEDS_SM80(cp_async_commit)
TK_PTX_NEEDS_SM80(cp_async_wait_all)
TK_PTX_NEEDS_SM80(ldmatrix_x4)
TK_PTX_NEEDS_SM80(ldmatrix_x4_trans)
TK_PTX_NEEDS_SM80(ldmatrix_x2)
TK_PTX_NEEDS_SM80(mma_m16n8k16_f32_bf16)
TK_PTX_NEEDS_SM80(mma_m16n8k16_f32_f16)
TK_PTX_NEEDS_SM80(st_global_16)
#undef TK_PTX_NEEDS_SM80
template <int N> __device__ void cp_async_wait() {
    static_assert(N < 0 && N >= 0, "tk::cp_async_wait needs sm_80 or newer");
}

#endif  // TK_EMU / sm_80+ / older

// d += a * b with mma.sync.m16n8k16 (f32 accumulate) for the 16-bit storage
// type T: the one dispatch the GEMM and attention share.
__device__ __forceinline__ void mma_m16n8k16_acc(float (&d)[4], const uint32_t (&a)[4],
                                                 const uint32_t (&b)[2], __nv_bfloat16) {
    mma_m16n8k16_f32_bf16(d, a, b, d);
}
__device__ __forceinline__ void mma_m16n8k16_acc(float (&d)[4], const uint32_t (&a)[4],
                                                 const uint32_t (&b)[2], __half) {
    mma_m16n8k16_f32_f16(d, a, b, d);
}
template <typename T>
__device__ __forceinline__ void mma_m16n8k16_acc(float (&d)[4], const uint32_t (&a)[4],
                                                 const uint32_t (&b)[2]) {
    mma_m16n8k16_acc(d, a, b, T());
}

}  // namespace tk
