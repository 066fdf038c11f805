//! Residual add + LayerNorm on the device (`kernels/layer_norm.cu`):
//! `out = LN(x + residual) · gamma + beta`, the output of every post-LN
//! sublayer (Ba et al., 2016; Marian `normalize_before = false`).
//!
//! Reference: `cpu::layer_norm::layer_norm` (compared by the tests and
//! `verify`, never called from here). Statistics
//! are f32 whatever the storage dtype, two-pass over the row in registers
//! (shifted by the row's first element), never `E[h²] − E[h]²`.
//!
//! Run status: executed on the SIMT emulator (its tests and `verify --device
//! emu`); not run on a GPU (no GPU run recorded in BENCHMARKS.md).

use super::check::{grid_for, i64_of, same_device, shape_is};
use super::device::Device;
use super::numerics::Tolerance;
use super::params::LayerNormParams;
use super::runtime::{KernelRef, LaunchParams, LaunchShape};
use super::tensor::{DeviceElement, DeviceTensor};
use crate::error::fmt_shape;
use crate::{DType, Error, Result};

/// The module: `kernels/layer_norm.cu`.
pub const MODULE: &str = "layer_norm";

/// Largest hidden size the kernels take (a row lives in registers).
pub const MAX_HIDDEN: usize = LayerNormVariant::BLOCK_MAX_HIDDEN;

/// The two LayerNorm kernels: a row per warp or a row per block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayerNormVariant {
    /// One warp per row, 4 rows per block: hidden <= [`LayerNormVariant::WARP_MAX_HIDDEN`].
    Warp,
    /// One 256-thread block per row: hidden <= [`LayerNormVariant::BLOCK_MAX_HIDDEN`].
    Block,
}

impl LayerNormVariant {
    /// Largest hidden size of the warp-per-row kernel (32 lanes x 32 registers).
    pub const WARP_MAX_HIDDEN: usize = 1024;
    /// Largest hidden size of the block-per-row kernel (256 threads x 32 registers).
    pub const BLOCK_MAX_HIDDEN: usize = 8192;

    /// The variant for rows of `hidden` elements, or `None` when `hidden`
    /// is 0 or above [`LayerNormVariant::BLOCK_MAX_HIDDEN`].
    pub const fn for_hidden(hidden: usize) -> Option<Self> {
        if hidden == 0 {
            None
        } else if hidden <= Self::WARP_MAX_HIDDEN {
            Some(LayerNormVariant::Warp)
        } else if hidden <= Self::BLOCK_MAX_HIDDEN {
            Some(LayerNormVariant::Block)
        } else {
            None
        }
    }
}

/// The symbol `layer_norm_residual_<variant>_<dtype>` of `layer_norm.cu`.
pub const fn kernel(variant: LayerNormVariant, dtype: DType) -> KernelRef {
    use DType::*;
    use LayerNormVariant::*;
    let symbol = match (variant, dtype) {
        (Warp, F32) => "layer_norm_residual_warp_f32",
        (Warp, F16) => "layer_norm_residual_warp_f16",
        (Warp, BF16) => "layer_norm_residual_warp_bf16",
        (Block, F32) => "layer_norm_residual_block_f32",
        (Block, F16) => "layer_norm_residual_block_f16",
        (Block, BF16) => "layer_norm_residual_block_bf16",
    };
    KernelRef {
        module: MODULE,
        symbol,
    }
}

/// Every kernel of this op (for the static checks against the fatbin).
pub fn kernels() -> Vec<KernelRef> {
    let variants = [LayerNormVariant::Warp, LayerNormVariant::Block];
    variants
        .iter()
        .flat_map(|&v| DType::ALL.map(|d| kernel(v, d)))
        .collect()
}

/// f32 kernel vs the reference (f64 statistics), for inputs of unit scale
/// (|x|, |residual|, |beta| <= ~2, |gamma| <= 2).
pub const TOL_F32: Tolerance = Tolerance {
    abs: 1e-5,
    rel: 1e-5,
    reason: "f32 tree sums over <= 8192 elements: <= 13 ulp of mean and rstd, on |z| <= ~5, times |gamma| <= 2",
};

/// The tolerance for outputs stored in `dtype`: [`TOL_F32`] plus one
/// rounding to the storage dtype ([`Tolerance::stored_as`]).
pub fn tolerance(dtype: DType) -> Tolerance {
    Tolerance::stored_as(TOL_F32, dtype)
}

// SAFETY: LayerNormParams is a `#[repr(C)]` plain-old-data struct generated
// from params.h, layout-checked by bindgen; the kernel takes it by value.
unsafe impl LaunchParams for LayerNormParams {}

/// `LN(x + residual) · gamma + beta` over the last dimension, into a new tensor.
///
/// - `x`: `[..., hidden]` (any rank >= 1; rows = product of the other dims),
///   `hidden` in `1..=`[`MAX_HIDDEN`];
/// - `residual`: same shape as `x`, or `None` for a plain LayerNorm;
/// - `gamma`, `beta`: `[hidden]` (the sublayer's `*_layer_norm.weight` / `.bias`);
/// - `eps`: finite and > 0 (`config.layer_norm_eps`, 1e-5 for Marian).
///
/// Returns `[..., hidden]` in the storage dtype `T`; arithmetic is f32.
///
/// # Errors
/// [`Error::Shape`] on mismatched shapes or rank 0; [`Error::InvalidArgument`]
/// for `hidden` outside `1..=MAX_HIDDEN`, a bad `eps`, or operands on
/// different devices; [`Error::Cuda`] on allocation or launch failure.
pub fn layer_norm<T: DeviceElement>(
    x: &DeviceTensor<T>,
    residual: Option<&DeviceTensor<T>>,
    gamma: &DeviceTensor<T>,
    beta: &DeviceTensor<T>,
    eps: f32,
) -> Result<DeviceTensor<T>> {
    let mut out = DeviceTensor::zeros(x.device(), x.shape())?;
    layer_norm_into(x, residual, gamma, beta, eps, &mut out)?;
    Ok(out)
}

