/*
 * Launch-parameter structs and enums: the one ABI shared by the CUDA kernels
 * (C++) and the Rust wrappers (generated from this file by bindgen in
 * build.rs; `kernels/include/params_snapshot.rs` is the checked-in copy used
 * when libclang is absent).
 *
 * Rules: plain C, a doc comment before every field (bindgen copies it), fixed-width types, sizes and strides as int64_t, device
 * pointers as `const void*` / `void*` (typed inside the kernel by the
 * template instantiation the symbol name selects). Every kernel takes exactly
 * one of these structs by value.
 */
#ifndef TK_PARAMS_H
#define TK_PARAMS_H

#include <stdint.h>

/** Storage dtype of a tensor. Arithmetic is always f32. */
typedef enum TkDType {
    TK_DTYPE_F32 = 0,
    TK_DTYPE_F16 = 1,
    TK_DTYPE_BF16 = 2,
} TkDType;

/** convert.cu: dst[i] = round_to_dst(float(src[i])) for i in [0, n). */
typedef struct ConvertParams {
    /** Device pointer: n elements of the source dtype. */
    const void *src;
    /** Device pointer: n elements of the destination dtype; must not alias src. */
    void *dst;
    /** Number of elements, >= 0. */
    int64_t n;
} ConvertParams;

#endif /* TK_PARAMS_H */
