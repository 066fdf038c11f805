// The launch's dynamic shared memory (LaunchShape::shared_mem_bytes), as one
// 16-byte aligned byte array. Kernels whose tiles need more than the 48 KiB
// of static shared memory (the GEMM's multi-stage pipeline) carve it up
// themselves. The emulator (TK_EMU) supplies its own buffer: poisoned
// (0xFF, NaN) at the start of each block and fenced, so that a read before
// a write and an access past the launch's size are caught.
#pragma once

namespace tk {

#if defined(TK_EMU)
__device__ __forceinline__ unsigned char* dynamic_smem() {
    return static_cast<unsigned char*>(::tk_emu::dynamic_smem());
}
#else
__device__ __forceinline__ unsigned char* dynamic_smem() {
    extern __shared__ __align__(16) unsigned char tk_dynamic_smem[];
    return tk_dynamic_smem;
}
#endif

}  // namespace tk
