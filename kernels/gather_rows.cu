// Row gather: for every destination row r and position p, row_elems units
// copied from source row src_rows[r] (r when src_rows is NULL), position p,
// at independent row and position strides. The model's KV cache makes
// every copy it needs on the device with it:
//
//   write   a step's k (or v) columns of the fused QKV output
//           [rows, t, 3d] into the cache [rows, cap, d] at position `at`:
//           positions t, src strides (t*3d, 3d) from column d (or 2d),
//           dst strides (cap*d, d) from position at, identity rows;
//   reorder beam search's surviving rows, dropping finished sentences,
//           expanding encoder memory per beam: src_rows = the kept rows;
//   grow    a larger capacity: dst row stride new_cap*d.
//
// When the positions of a row are contiguous on both sides (whole-width
// copies) the wrapper folds them into one long run (positions = 1). Only
// the positions asked for are copied, never the whole capacity. The unit
// is the symbol's: gather_rows_b16 copies 16-byte chunks (uint4: the
// wrapper picks it when every address, stride and run length is a multiple
// of 16 bytes, as d_model % 8 == 0 in 16-bit storage makes them), _b4
// 4-byte and _b2 2-byte elements otherwise. Every field of the params counts
// units of the symbol.
//
// Launch: grid (x: blocks of 256 units along a run, y: (row, position)
// pairs up to 65535), block 256; both directions grid-stride, so any size
// is covered.

#include <stdint.h>

#include "params.h"

namespace {

constexpr int kThreads = 256;

template <typename U>
__device__ __forceinline__ void gather_rows_impl(const GatherRowsParams& p) {
    const U* src = static_cast<const U*>(p.src);
    U* dst = static_cast<U*>(p.dst);
    if (p.dst_pos_device != nullptr) dst += static_cast<int64_t>(*p.dst_pos_device) * p.dst_pos_stride;
    const int64_t step = static_cast<int64_t>(gridDim.x) * kThreads;
    const int64_t runs = p.rows * p.positions;
    for (int64_t run = blockIdx.y; run < runs; run += gridDim.y) {
        const int64_t r = run / p.positions;
        const int64_t pos = run - r * p.positions;
        const int64_t s = p.src_rows != nullptr ? static_cast<int64_t>(p.src_rows[r]) : r;
        const U* from = src + s * p.src_row_stride + pos * p.src_pos_stride;
        U* to = dst + r * p.dst_row_stride + pos * p.dst_pos_stride;
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
