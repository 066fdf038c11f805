//! Linear layer on the device (`kernels/linear.cu`), with a fused epilogue:
//! `out = act(x · wᵀ + bias) + residual`, x `[m, k]`, w `[n, k]` (PyTorch
//! `nn.Linear` / Hugging Face layout, out_features × in_features), bias `[n]`
//! and residual `[m, n]` optional, out `[m, n]`; products accumulated in f32.
//! Every projection of the model is one call: the fused QKV projection
//! (q, k, v weights concatenated into `[3·d_model, d_model]`), out_proj,
//! fc1 with the activation fused, fc2, and the vocabulary logits
//! `x · sharedᵀ + final_logits_bias` (n = vocab, e.g. 58101).
//!
//! Paths (chosen per shape by [`plan`]):
//! - f16 / bf16: tensor cores (`mma.sync.m16n8k16`, f32 accumulate, sm_80+)
//!   in one of the [`Tile`]s, with a `cp.async` pipeline and `ldmatrix`
//!   loads; k not a multiple of 8 or an operand not 16-byte aligned takes
//!   the `_unaligned` variant of the same kernel (element loads, same maths).
//! - f32: a SIMT FMA kernel (no TF32), for f32 runs of the whole model.
//! - Split-K for shapes whose tile grid cannot fill the device (decode:
//!   m = batch × beam rows): k is sliced over `splits` CTAs per tile, each
//!   writes f32 partial sums to a workspace `[splits, m, n]`, and a second
//!   kernel adds the slices in order (deterministic: the same shape gives
//!   the same bits every run) and applies the epilogue.
//!
//! Non-finite values propagate as IEEE arithmetic has them: a NaN in row i
//! of x makes row i NaN, an inf in row j of w column j inf / NaN (tile
//! padding and split-K slices add nothing); relu maps NaN to 0 (`fmaxf`,
//! as the CPU reference's `f64::max`; PyTorch's relu keeps NaN), and gelu
//! / swish of −inf are NaN on both.
//!
//! The sum order depends on the plan, and the plan on `m`: a row computed
//! in a batch is equal to the row alone within the tolerance of
//! [`crate::ops::linear`], not bit for bit (unlike `cpu::linear`).
//!
//! Reference: `cpu::linear::linear` plus the epilogue (`crate::ops::linear`
//! compares against f64; this module never calls the reference).
//!
//! Run status: executed on the SIMT emulator (its tests and `verify --device
//! emu`); not run on a GPU (no GPU run recorded in BENCHMARKS.md).

use std::sync::Arc;

use super::check::{grid_for, i64_of, same_device, shape_is};
use super::device::Device;
use super::params::LinearParams;
use super::runtime::{KernelRef, LaunchParams, LaunchShape};
use super::tensor::{DeviceElement, DeviceTensor};
use crate::activation::Activation;
use crate::{DType, Error, Result};

/// The module: `kernels/linear.cu`.
pub const MODULE: &str = "linear";

const OP: &str = "linear";

/// A CTA tile configuration of `linear.cu` (its `Tile<...>` aliases and
/// the SIMT kernel's constants; the two must agree, and an emulator run of
/// every tile, which the tests do, faults on a launch whose shared memory
/// is smaller than the kernel uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tile {
    /// 128 × 256, k-step 32, 8 warps of 64 × 64, 3 stages (f16 / bf16).
    T128x256,
    /// 128 × 128, k-step 32, 8 warps of 64 × 32, 4 stages (f16 / bf16).
    T128x128,
    /// 64 × 64, k-step 32, 4 warps of 32 × 32, 4 stages (f16 / bf16).
    T64x64,
    /// 16 × 64, k-step 64, 4 warps of 16 × 16, 4 stages (f16 / bf16): decode.
    T16x64,
    /// 64 × 64, k-step 16, 256 threads of 4 × 4 outputs (f32, SIMT FMA).
    Simt64x64,
}

impl Tile {
    /// Every tile.
    pub const ALL: [Tile; 5] = [
        Tile::T128x256,
        Tile::T128x128,
        Tile::T64x64,
        Tile::T16x64,
        Tile::Simt64x64,
    ];

