//! Device dtype conversion (`kernels/convert.cu`); the reference is
//! `cpu::convert::convert` (the tests and `verify` compare; this module
//! never calls the reference).

use super::check::{i64_of, same_device, shape_is};
use super::params::ConvertParams;
use super::runtime::{KernelRef, LaunchParams, LaunchShape};
use super::tensor::{DeviceElement, DeviceTensor};
use crate::{DType, Result};

/// The module: `kernels/convert.cu`.
pub const MODULE: &str = "convert";

/// The symbol `convert_<src>_to_<dst>` of `convert.cu`, or `None` when
/// `src == dst` (a plain device copy, no kernel).
pub const fn kernel(src: DType, dst: DType) -> Option<KernelRef> {
    use DType::*;
    let symbol = match (src, dst) {
        (F32, F16) => "convert_f32_to_f16",
        (F32, BF16) => "convert_f32_to_bf16",
        (F16, F32) => "convert_f16_to_f32",
        (F16, BF16) => "convert_f16_to_bf16",
        (BF16, F32) => "convert_bf16_to_f32",
        (BF16, F16) => "convert_bf16_to_f16",
        (F32, F32) | (F16, F16) | (BF16, BF16) => return None,
    };
    Some(KernelRef {
        module: MODULE,
        symbol,
    })
}

/// Every kernel of this op (for the static checks against the fatbin).
pub fn kernels() -> Vec<KernelRef> {
    DType::ALL
        .iter()
        .flat_map(|&s| DType::ALL.iter().filter_map(move |&d| kernel(s, d)))
        .collect()
}

/// Threads per block; matches `__launch_bounds__(256)` in convert.cu.
const BLOCK: u32 = 256;
/// Grid-size cap: enough blocks to fill any current GPU several times over;
/// the grid-stride loop covers the rest.
const MAX_BLOCKS: usize = 65_535;

// SAFETY: ConvertParams is a `#[repr(C)]` plain-old-data struct generated
// from params.h, layout-checked by bindgen; the kernel takes it by value.
unsafe impl LaunchParams for ConvertParams {}

/// Converts `src` to dtype `D` on the device: `dst[i] = D::from_f32(src[i].to_f32())`,
/// round to nearest even. Same shape; `S == D` is a device-to-device copy.
/// Allocates the output; [`convert_into`] writes into a tensor you keep.
///
/// # Errors
/// [`Error::Cuda`](crate::Error::Cuda) on allocation or launch failure;
/// [`Error::InvalidArgument`](crate::Error::InvalidArgument) when the
/// element count does not fit the kernel's `int64_t`.
pub fn convert<S: DeviceElement, D: DeviceElement>(
    src: &DeviceTensor<S>,
) -> Result<DeviceTensor<D>> {
    let mut dst = DeviceTensor::<D>::zeros(src.device(), src.shape())?;
    convert_into(src, &mut dst)?;
    Ok(dst)
}

/// [`convert`] into `dst`, a tensor of the same shape on the same device
/// (allocated once and reused: nothing is allocated here). Every element of
/// `dst` is overwritten.
///
/// # Errors
/// [`Error::Shape`](crate::Error::Shape) when `dst` has another shape than
/// `src`; [`Error::InvalidArgument`](crate::Error::InvalidArgument) when
/// `dst` is on another device or the element count does not fit the
/// kernel's `int64_t`; [`Error::Cuda`](crate::Error::Cuda) on launch failure.
pub fn convert_into<S: DeviceElement, D: DeviceElement>(
    src: &DeviceTensor<S>,
    dst: &mut DeviceTensor<D>,
) -> Result<()> {
    const OP: &str = "convert";
    let device = src.device().clone();
    shape_is(OP, "dst", dst, src.shape())?;
    same_device(OP, "dst", &device, dst)?;
    let n = src.numel();
    if n == 0 {
        return Ok(());
    }
    let Some(kernel) = kernel(S::DTYPE, D::DTYPE) else {
        // Same dtype: a plain device-to-device copy, bit-exact.
        let bytes = n * std::mem::size_of::<S>();
        let (src_ptr, dst_ptr) = (src.device_ptr(), dst.device_ptr_mut());
        // SAFETY: S and D are the same type here (same DTYPE), both buffers
        // hold at least `n` elements of it (same shape, checked above), are
        // distinct allocations (`dst` is borrowed mutably while `src` is
        // borrowed), and the copy is queued on the stream every later use
        // goes through.
        return unsafe { device.copy_dtod(dst_ptr, src_ptr, bytes) };
    };
    let params = ConvertParams {
        src: src.device_ptr() as *const core::ffi::c_void,
        dst: dst.device_ptr_mut() as *mut core::ffi::c_void,
        n: i64_of(OP, "elements", n)?,
    };
    let blocks = n.div_ceil(BLOCK as usize).min(MAX_BLOCKS) as u32;
    let shape = LaunchShape::linear(blocks, BLOCK);
    // SAFETY: the kernel reads `n` elements of S at `src` and writes `n`
    // elements of D at `dst`; both buffers hold at least `n` elements (same
    // shape, checked above), live on this device (checked), are distinct
    // allocations (`dst` is borrowed mutably while `src` is borrowed), and
    // outlive the launch because every later use of `dst`/`src` goes
    // through the same stream.
    unsafe { device.launch(kernel, shape, &params) }
}
