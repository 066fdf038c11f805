//! Bias add + activation on the device (`kernels/bias_activation.cu`):
//! `out[r, c] = act(x[r, c] + bias[c])`, the middle of the feed-forward
//! sublayer `fc2(act(fc1(x)))` where the GEMM epilogue does not fuse it.
//! `act` is the config's `activation_function`; `"gelu"` is the exact erf
//! form (Hugging Face `ACT2FN["gelu"]` = `torch.nn.GELU()`).
//!
//! Reference: `cpu::bias_activation::bias_activation` (the tests and
//! `verify` compare; this module never calls the reference).
//!
//! Run status: executed on the SIMT emulator (its tests and `verify --device
//! emu`); not run on a GPU (no GPU run recorded in BENCHMARKS.md).

use super::check::{grid_for, i64_of, same_device, shape_is};
use super::device::Device;
use super::numerics::Tolerance;
use super::params::BiasActivationParams;
use super::runtime::{KernelRef, LaunchParams, LaunchShape};
use super::tensor::{DeviceElement, DeviceTensor};
use crate::activation::Activation;
use crate::{DType, Error, Result};

/// The module: `kernels/bias_activation.cu`.
pub const MODULE: &str = "bias_activation";

/// The activations with a kernel (every [`Activation`]).
pub const ACTIVATIONS: [Activation; 4] = [
    Activation::Relu,
    Activation::Gelu,
    Activation::GeluTanh,
    Activation::Swish,
];

/// The symbol `bias_activation_<act>_<dtype>` of `bias_activation.cu`.
pub const fn kernel(act: Activation, dtype: DType) -> KernelRef {
    use Activation::*;
    use DType::*;
    let symbol = match (act, dtype) {
        (Relu, F32) => "bias_activation_relu_f32",
        (Relu, F16) => "bias_activation_relu_f16",
        (Relu, BF16) => "bias_activation_relu_bf16",
        (Gelu, F32) => "bias_activation_gelu_f32",
        (Gelu, F16) => "bias_activation_gelu_f16",
        (Gelu, BF16) => "bias_activation_gelu_bf16",
        (GeluTanh, F32) => "bias_activation_gelu_tanh_f32",
        (GeluTanh, F16) => "bias_activation_gelu_tanh_f16",
        (GeluTanh, BF16) => "bias_activation_gelu_tanh_bf16",
        (Swish, F32) => "bias_activation_swish_f32",
        (Swish, F16) => "bias_activation_swish_f16",
        (Swish, BF16) => "bias_activation_swish_bf16",
    };
    KernelRef {
        module: MODULE,
        symbol,
    }
}

/// Every kernel of this op (for the static checks against the fatbin).
pub fn kernels() -> Vec<KernelRef> {
    ACTIVATIONS
        .iter()
        .flat_map(|&a| DType::ALL.map(|d| kernel(a, d)))
        .collect()
}

/// relu in f32: `max(h, 0)` of the same f32 sum as the reference, exact.
pub const TOL_RELU_F32: Tolerance = Tolerance {
    abs: 0.0,
    rel: 0.0,
    reason: "relu of the same f32 sum is exact",
};

/// gelu / gelu_tanh / swish in f32 for |x + bias| <= 8: libdevice
/// erff / tanhf / expf are within 2 ulp; `1 + erf(h/√2)` cancels for
/// negative h, which costs up to 0.5·|h|·2 ulp(1) <= 1e-6 absolute.
pub const TOL_SMOOTH_F32: Tolerance = Tolerance {
    abs: 2e-6,
    rel: 4.0 * f32::EPSILON,
    reason: "libdevice erff/tanhf/expf <= 2 ulp; cancellation in 1 + erf for h < 0 (|h| <= 8)",
};

/// The tolerance of `act` for outputs stored in `dtype` (the f32 tolerance
/// plus one rounding to the storage dtype, [`Tolerance::stored_as`]).
pub fn tolerance(act: Activation, dtype: DType) -> Tolerance {
    let f32_tol = match act {
        Activation::Relu => TOL_RELU_F32,
        Activation::Gelu | Activation::GeluTanh | Activation::Swish => TOL_SMOOTH_F32,
    };
    Tolerance::stored_as(f32_tol, dtype)
}

/// Threads per block; matches `__launch_bounds__(256)` in bias_activation.cu.
const BLOCK: u32 = 256;

// SAFETY: BiasActivationParams is a `#[repr(C)]` plain-old-data struct
// generated from params.h, layout-checked by bindgen; passed by value.
unsafe impl LaunchParams for BiasActivationParams {}

