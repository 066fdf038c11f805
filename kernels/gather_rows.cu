// Row gather: dst row r = the first row_elems units of src row src_rows[r]
// (r when src_rows is NULL), at independent row strides. The model's KV
// cache uses it for every copy it makes on the device:
//
//   write   new [rows, t, d] -> cache [rows, cap, d] at position `at`:
//           src stride t*d, dst stride cap*d, dst offset at*d, identity rows;
//   reorder beam search's surviving rows, dropping finished sentences,
//           expanding encoder memory per beam: src_rows = the kept rows;
//   grow    a larger capacity: dst stride new_cap*d.
//
// Only the valid positions are copied (row_elems = len*d), never the whole
// capacity. The unit is the symbol's: gather_rows_b16 copies 16-byte
// chunks (uint4: the wrapper picks it when every address, stride and row
// length is a multiple of 16 bytes, as d_model % 8 == 0 in 16-bit storage
// makes them), _b4 4-byte and _b2 2-byte elements otherwise. Every field of
// the params counts units of the symbol.
//
// Launch: grid (x: blocks of 256 units along a row, y: rows up to
// 65535), block 256; both directions grid-stride, so any size is covered.

#include <stdint.h>

#include "params.h"

namespace {

constexpr int kThreads = 256;

template <typename U>
__device__ __forceinline__ void gather_rows_impl(const GatherRowsParams& p) {
    const U* src = static_cast<const U*>(p.src);
    U* dst = static_cast<U*>(p.dst);
    const int64_t step = static_cast<int64_t>(gridDim.x) * kThreads;
    for (int64_t r = blockIdx.y; r < p.rows; r += gridDim.y) {
        const int64_t s = p.src_rows != nullptr ? static_cast<int64_t>(p.src_rows[r]) : r;
        const U* from = src + s * p.src_row_stride;
        U* to = dst + r * p.dst_row_stride;
        for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < p.row_elems;
             i += step) {
            to[i] = from[i];
        }
    }
}

}  // namespace

extern "C" __global__ void __launch_bounds__(kThreads) gather_rows_b16(GatherRowsParams p) {
    gather_rows_impl<uint4>(p);
}

extern "C" __global__ void __launch_bounds__(kThreads) gather_rows_b4(GatherRowsParams p) {
    gather_rows_impl<uint32_t>(p);
}

extern "C" __global__ void __launch_bounds__(kThreads) gather_rows_b2(GatherRowsParams p) {
    gather_rows_impl<uint16_t>(p);
}
