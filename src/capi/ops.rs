//! The raw kernels on the caller's device pointers: each takes the kernel's
//! own params struct of `params.h` (the header includes it), picks the
//! kernel variant from the sizes and alignments, checks every argument that
//! needs no memory access, and queues the launch on the device's stream.
//! Nothing is allocated and nothing waits.

use super::device::device_of;
use super::{guard, non_null, TkDevice, TkStatus};
use crate::cuda::attention::{self, AttentionKernel, TENSOR_CORE_HEAD_DIMS};
use crate::cuda::linear;
use crate::cuda::params::{
    AttentionParams, BiasActivationParams, EmbeddingParams, GatherRowsParams, LayerNormParams,
    LinearParams, LogitsParams,
};
use crate::{Activation, DType, Error};

/// A `TkDType` of params.h (0 f32, 1 f16, 2 bf16).
fn dtype_of(d: i32) -> crate::Result<DType> {
    match d {
        0 => Ok(DType::F32),
        1 => Ok(DType::F16),
        2 => Ok(DType::BF16),
        _ => Err(Error::invalid(
            "c api",
            format!("dtype {d} (expected TK_DTYPE_F32 0, TK_DTYPE_F16 1 or TK_DTYPE_BF16 2)"),
        )),
    }
}

fn aligned16(ptr: *const std::ffi::c_void) -> bool {
    (ptr as usize).is_multiple_of(16)
}

/// `out = LayerNorm(x + residual) · gamma + beta` over rows of `hidden`
/// (params.h `LayerNormParams`); `dtype` a `TkDType`.
///
/// # Safety
/// `dev` is a live handle; `p` points to a `LayerNormParams` whose pointers
/// satisfy the extents and aliasing rules documented in params.h, in the
/// device's context, valid until the stream has run the kernel.
#[no_mangle]
pub unsafe extern "C" fn tk_layer_norm(
    dev: *const TkDevice,
    dtype: i32,
    p: *const LayerNormParams,
) -> TkStatus {
    guard(|| {
        let d = device_of(dev)?;
        non_null(p, "params")?;
        // SAFETY: non-null; the caller guarantees the pointers (see # Safety).
        unsafe { crate::cuda::layer_norm::launch(&d.device, dtype_of(dtype)?, *p) }
    })
}

/// `out = act(x · wᵀ + bias) + residual` (params.h `LinearParams`): the
/// tile from the sizes and the device (as `cuda::linear::plan`), the
/// cp.async variant when k % 8 == 0 and x, w are 16-byte aligned, split-K
/// only when `p->partials` is given (sized by the plan's splits, see the
/// Rust `linear::workspace_elements`; NULL: one slice). `p->splits` and
/// `p->k_steps_per_split` are set by the call.
///
/// # Safety
/// As [`tk_layer_norm`], for `LinearParams`.
#[no_mangle]
pub unsafe extern "C" fn tk_linear(
    dev: *const TkDevice,
    dtype: i32,
    p: *const LinearParams,
) -> TkStatus {
    guard(|| {
        let d = device_of(dev)?;
        non_null(p, "params")?;
        let dtype = dtype_of(dtype)?;
        // SAFETY: non-null, readable by the contract.
        let p = unsafe { *p };
        let dims = |v: i64, what: &str| {
            usize::try_from(v).map_err(|_| Error::invalid("tk_linear", format!("{what} = {v} < 0")))
        };
        let (m, n, k) = (dims(p.m, "m")?, dims(p.n, "n")?, dims(p.k, "k")?);
        let mut plan = linear::plan(m, n, k, dtype, d.device.multiprocessor_count());
        if p.partials.is_null() {
            plan.splits = 1;
        }
        let aligned = k % 8 == 0 && aligned16(p.x) && aligned16(p.w);
        // SAFETY: the caller guarantees the pointers (see # Safety).
        unsafe { linear::launch(&d.device, dtype, plan, aligned, p) }
    })
}