/// `act(x + bias)` into a new tensor.
///
/// - `x`: `[..., cols]` (rank >= 1), e.g. fc1's output `[tokens, ffn_dim]`;
/// - `bias`: `[cols]` (fc1's bias), or `None` for the activation alone.
///
/// # Errors
/// [`Error::Shape`] for a rank-0 `x` or a `bias` that is not `[cols]`;
/// [`Error::InvalidArgument`] for operands on different devices;
/// [`Error::Cuda`] on allocation or launch failure.
pub fn bias_activation<T: DeviceElement>(
    x: &DeviceTensor<T>,
    bias: Option<&DeviceTensor<T>>,
    act: Activation,
) -> Result<DeviceTensor<T>> {
    let mut out = DeviceTensor::zeros(x.device(), x.shape())?;
    run(x.device_ptr(), x.shape(), x.device(), bias, act, &mut out)?;
    Ok(out)
}

/// `x = act(x + bias)` in place.
///
/// # Errors
/// As [`bias_activation`].
pub fn bias_activation_in_place<T: DeviceElement>(
    x: &mut DeviceTensor<T>,
    bias: Option<&DeviceTensor<T>>,
    act: Activation,
) -> Result<()> {
    let ptr = x.device_ptr();
    let shape = x.shape().to_vec();
    let device = x.device().clone();
    run(ptr, &shape, &device, bias, act, x)
}

/// Shared body: `x_ptr` is the input (`shape` on `device`), `out` the output
/// with the same shape (the same buffer when in place).
fn run<T: DeviceElement>(
    x_ptr: u64,
    shape: &[usize],
    device: &std::sync::Arc<Device>,
    bias: Option<&DeviceTensor<T>>,
    act: Activation,
    out: &mut DeviceTensor<T>,
) -> Result<()> {
    const OP: &str = "bias_activation";
    let Some(&cols) = shape.last() else {
        return Err(Error::shape(OP, "x [..., cols]", "x []"));
    };
    if let Some(b) = bias {
        shape_is(OP, "bias", b, &[cols])?;
        same_device(OP, "bias", device, b)?;
    }
    shape_is(OP, "out", out, shape)?;
    same_device(OP, "out", device, out)?;
    let n: usize = shape.iter().product();
    if n == 0 {
        return Ok(());
    }
    let params = BiasActivationParams {
        x: x_ptr as *const core::ffi::c_void,
        bias: bias.map_or(core::ptr::null(), |b| {
            b.device_ptr() as *const core::ffi::c_void
        }),
        out: out.device_ptr_mut() as *mut core::ffi::c_void,
        rows: i64_of(OP, "rows", n / cols)?,
        cols: i64_of(OP, "cols", cols)?,
    };
    // SAFETY: `x_ptr` and `out` hold `n` elements of T on `device` (the same
    // buffer when in place, which the element-wise kernel allows); `bias`
    // holds `cols`; all outlive the launch (same stream for later uses).
    unsafe { launch(device, T::DTYPE, act, params) }
}

/// Launches the bias + activation kernel for `dtype` and `act` with
/// caller-built params on `device`'s stream (the raw API).
///
/// # Errors
/// [`Error::InvalidArgument`] for `rows < 0` or `cols < 1`; [`Error::Cuda`]
/// on launch failure.
///
/// # Safety
/// `p.x` and `p.out` must point to `p.rows * p.cols` elements of `dtype` and
/// `p.bias` (unless null) to `p.cols`, in `device`'s context; `p.out` is
/// exactly `p.x` or does not overlap it; valid until the stream has run the kernel.
pub unsafe fn launch(
    device: &Device,
    dtype: DType,
    act: Activation,
    p: BiasActivationParams,
) -> Result<()> {
    const OP: &str = "bias_activation";
    if p.rows < 0 || p.cols < 1 {
        return Err(Error::invalid(
            OP,
            format!("rows {} must be >= 0 and cols {} >= 1", p.rows, p.cols),
        ));
    }
    let n = p
        .rows
        .checked_mul(p.cols)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            Error::invalid(OP, format!("rows {} x cols {} overflows", p.rows, p.cols))
        })?;
    if n == 0 {
        return Ok(());
    }
    let shape = LaunchShape::linear(
        grid_for(n.div_ceil(16 / dtype.size_in_bytes()), BLOCK as usize),
        BLOCK,
    );
    // SAFETY: the caller guarantees the pointers (see `# Safety`); the
    // grid-stride kernel is correct for any grid.
    unsafe { device.launch(kernel(act, dtype), shape, &p) }
}