    /// The tensor-core tiles (f16 / bf16 storage).
    pub const TENSOR_CORE: [Tile; 4] = [Tile::T128x256, Tile::T128x128, Tile::T64x64, Tile::T16x64];

    /// `(BM, BN, BK, stages, threads)`.
    const fn dims(self) -> (usize, usize, usize, usize, u32) {
        match self {
            Tile::T128x256 => (128, 256, 32, 3, 256),
            Tile::T128x128 => (128, 128, 32, 4, 256),
            Tile::T64x64 => (64, 64, 32, 4, 128),
            Tile::T16x64 => (16, 64, 64, 4, 128),
            Tile::Simt64x64 => (64, 64, 16, 1, 256),
        }
    }

    /// Rows of out per CTA.
    pub const fn bm(self) -> usize {
        self.dims().0
    }

    /// Columns of out per CTA.
    pub const fn bn(self) -> usize {
        self.dims().1
    }

    /// Columns of k per pipeline step.
    pub const fn bk(self) -> usize {
        self.dims().2
    }

    /// Threads per CTA.
    pub const fn threads(self) -> u32 {
        self.dims().4
    }

    /// Whether this tile runs on tensor cores (f16 / bf16 only).
    pub const fn tensor_core(self) -> bool {
        !matches!(self, Tile::Simt64x64)
    }

    /// Dynamic shared memory per CTA, bytes: the larger of the operand
    /// pipeline (stages × (BM + BN) rows of BK + 8 16-bit elements) and the
    /// f32 epilogue tile (BM rows of BN + 4), as `Tile::SMEM_BYTES` in
    /// linear.cu; SIMT: two [BK][64 + 4] f32 tiles or the epilogue tile.
    pub const fn shared_bytes(self) -> u32 {
        let (bm, bn, bk, stages, _) = self.dims();
        let epilogue = bm * (bn + 4) * 4;
        let pipeline = match self {
            Tile::Simt64x64 => 2 * bk * (bm + 4) * 4,
            _ => stages * (bm + bn) * (bk + 8) * 2,
        };
        (if pipeline > epilogue {
            pipeline
        } else {
            epilogue
        }) as u32
    }

    /// The tile's name as in the kernel symbols, e.g. `128x128x32`.
    pub const fn name(self) -> &'static str {
        match self {
            Tile::T128x256 => "128x256x32",
            Tile::T128x128 => "128x128x32",
            Tile::T64x64 => "64x64x32",
            Tile::T16x64 => "16x64x64",
            Tile::Simt64x64 => "simt64x64x16",
        }
    }

    /// CTAs of this tile over an `m × n` output (one k-slice).
    pub fn ctas(self, m: usize, n: usize) -> usize {
        m.div_ceil(self.bm()) * n.div_ceil(self.bn())
    }
}

/// How one call runs: the tile and the number of k-slices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearPlan {
    /// The CTA tile.
    pub tile: Tile,
    /// k-slices (split-K), >= 1; 1 writes the epilogue directly.
    pub splits: u32,
}

/// At most this many k-slices (the reduction reads `splits` partial planes).
pub const MAX_SPLITS: u32 = 16;
/// Each k-slice covers at least this many k-steps (a slice shorter than the
/// pipeline spends its time filling it).
pub const MIN_STEPS_PER_SPLIT: usize = 2;