/// [`layer_norm`] writing into `out` (same shape as `x`), for callers that
/// reuse their buffers (benches, the decoder loop).
///
/// # Errors
/// As [`layer_norm`], plus [`Error::Shape`] when `out` is not shaped like `x`.
pub fn layer_norm_into<T: DeviceElement>(
    x: &DeviceTensor<T>,
    residual: Option<&DeviceTensor<T>>,
    gamma: &DeviceTensor<T>,
    beta: &DeviceTensor<T>,
    eps: f32,
    out: &mut DeviceTensor<T>,
) -> Result<()> {
    const OP: &str = "layer_norm";
    let device = x.device().clone();
    let Some(&hidden) = x.shape().last() else {
        return Err(Error::shape(OP, "x [..., hidden]", "x []"));
    };
    if LayerNormVariant::for_hidden(hidden).is_none() {
        return Err(Error::invalid(
            OP,
            format!(
                "hidden = {hidden} (x {}) is outside 1..={MAX_HIDDEN}",
                fmt_shape(x.shape())
            ),
        ));
    }
    if let Some(r) = residual {
        shape_is(OP, "residual", r, x.shape())?;
        same_device(OP, "residual", &device, r)?;
    }
    shape_is(OP, "gamma", gamma, &[hidden])?;
    shape_is(OP, "beta", beta, &[hidden])?;
    shape_is(OP, "out", out, x.shape())?;
    same_device(OP, "gamma", &device, gamma)?;
    same_device(OP, "beta", &device, beta)?;
    same_device(OP, "out", &device, out)?;
    let rows = x.numel() / hidden;
    let params = LayerNormParams {
        x: x.device_ptr() as *const core::ffi::c_void,
        residual: residual.map_or(core::ptr::null(), |r| {
            r.device_ptr() as *const core::ffi::c_void
        }),
        gamma: gamma.device_ptr() as *const core::ffi::c_void,
        beta: beta.device_ptr() as *const core::ffi::c_void,
        out: out.device_ptr_mut() as *mut core::ffi::c_void,
        rows: i64_of(OP, "rows", rows)?,
        hidden: i64_of(OP, "hidden", hidden)?,
        eps,
    };
    // SAFETY: every pointer comes from a live DeviceTensor on `device` whose
    // shape was checked above against rows x hidden (x, residual, out) or
    // hidden (gamma, beta); `out` is borrowed mutably, so it cannot alias the
    // inputs; the tensors outlive the launch because all later uses go
    // through the same stream.
    unsafe { launch(&device, T::DTYPE, params) }
}

/// Launches the LayerNorm kernel for `dtype` with caller-built params on
/// `device`'s stream: the raw API for engines with their own buffers.
/// Checks `hidden` (picking the warp or block kernel) and `eps`; an empty
/// problem (`rows == 0`) launches nothing.
///
/// # Errors
/// [`Error::InvalidArgument`] for `hidden` outside `1..=MAX_HIDDEN`,
/// `rows < 0`, or `eps` not finite and > 0; [`Error::Cuda`] on launch failure.
///
/// # Safety
/// `p.x`, `p.out` (and `p.residual` unless null) must point to
/// `p.rows * p.hidden` elements of `dtype` in `device`'s context, `p.gamma`
/// and `p.beta` to `p.hidden`; `p.out` must be exactly `p.x` / `p.residual`
/// or not overlap them; the memory must stay valid until the stream has run
/// the kernel.
pub unsafe fn launch(device: &Device, dtype: DType, p: LayerNormParams) -> Result<()> {
    const OP: &str = "layer_norm";
    let hidden = usize::try_from(p.hidden).unwrap_or(0);
    let Some(variant) = LayerNormVariant::for_hidden(hidden) else {
        return Err(Error::invalid(
            OP,
            format!("hidden = {} is outside 1..={MAX_HIDDEN}", p.hidden),
        ));
    };
    let rows = usize::try_from(p.rows)
        .map_err(|_| Error::invalid(OP, format!("rows = {} is negative", p.rows)))?;
    if !(p.eps.is_finite() && p.eps > 0.0) {
        return Err(Error::invalid(
            OP,
            format!(
                "eps = {} must be finite and > 0 (a constant row would divide by 0)",
                p.eps
            ),
        ));
    }
    if rows == 0 {
        return Ok(());
    }
    let (threads, rows_per_block) = match variant {
        LayerNormVariant::Warp => (128u32, 4usize),
        LayerNormVariant::Block => (256u32, 1usize),
    };
    let shape = LaunchShape::linear(grid_for(rows, rows_per_block), threads);
    // SAFETY: the caller guarantees the pointers (see `# Safety`); the block
    // size matches the kernel's __launch_bounds__ and the variant's group size.
    unsafe { device.launch(kernel(variant, dtype), shape, &p) }
}