/// `out = softmax(Q·Kᵀ·scale + mask)·V` through strides (params.h
/// `AttentionParams`): the tensor-core kernel for f16 / bf16, head_dim 32 /
/// 64 / 96 / 128, 16-byte aligned q, k, v rows and more than 4 queries;
/// SIMT otherwise; split-KV only when `p->partial_out` and `p->partial_ml`
/// are given (NULL: one split). `p->splits` and `p->keys_per_split` are
/// set by the call.
///
/// # Safety
/// As [`tk_layer_norm`], for `AttentionParams`.
#[no_mangle]
pub unsafe extern "C" fn tk_attention(
    dev: *const TkDevice,
    dtype: i32,
    p: *const AttentionParams,
) -> TkStatus {
    guard(|| {
        let d = device_of(dev)?;
        non_null(p, "params")?;
        let dtype = dtype_of(dtype)?;
        // SAFETY: non-null, readable by the contract.
        let mut p = unsafe { *p };
        let dims = |v: i64, what: &str| {
            usize::try_from(v)
                .map_err(|_| Error::invalid("tk_attention", format!("{what} = {v} < 0")))
        };
        let head_dim = dims(p.head_dim, "head_dim")?;
        let e = dtype.size_in_bytes() as i64;
        let strides16 = [
            p.q_batch_stride,
            p.q_pos_stride,
            p.k_batch_stride,
            p.k_pos_stride,
            p.v_batch_stride,
            p.v_pos_stride,
        ]
        .iter()
        .all(|&s| (s * e) % 16 == 0);
        let tensor_core_ok = dtype != DType::F32
            && TENSOR_CORE_HEAD_DIMS.contains(&head_dim)
            && aligned16(p.q)
            && aligned16(p.k)
            && aligned16(p.v)
            && strides16;
        let mut plan = attention::plan(
            dims(p.rows, "rows")?,
            dims(p.heads, "heads")?,
            dims(p.q_len, "q_len")?,
            dims(p.k_len, "k_len")?,
            tensor_core_ok,
            d.device.multiprocessor_count(),
        );
        if plan.kernel == AttentionKernel::Simt
            && (p.partial_out.is_null() || p.partial_ml.is_null())
        {
            plan.splits = 1;
        }
        let (splits, per) = attention::split_keys(plan, dims(p.k_len, "k_len")?)?;
        p.splits = splits as i32;
        p.keys_per_split = per;
        // SAFETY: the caller guarantees the pointers (see # Safety).
        unsafe { attention::launch(&d.device, dtype, plan, p) }
    })
}

/// `out[t] = table[ids[t]] · scale + sinusoid(position)` (params.h
/// `EmbeddingParams`); an id outside `[0, vocab)` gives a row of NaN.
///
/// # Safety
/// As [`tk_layer_norm`], for `EmbeddingParams`.
#[no_mangle]
pub unsafe extern "C" fn tk_embedding(
    dev: *const TkDevice,
    dtype: i32,
    p: *const EmbeddingParams,
) -> TkStatus {
    guard(|| {
        let d = device_of(dev)?;
        non_null(p, "params")?;
        // SAFETY: non-null; the caller guarantees the pointers.
        unsafe { crate::cuda::embedding::launch(&d.device, dtype_of(dtype)?, *p) }
    })
}

/// The logits step (params.h `LogitsParams`): log-softmax, masks and the
/// `k` best ids per row (`k` up to 32).
///
/// # Safety
/// As [`tk_layer_norm`], for `LogitsParams`.
#[no_mangle]
pub unsafe extern "C" fn tk_logits(
    dev: *const TkDevice,
    dtype: i32,
    p: *const LogitsParams,
) -> TkStatus {
    guard(|| {
        let d = device_of(dev)?;
        non_null(p, "params")?;
        // SAFETY: non-null; the caller guarantees the pointers.
        unsafe { crate::cuda::logits::launch(&d.device, dtype_of(dtype)?, *p) }
    })
}

/// `out = act(x + bias)` (params.h `BiasActivationParams`); `activation` a
/// `TkActivation` (0 relu, 1 gelu, 2 gelu_tanh, 3 swish).
///
/// # Safety
/// As [`tk_layer_norm`], for `BiasActivationParams`.
#[no_mangle]
pub unsafe extern "C" fn tk_bias_activation(
    dev: *const TkDevice,
    dtype: i32,
    activation: i32,
    p: *const BiasActivationParams,
) -> TkStatus {
    guard(|| {
        let d = device_of(dev)?;
        non_null(p, "params")?;
        let act = match activation {
            0 => Activation::Relu,
            1 => Activation::Gelu,
            2 => Activation::GeluTanh,
            3 => Activation::Swish,
            other => {
                return Err(Error::invalid(
                    "tk_bias_activation",
                    format!("activation {other} (expected a TkActivation, 0..=3)"),
                ))
            }
        };
        // SAFETY: non-null; the caller guarantees the pointers.
        unsafe { crate::cuda::bias_activation::launch(&d.device, dtype_of(dtype)?, act, *p) }
    })
}

/// Row gather (params.h `GatherRowsParams`: KV-cache writes and beam
/// reorders) in units of `unit_bytes` (16, 4 or 2; every address, stride
/// and run must be a multiple of it).
///
/// # Safety
/// As [`tk_layer_norm`], for `GatherRowsParams`.
#[no_mangle]
pub unsafe extern "C" fn tk_gather_rows(
    dev: *const TkDevice,
    unit_bytes: usize,
    p: *const GatherRowsParams,
) -> TkStatus {
    guard(|| {
        let d = device_of(dev)?;
        non_null(p, "params")?;
        // SAFETY: non-null; the caller guarantees the pointers.
        unsafe { crate::cuda::gather_rows::launch(&d.device, unit_bytes, *p) }
    })
}