/// The plan [`linear`] uses for `m × n × k` in `dtype` on a device with
/// `sms` multiprocessors. The heuristic (not tuned on a GPU yet: no GPU
/// was available when it was written):
///
/// 1. f32 storage: the SIMT tile. f16 / bf16: m <= 16 (decode) takes the
///    16 × 64 tile; otherwise the first of 128 × 256, 128 × 128 whose CTA
///    count fills every multiprocessor at least once, else 64 × 64.
/// 2. Split-K when the tile grid has fewer CTAs than multiprocessors:
///    enough slices for about two CTAs per multiprocessor, at most
///    [`MAX_SPLITS`], each slice at least [`MIN_STEPS_PER_SPLIT`] k-steps,
///    and no empty slice.
pub fn plan(m: usize, n: usize, k: usize, dtype: DType, sms: u32) -> LinearPlan {
    let sms = sms.max(1) as usize;
    let tile = match dtype {
        DType::F32 => Tile::Simt64x64,
        DType::F16 | DType::BF16 if m <= 16 => Tile::T16x64,
        DType::F16 | DType::BF16 => [Tile::T128x256, Tile::T128x128]
            .into_iter()
            .find(|t| t.ctas(m, n) >= sms)
            .unwrap_or(Tile::T64x64),
    };
    let ctas = tile.ctas(m, n).max(1);
    let steps = k.div_ceil(tile.bk());
    let mut splits = 1;
    if ctas < sms {
        let wanted = (2 * sms).div_ceil(ctas);
        let most = (steps / MIN_STEPS_PER_SPLIT).min(MAX_SPLITS as usize);
        splits = wanted.min(most).max(1);
    }
    LinearPlan {
        tile,
        splits: effective_splits(steps, splits as u32).0,
    }
}

/// `(splits, k-steps per split)` with no empty slice: `per = ⌈steps /
/// splits⌉`, then `⌈steps / per⌉` slices (1 slice for k = 0).
fn effective_splits(steps: usize, splits: u32) -> (u32, usize) {
    if steps == 0 {
        return (1, 1);
    }
    let per = steps.div_ceil(splits.max(1) as usize);
    (steps.div_ceil(per) as u32, per)
}

/// The GEMM symbol of `tile` for `dtype` (`aligned`: the cp.async variant).
///
/// # Errors
/// [`Error::InvalidArgument`] for a tensor-core tile with f32 or the SIMT
/// tile with f16 / bf16.
pub fn kernel(tile: Tile, dtype: DType, aligned: bool) -> Result<KernelRef> {
    use DType::*;
    use Tile::*;
    let symbol = match (tile, dtype, aligned) {
        (T128x256, BF16, true) => "linear_tc_128x256x32_bf16",
        (T128x256, BF16, false) => "linear_tc_128x256x32_bf16_unaligned",
        (T128x256, F16, true) => "linear_tc_128x256x32_f16",
        (T128x256, F16, false) => "linear_tc_128x256x32_f16_unaligned",
        (T128x128, BF16, true) => "linear_tc_128x128x32_bf16",
        (T128x128, BF16, false) => "linear_tc_128x128x32_bf16_unaligned",
        (T128x128, F16, true) => "linear_tc_128x128x32_f16",
        (T128x128, F16, false) => "linear_tc_128x128x32_f16_unaligned",
        (T64x64, BF16, true) => "linear_tc_64x64x32_bf16",
        (T64x64, BF16, false) => "linear_tc_64x64x32_bf16_unaligned",
        (T64x64, F16, true) => "linear_tc_64x64x32_f16",
        (T64x64, F16, false) => "linear_tc_64x64x32_f16_unaligned",
        (T16x64, BF16, true) => "linear_tc_16x64x64_bf16",
        (T16x64, BF16, false) => "linear_tc_16x64x64_bf16_unaligned",
        (T16x64, F16, true) => "linear_tc_16x64x64_f16",
        (T16x64, F16, false) => "linear_tc_16x64x64_f16_unaligned",
        (Simt64x64, F32, _) => "linear_simt_f32",
        (tile, dtype, _) => {
            return Err(Error::invalid(
                OP,
                format!(
                    "tile {} has no {dtype} kernel (the tensor-core tiles are f16 / bf16; f32 \
                     has simt64x64x16)",
                    tile.name()
                ),
            ))
        }
    };
    Ok(KernelRef {
        module: MODULE,
        symbol,
    })
}

/// The split-K reduction + epilogue symbol for `dtype`.
pub const fn reduce_kernel(dtype: DType) -> KernelRef {
    let symbol = match dtype {
        DType::F32 => "linear_reduce_f32",
        DType::F16 => "linear_reduce_f16",
        DType::BF16 => "linear_reduce_bf16",
    };
    KernelRef {
        module: MODULE,
        symbol,
    }
}

