// The emulator's tensor-core and async-copy twins (kernels/include/tk/
// ptx.cuh, TK_EMU branch) held to a plain matrix product: one warp stages
// A (16x16) and W (8x16, n-major as y = x W^T stores it) in shared memory
// with cp.async, loads fragments with ldmatrix, multiplies with
// mma.m16n8k16 and stores D = A W^T (16x8, f32). Compiled only into the
// emulator (build/emu.rs); src/cuda/runtime/emu.rs's tests compare D with
// an f64 product of the same inputs.
//
// Params (EmuFaultParams): `in` holds, as 16-bit elements (bf16 or f16 by
// the kernel's name), A row-major (256), W row-major (128) and A^T
// row-major (256); `out` receives D row-major (128 floats).

#include "params.h"
#include "tk/ptx.cuh"

#include <type_traits>

namespace {

template <typename T, bool A_TRANSPOSED, bool WAIT, bool SYNC = true>
__device__ void mma_selftest(const EmuFaultParams& p) {
    __shared__ __align__(16) T sA[16][16];  // A, or A^T when A_TRANSPOSED
    __shared__ __align__(16) T sW[8][16];
    const T* in = reinterpret_cast<const T*>(p.in);
    const T* a_src = in + (A_TRANSPOSED ? 256 + 128 : 0);
    const T* w_src = in + 256;
    const int lane = threadIdx.x;
    // 32 chunks of 16 bytes for A (2 per row), 16 for W.
    tk::cp_async_16(&sA[lane / 2][8 * (lane % 2)], a_src + 8 * lane, 16);
    if (lane < 16) tk::cp_async_16(&sW[lane / 2][8 * (lane % 2)], w_src + 8 * lane, 16);
    tk::cp_async_commit();
    if (WAIT) tk::cp_async_wait<0>();
    if (SYNC) __syncwarp();  // the copies of every lane, visible to all

    uint32_t a[4], b[2];
    const int i = lane / 8, r = lane % 8;
    if (A_TRANSPOSED) {
        // Matrix i of the A fragment from A^T[k][m]: (k 0-7 | 8-15) x (m 0-7 | 8-15).
        tk::ldmatrix_x4_trans(a, &sA[8 * (i / 2) + r][8 * (i % 2)]);
    } else {
        // Quadrants (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15).
        tk::ldmatrix_x4(a, &sA[8 * (i % 2) + r][8 * (i / 2)]);
    }
    // B fragment from W[n][k]: matrix 0 = k 0-7, matrix 1 = k 8-15.
    tk::ldmatrix_x2(b, &sW[r][8 * (i % 2)]);
    const float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    float d[4];
    if constexpr (std::is_same<T, __nv_bfloat16>::value)
        tk::mma_m16n8k16_f32_bf16(d, a, b, c);
    else
        tk::mma_m16n8k16_f32_f16(d, a, b, c);
    const int g = lane / 4, t = lane % 4;
    p.out[g * 8 + 2 * t] = d[0];
    p.out[g * 8 + 2 * t + 1] = d[1];
    p.out[(g + 8) * 8 + 2 * t] = d[2];
    p.out[(g + 8) * 8 + 2 * t + 1] = d[3];
}

}  // namespace

extern "C" __global__ void emu_selftest_mma_bf16(EmuFaultParams p) {
    mma_selftest<__nv_bfloat16, false, true>(p);
}
extern "C" __global__ void emu_selftest_mma_f16(EmuFaultParams p) {
    mma_selftest<__half, false, true>(p);
}
extern "C" __global__ void emu_selftest_mma_trans_bf16(EmuFaultParams p) {
    mma_selftest<__nv_bfloat16, true, true>(p);
}
// Fault: each lane waits for its own copies, but ldmatrix reads rows other
// lanes copied with no __syncwarp between: a race the detector must report.
extern "C" __global__ void emu_fault_cp_async_no_sync(EmuFaultParams p) {
    mma_selftest<__nv_bfloat16, false, true, false>(p);
}
// Fault: the stage is read (ldmatrix) before the cp.async group is waited for.
extern "C" __global__ void emu_fault_cp_async_before_wait(EmuFaultParams p) {
    mma_selftest<__nv_bfloat16, false, false>(p);
}