/// Every kernel of this op (for the static checks against the fatbin).
pub fn kernels() -> Vec<KernelRef> {
    let mut v: Vec<KernelRef> = Tile::TENSOR_CORE
        .iter()
        .flat_map(|&t| {
            [DType::BF16, DType::F16]
                .into_iter()
                .flat_map(move |d| [true, false].map(|a| kernel(t, d, a)))
        })
        .filter_map(Result::ok)
        .collect();
    v.extend(kernel(Tile::Simt64x64, DType::F32, true));
    v.extend(DType::ALL.map(reduce_kernel));
    v
}

/// The tensor-core kernels with 16-byte `cp.async` copies (the static
/// checks want HMMA, LDSM and LDGSTS in their SASS).
pub fn tensor_core_kernels() -> Vec<KernelRef> {
    Tile::TENSOR_CORE
        .iter()
        .flat_map(|&t| [DType::BF16, DType::F16].map(|d| kernel(t, d, true)))
        .filter_map(Result::ok)
        .collect()
}

/// The epilogue of one call: `act(x · wᵀ + bias) + residual`.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a, T: DeviceElement> {
    /// `[n]` added to every row before the activation (nn.Linear's bias,
    /// or final_logits_bias for the logits).
    pub bias: Option<&'a DeviceTensor<T>>,
    /// Applied after the bias (fc1's activation_function).
    pub activation: Option<Activation>,
    /// `[..., n]` (the output's shape) added last.
    pub residual: Option<&'a DeviceTensor<T>>,
}

impl<T: DeviceElement> Default for Epilogue<'_, T> {
    fn default() -> Self {
        Epilogue {
            bias: None,
            activation: None,
            residual: None,
        }
    }
}

impl<'a, T: DeviceElement> Epilogue<'a, T> {
    /// Only a bias (nn.Linear).
    pub fn bias(bias: &'a DeviceTensor<T>) -> Self {
        Epilogue {
            bias: Some(bias),
            ..Self::default()
        }
    }
}

/// `act(x · wᵀ + bias) + residual` into a new tensor, with the plan of
/// [`plan`] for this shape and device.
///
/// - `x`: `[..., k]` (rank >= 1; the leading dimensions are the m rows);
/// - `w`: `[n, k]`;
/// - returns `[..., n]`.
///
/// # Errors
/// [`Error::Shape`] when `w` is not `[n, k]` with the `k` of `x`, or a bias
/// / residual does not match; [`Error::InvalidArgument`] for operands on
/// different devices or sizes past the kernels' limits; [`Error::Cuda`] on
/// allocation (out of memory) or launch failure.
pub fn linear<T: DeviceElement>(
    x: &DeviceTensor<T>,
    w: &DeviceTensor<T>,
    epilogue: Epilogue<'_, T>,
) -> Result<DeviceTensor<T>> {
    let (m, n, k) = dims(x, w)?;
    let plan = plan(m, n, k, T::DTYPE, x.device().multiprocessor_count());
    linear_with_plan(x, w, epilogue, plan)
}

/// As [`linear`] with a caller-chosen plan (tests cover every tile and
/// split count; benchmarks compare plans).
///
/// # Errors
/// As [`linear`], and [`Error::InvalidArgument`] for a plan whose tile has
/// no kernel for `T` or with `splits` outside 1 ..= [`MAX_SPLITS`].
pub fn linear_with_plan<T: DeviceElement>(
    x: &DeviceTensor<T>,
    w: &DeviceTensor<T>,
    epilogue: Epilogue<'_, T>,
    plan: LinearPlan,
) -> Result<DeviceTensor<T>> {
    let (_, n, _) = dims(x, w)?;
    let mut shape = x.shape().to_vec();
    if let Some(last) = shape.last_mut() {
        *last = n;
    }
    let mut out = DeviceTensor::zeros(x.device(), &shape)?;
    run(x, w, epilogue, plan, OutMode::Separate(&mut out), None)?;
    Ok(out)
}

/// `out = act(x · wᵀ + bias) + residual`, writing an existing `[..., n]`
/// tensor (no allocation unless the plan splits k).
///
/// # Errors
/// As [`linear`], and [`Error::Shape`] when `out` is not `[..., n]`.
pub fn linear_into<T: DeviceElement>(
    x: &DeviceTensor<T>,
    w: &DeviceTensor<T>,
    epilogue: Epilogue<'_, T>,
    out: &mut DeviceTensor<T>,
) -> Result<()> {
    let (m, n, k) = dims(x, w)?;
    let plan = plan(m, n, k, T::DTYPE, x.device().multiprocessor_count());
    run(x, w, epilogue, plan, OutMode::Separate(out), None)
}

/// The split-K workspace (f32 partial sums): a [`super::workspace::Workspace`].
pub type LinearWorkspace = super::workspace::Workspace;

/// [`linear_into`] with a caller-chosen plan and a reusable split-K
/// workspace: no allocation once the workspace has grown to the largest
/// shape (the decode loop's form).
///
/// # Errors
/// As [`linear_into`] and [`linear_with_plan`].
pub fn linear_into_with<T: DeviceElement>(
    x: &DeviceTensor<T>,
    w: &DeviceTensor<T>,
    epilogue: Epilogue<'_, T>,
    out: &mut DeviceTensor<T>,
    plan: LinearPlan,
    workspace: &mut LinearWorkspace,
) -> Result<()> {
    run(
        x,
        w,
        epilogue,
        plan,
        OutMode::Separate(out),
        Some(workspace),
    )
}

/// `acc = act(x · wᵀ + bias) + acc`: the residual is the output (a
/// sublayer's projection added onto its input in place).
///
/// # Errors
/// As [`linear_into`]; `epilogue.residual` must be `None` (the residual is
/// `acc`).
pub fn linear_accumulate<T: DeviceElement>(
    x: &DeviceTensor<T>,
    w: &DeviceTensor<T>,
    epilogue: Epilogue<'_, T>,
    acc: &mut DeviceTensor<T>,
) -> Result<()> {
    let (m, n, k) = dims(x, w)?;
    let plan = plan(m, n, k, T::DTYPE, x.device().multiprocessor_count());
    linear_accumulate_with_plan(x, w, epilogue, acc, plan)
}

/// [`linear_accumulate`] with a caller-chosen plan.
///
/// # Errors
/// As [`linear_accumulate`] and [`linear_with_plan`].
pub fn linear_accumulate_with_plan<T: DeviceElement>(
    x: &DeviceTensor<T>,
    w: &DeviceTensor<T>,
    epilogue: Epilogue<'_, T>,
    acc: &mut DeviceTensor<T>,
    plan: LinearPlan,
) -> Result<()> {
    if epilogue.residual.is_some() {
        return Err(Error::invalid(
            OP,
            "linear_accumulate adds into its output; pass no separate residual",
        ));
    }
    run(x, w, epilogue, plan, OutMode::Accumulate(acc), None)
}

/// Where the output goes: a separate tensor, or onto the residual in place.
enum OutMode<'o, T: DeviceElement> {
    Separate(&'o mut DeviceTensor<T>),
    Accumulate(&'o mut DeviceTensor<T>),
}

/// `(m, n, k)` of `x [..., k] · w[n, k]ᵀ`.
fn dims<T: DeviceElement>(
    x: &DeviceTensor<T>,
    w: &DeviceTensor<T>,
) -> Result<(usize, usize, usize)> {
    let Some(&k) = x.shape().last() else {
        return Err(Error::shape(OP, "x [..., k]", "x []"));
    };
    if w.shape().len() != 2 || w.shape()[1] != k {
        return Err(Error::shape(
            OP,
            format!("w [n, {k}] (k of x {:?})", x.shape()),
            format!("w {:?}", w.shape()),
        ));
    }
    // The product of the leading dimensions (also when k = 0).
    let m = x.shape()[..x.shape().len() - 1].iter().product();
    Ok((m, w.shape()[0], k))
}

fn run<T: DeviceElement>(
    x: &DeviceTensor<T>,
    w: &DeviceTensor<T>,
    epilogue: Epilogue<'_, T>,
    plan: LinearPlan,
    out: OutMode<'_, T>,
    workspace: Option<&mut LinearWorkspace>,
) -> Result<()> {
    let (m, n, k) = dims(x, w)?;
    let device = x.device();
    same_device(OP, "w", device, w)?;
    let mut out_shape = x.shape().to_vec();
    if let Some(last) = out_shape.last_mut() {
        *last = n;
    }
    if let Some(b) = epilogue.bias {
        shape_is(OP, "bias", b, &[n])?;
        same_device(OP, "bias", device, b)?;
    }
    if let Some(r) = epilogue.residual {
        shape_is(OP, "residual", r, &out_shape)?;
        same_device(OP, "residual", device, r)?;
    }
    let (out, in_place) = match out {
        OutMode::Separate(o) => (o, false),
        OutMode::Accumulate(o) => (o, true),
    };
    shape_is(OP, "out", out, &out_shape)?;
    same_device(OP, "out", device, out)?;
    check_plan(plan, T::DTYPE)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let steps = k.div_ceil(plan.tile.bk());
    let (splits, _) = effective_splits(steps, plan.splits);
    let mut own = LinearWorkspace::new();
    let partials = if splits > 1 {
        let elements = (splits as usize)
            .checked_mul(m)
            .and_then(|e| e.checked_mul(n))
            .ok_or_else(|| Error::invalid(OP, format!("{splits} x {m} x {n} partials overflow")))?;
        workspace
            .unwrap_or(&mut own)
            .get(device, elements)?
            .device_ptr_mut() as *mut f32
    } else {
        core::ptr::null_mut()
    };
    let out_ptr = out.device_ptr_mut();
    let params = LinearParams {
        x: x.device_ptr() as *const core::ffi::c_void,
        w: w.device_ptr() as *const core::ffi::c_void,
        bias: epilogue.bias.map_or(core::ptr::null(), |b| {
            b.device_ptr() as *const core::ffi::c_void
        }),
        residual: if in_place {
            out_ptr as *const core::ffi::c_void
        } else {
            epilogue.residual.map_or(core::ptr::null(), |r| {
                r.device_ptr() as *const core::ffi::c_void
            })
        },
        out: out_ptr as *mut core::ffi::c_void,
        partials,
        m: i64_of(OP, "m", m)?,
        n: i64_of(OP, "n", n)?,
        k: i64_of(OP, "k", k)?,
        activation: epilogue.activation.map_or(-1, activation_code),
        splits: 0,
        k_steps_per_split: 0,
    };
    // The cp.async variant needs every row of x and w to start 16-byte
    // aligned: k a multiple of 8 elements and 16-byte aligned bases (the
    // allocator's are; a caller's view might not be).
    let aligned =
        k % 8 == 0 && (params.x as u64).is_multiple_of(16) && (params.w as u64).is_multiple_of(16);
    let aligned = aligned && T::DTYPE != DType::F32;
    // SAFETY: x holds m·k, w n·k, bias n, residual / out m·n elements of T
    // on `device` (shapes checked above); out is a fresh or exclusively
    // borrowed tensor, so it overlaps none of x, w, bias, or residual
    // unless it is the residual itself (in place, allowed); the workspace
    // (`own` or the caller's) holds splits·m·n f32. All outlive the launch
    // in stream order (a dropped workspace is freed on the same stream).
    unsafe { launch(device, T::DTYPE, plan, aligned, params) }
}

fn check_plan(plan: LinearPlan, dtype: DType) -> Result<()> {
    kernel(plan.tile, dtype, true)?;
    if plan.splits == 0 || plan.splits > MAX_SPLITS {
        return Err(Error::invalid(
            OP,
            format!("splits {} outside 1..={MAX_SPLITS}", plan.splits),
        ));
    }
    Ok(())
}

/// The `TkActivation` code of `act` (params.h).
fn activation_code(act: Activation) -> i32 {
    use super::params::TkActivation as A;
    (match act {
        Activation::Relu => A::TK_ACT_RELU,
        Activation::Gelu => A::TK_ACT_GELU,
        Activation::GeluTanh => A::TK_ACT_GELU_TANH,
        Activation::Swish => A::TK_ACT_SWISH,
    }) as i32
}

/// The f32 elements of the split-K workspace a plan needs for `m × n × k`
/// (0 when it does not split), for callers of [`launch`] that keep their
/// own workspace.
///
/// # Errors
/// [`Error::InvalidArgument`] when the count overflows `usize`.
pub fn workspace_elements(plan: LinearPlan, m: usize, n: usize, k: usize) -> Result<usize> {
    let (splits, _) = effective_splits(k.div_ceil(plan.tile.bk()), plan.splits);
    if splits <= 1 {
        return Ok(0);
    }
    (splits as usize)
        .checked_mul(m)
        .and_then(|e| e.checked_mul(n))
        .ok_or_else(|| Error::invalid(OP, format!("{splits} x {m} x {n} partials overflow")))
}

// SAFETY: LinearParams is a `#[repr(C)]` plain-old-data struct generated
// from params.h, layout-checked by bindgen; passed by value.
unsafe impl LaunchParams for LinearParams {}

/// Launches the GEMM of `plan` (and, when it splits k, the reduction) for
/// `dtype` with caller-built params on `device`'s stream: the raw API.
/// `p.splits` and `p.k_steps_per_split` are set here from `plan` (slices
/// that would be empty are dropped); `aligned` picks the cp.async variant.
///
/// # Errors
/// [`Error::InvalidArgument`] for negative sizes, a plan with no kernel for
/// `dtype`, a split plan without `p.partials`, `aligned` with `k % 8 != 0`
/// or x / w not 16-byte aligned (f16 / bf16; the f32 kernel has one form
/// and ignores `aligned`), or a grid past the launch limits (n up to 65535
/// column tiles); [`Error::Cuda`] on launch failure.
///
/// # Safety
/// `p.x` points to `m·k`, `p.w` to `n·k`, `p.bias` (unless null) to `n`,
/// `p.residual` (unless null) and `p.out` to `m·n` elements of `dtype`, and
/// `p.partials` (when the plan splits) to [`workspace_elements`] f32, in
/// `device`'s context; `p.out` overlaps none of them except that it may be
/// exactly `p.residual`; all stay valid until the stream has run the
/// kernels.
pub unsafe fn launch(
    device: &Device,
    dtype: DType,
    plan: LinearPlan,
    aligned: bool,
    mut p: LinearParams,
) -> Result<()> {
    if p.m < 0 || p.n < 0 || p.k < 0 {
        return Err(Error::invalid(
            OP,
            format!("m {}, n {}, k {} must be >= 0", p.m, p.n, p.k),
        ));
    }
    check_plan(plan, dtype)?;
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    if m == 0 || n == 0 {
        return Ok(());
    }
    let tile = plan.tile;
    let (splits, per) = effective_splits(k.div_ceil(tile.bk()), plan.splits);
    if splits > 1 && p.partials.is_null() {
        return Err(Error::invalid(
            OP,
            format!("a plan of {splits} k-slices needs a partials workspace"),
        ));
    }
    if aligned
        && dtype != DType::F32
        && (k % 8 != 0 || !(p.x as u64).is_multiple_of(16) || !(p.w as u64).is_multiple_of(16))
    {
        return Err(Error::invalid(
            OP,
            "the aligned (cp.async) kernel needs k % 8 == 0 and 16-byte aligned x and w",
        ));
    }
    // Row tiles on x, column tiles on y (as linear.cu reads them).
    let grid_x = m.div_ceil(tile.bm());
    let grid_y = n.div_ceil(tile.bn());
    if grid_x > i32::MAX as usize || grid_y > 65_535 {
        return Err(Error::invalid(
            OP,
            format!(
                "m {m} x n {n} needs {grid_x} row tiles x {grid_y} column tiles, past the launch \
                 limits (row tiles <= 2^31 - 1, column tiles <= 65535: n <= {} for tile {})",
                65_535 * tile.bn(),
                tile.name()
            ),
        ));
    }
    p.splits = splits as i32;
    p.k_steps_per_split = i32::try_from(per)
        .map_err(|_| Error::invalid(OP, format!("k {k} has too many k-steps")))?;
    let gemm = LaunchShape {
        grid: (grid_x as u32, grid_y as u32, splits),
        block: (tile.threads(), 1, 1),
        shared_mem_bytes: tile.shared_bytes(),
    };
    // SAFETY: the caller guarantees the pointers (see `# Safety`); the grid
    // covers every tile and slice of the shape, as the kernel expects.
    unsafe { device.launch(kernel(tile, dtype, aligned)?, gemm, &p)? };
    if splits > 1 {
        let chunk = 16 / dtype.size_in_bytes();
        let chunks = m * n.div_ceil(chunk);
        let reduce = LaunchShape::linear(grid_for(chunks, 256), 256);
        // SAFETY: as above; the reduction reads the partials the GEMM wrote
        // (stream order) and writes out; its grid-stride loop covers any grid.
        unsafe { device.launch(reduce_kernel(dtype), reduce, &p)? };
    }
    Ok(())
}

/// The device's plan for `m × n × k` in `T` (what [`linear`] would use).
pub fn plan_for<T: DeviceElement>(
    device: &Arc<Device>,
    m: usize,
    n: usize,
    k: usize,
) -> LinearPlan {
    plan(m, n, k, T::DTYPE, device.multiprocessor_count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_the_documented_heuristic() {
        let h200 = 132;
        // Decode: the 16-row tile; fc2 (k 2048) split to fill the device.
        let p = plan(1, 512, 2048, DType::BF16, h200);
        assert_eq!(p.tile, Tile::T16x64);
        assert_eq!(p.splits, 16);
        // The logits at decode have 908 CTAs already: no split.
        assert_eq!(plan(4, 58101, 512, DType::BF16, h200).splits, 1);
        // Large m and n: the biggest tile that fills the device.
        assert_eq!(plan(4096, 2048, 512, DType::F16, h200).tile, Tile::T128x256);
        assert_eq!(plan(2048, 1536, 512, DType::F16, h200).tile, Tile::T128x128);
        assert_eq!(plan(1000, 999, 1001, DType::BF16, h200).tile, Tile::T64x64);
        // f32: always the SIMT tile.
        assert_eq!(
            plan(4096, 4096, 512, DType::F32, h200).tile,
            Tile::Simt64x64
        );
        // No empty slice; k = 0 is one slice.
        for k in [0, 1, 63, 64, 65, 200, 2048, 5000] {
            let p = plan(1, 64, k, DType::BF16, h200);
            let steps = k.div_ceil(64);
            assert!(p.splits >= 1 && p.splits <= MAX_SPLITS);
            if steps > 0 {
                let per = steps.div_ceil(p.splits as usize);
                assert!((p.splits as usize - 1) * per < steps, "k {k}: empty slice");
            } else {
                assert_eq!(p.splits, 1);
            }
        }
    }

    #[test]
    fn shared_memory_matches_the_kernel_tiles() {
        // Tile::SMEM_BYTES in linear.cu for the same parameters.
        assert_eq!(Tile::T128x256.shared_bytes(), 128 * 260 * 4);
        assert_eq!(Tile::T128x128.shared_bytes(), 4 * 256 * 40 * 2);
        assert_eq!(Tile::T64x64.shared_bytes(), 4 * 128 * 40 * 2);
        assert_eq!(Tile::T16x64.shared_bytes(), 4 * 80 * 72 * 2);
        assert_eq!(Tile::Simt64x64.shared_bytes(), 64 * 68 * 4);
        for t in Tile::ALL {
            assert!(t.shared_bytes() <= 232_448, "{t:?}");
        }
    }
}
