//! Fused multi-head attention on the device (`kernels/attention.cu`):
//! `softmax(Q·Kᵀ·scale + mask)·V` per row and head (Vaswani et al. 2017,
//! eq. 1), f32 softmax, the scores never written to memory.
//!
//! Operands are [`HeadView`]s: `[rows, positions, width]` tensors whose
//! heads start at a column (head `h` at `column + h·head_dim`), read in
//! place: the fused QKV projection `[rows, seq, 3·d_model]` gives q, k and
//! v at columns 0, d_model, 2·d_model; the KV cache `[rows, cap, d_model]`
//! gives k and v at column 0 with `k_len <= cap` positions used. The output
//! is `[rows, q_len, heads·head_dim]`, the layout `out_proj` reads.
//!
//! Masks ([`AttentionMask`]): key padding from per-row lengths (a
//! `DeviceTensor<i32>` made once per batch), and causal with an offset
//! (query `i` of `q_len` is position `k_len − q_len + i` and sees keys
//! `0..=` that position, so chunks over a KV cache work). Keys past a row's
//! length are never read and contribute exactly 0; a query with no visible
//! key gets exactly 0. Keys hidden only by the causal mask may be read
//! (multiplied by a probability of 0) and must be finite, as written
//! KV-cache positions are. NaN or inf in the inputs gives NaN on every
//! path (never a 0 that looks like a masked row).
//!
//! Paths ([`plan`]): f16 / bf16 with head_dim 32, 64, 96 or 128 and 16-byte
//! aligned rows, more than [`DECODE_MAX_Q`] queries: the tensor-core
//! FlashAttention-2-style kernel. Everything else (decode, f32 storage,
//! other head_dims up to 256, unaligned views): the SIMT kernel, with the
//! keys split across CTAs (split-KV) when rows × heads cannot fill the
//! device, merged by log-sum-exp in a second kernel.
//!
//! Reference: `cpu::attention::attention_bshd` (the tests and `verify`
//! compare, with an f64 reference; this module never calls them).
//!
//! Run status: executed on the SIMT emulator (its tests and `verify --device
//! emu`); not run on a GPU (no GPU run recorded in BENCHMARKS.md).

use super::check::{grid_for, i64_of, same_device, shape_is};
use super::device::Device;
use super::params::AttentionParams;
use super::runtime::{KernelRef, LaunchParams, LaunchShape};
use super::tensor::{DeviceElement, DeviceTensor};
use super::workspace::Workspace;
use crate::{DType, Error, Result};

/// The module: `kernels/attention.cu`.
pub const MODULE: &str = "attention";

const OP: &str = "attention";

/// head_dims with a tensor-core kernel.
pub const TENSOR_CORE_HEAD_DIMS: [usize; 4] = [32, 64, 96, 128];
/// The largest head_dim (the SIMT kernel keeps two elements per thread).
pub const MAX_HEAD_DIM: usize = 256;
/// Calls with at most this many queries take the SIMT (decode) kernel.
pub const DECODE_MAX_Q: usize = 4;
/// At most this many key splits.
pub const MAX_SPLITS: u32 = 16;
/// Keys per SIMT chunk; a split covers whole chunks.
const SIMT_CHUNK: usize = 128;
/// Queries per tensor-core CTA.
const TC_BLOCK_Q: usize = 64;
/// Keys per tensor-core step.
const TC_BLOCK_K: usize = 64;
/// Threads per CTA of both kernels.
const THREADS: u32 = 128;
/// Dynamic shared memory of the SIMT kernel: q (256 f32), 128 scores, 4
/// partials (`SIMT_SMEM_BYTES` in attention.cu).
const SIMT_SMEM_BYTES: u32 = (256 + 128 + 4) * 4;

/// Shared memory of the tensor-core kernel for `head_dim`: the Q tile and
/// two stages of K and V tiles, rows of `head_dim + 8` 16-bit elements
/// (`TcShape<D>::SMEM_BYTES` in attention.cu).
const fn tc_shared_bytes(head_dim: usize) -> u32 {
    ((TC_BLOCK_Q + 4 * TC_BLOCK_K) * (head_dim + 8) * 2) as u32
}

/// Which kernel runs a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKernel {
    /// Tensor-core prefill (f16 / bf16, head_dim 32 / 64 / 96 / 128, aligned).
    TensorCore,
    /// SIMT, any dtype and head_dim, split-KV.
    Simt,
}

/// A kernel and its number of key splits (the tensor-core kernel: 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionPlan {
    /// The kernel.
    pub kernel: AttentionKernel,
    /// Key splits, 1 ..= [`MAX_SPLITS`] for SIMT; exactly 1 for the tensor-core kernel.
    pub splits: u32,
}

/// The sizes of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionDims {
    /// Heads.
    pub heads: usize,
    /// Elements per head (d_model / heads), 1 ..= [`MAX_HEAD_DIM`].
    pub head_dim: usize,
    /// Key positions used (<= the K / V views' positions).
    pub k_len: usize,
}

/// The heads of a `[rows, positions, width]` tensor, head `h` at column
/// `column + h·head_dim` (see the module docs).
#[derive(Debug)]
pub struct HeadView<'a, T: DeviceElement> {
    /// The tensor, `[rows, positions, width]`.
    pub tensor: &'a DeviceTensor<T>,
    /// Column of head 0.
    pub column: usize,
}

impl<T: DeviceElement> Clone for HeadView<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: DeviceElement> Copy for HeadView<'_, T> {}

impl<'a, T: DeviceElement> HeadView<'a, T> {
    /// Heads from column 0 (a `[rows, positions, heads·head_dim]` tensor).
    pub fn whole(tensor: &'a DeviceTensor<T>) -> Self {
        HeadView { tensor, column: 0 }
    }

    /// Heads from `column` (e.g. `d_model` for k in the fused QKV output).
    pub fn at(tensor: &'a DeviceTensor<T>, column: usize) -> Self {
        HeadView { tensor, column }
    }

    /// `(rows, positions, width)`, checked to be 3-D and to hold the heads.
    fn dims(&self, name: &str, heads: usize, head_dim: usize) -> Result<(usize, usize, usize)> {
        let &[rows, positions, width] = self.tensor.shape() else {
            return Err(Error::shape(
                OP,
                format!("{name} [rows, positions, width]"),
                format!("{name} {:?}", self.tensor.shape()),
            ));
        };
        let end = heads
            .checked_mul(head_dim)
            .and_then(|w| w.checked_add(self.column));
        if end.is_none_or(|end| end > width) {
            return Err(Error::shape(
                OP,
                format!(
                    "{name} width >= column {} + {heads} heads x {head_dim}",
                    self.column
                ),
                format!("{name} width {width}"),
            ));
        }
        Ok((rows, positions, width))
    }

    /// Whether every head row starts 16-byte aligned (the tensor-core kernel's cp.async).
    fn aligned16(&self, width: usize, positions: usize) -> bool {
        let e = std::mem::size_of::<T>();
        (self.tensor.device_ptr() as usize + self.column * e).is_multiple_of(16)
            && (width * e).is_multiple_of(16)
            && (positions * width * e).is_multiple_of(16)
    }
}

/// Which keys each query sees. `Default`: every key up to `k_len`.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttentionMask<'a> {
    /// `[rows]` real keys per row (right padding; keys at `>=` the length
    /// are masked), as `int32`. Values above `k_len` mean `k_len`.
    pub key_lengths: Option<&'a DeviceTensor<i32>>,
    /// Query `i` (position `k_len − q_len + i`) sees keys `0..=` that position.
    pub causal: bool,
}

/// The plan [`attention`] uses (the heuristic; no GPU has tuned it yet):
/// the tensor-core kernel when `tensor_core_ok` (f16 / bf16, a tensor-core
/// head_dim, aligned views) and `q_len > DECODE_MAX_Q`; otherwise SIMT,
/// whose keys are split when `rows × heads` CTAs cannot give every one of
/// the `sms` multiprocessors two: enough splits for that, at most
/// [`MAX_SPLITS`], each at least one 128-key chunk.
pub fn plan(
    rows: usize,
    heads: usize,
    q_len: usize,
    k_len: usize,
    tensor_core_ok: bool,
    sms: u32,
) -> AttentionPlan {
    if tensor_core_ok && q_len > DECODE_MAX_Q {
        return AttentionPlan {
            kernel: AttentionKernel::TensorCore,
            splits: 1,
        };
    }
    let ctas = (rows * heads).max(1);
    let want = (2 * sms.max(1) as usize).div_ceil(ctas);
    let most = k_len.div_ceil(SIMT_CHUNK).clamp(1, MAX_SPLITS as usize);
    AttentionPlan {
        kernel: AttentionKernel::Simt,
        splits: want.clamp(1, most) as u32,
    }
}

/// The kernel symbol of `kernel` for `dtype` and `head_dim`.
///
/// # Errors
/// [`Error::InvalidArgument`] for the tensor-core kernel with f32 or a
/// head_dim it does not have.
pub fn kernel(kernel: AttentionKernel, dtype: DType, head_dim: usize) -> Result<KernelRef> {
    use DType::*;
    let symbol = match (kernel, dtype, head_dim) {
        (AttentionKernel::TensorCore, BF16, 32) => "attention_tc_d32_bf16",
        (AttentionKernel::TensorCore, F16, 32) => "attention_tc_d32_f16",
        (AttentionKernel::TensorCore, BF16, 64) => "attention_tc_d64_bf16",
        (AttentionKernel::TensorCore, F16, 64) => "attention_tc_d64_f16",
        (AttentionKernel::TensorCore, BF16, 96) => "attention_tc_d96_bf16",
        (AttentionKernel::TensorCore, F16, 96) => "attention_tc_d96_f16",
        (AttentionKernel::TensorCore, BF16, 128) => "attention_tc_d128_bf16",
        (AttentionKernel::TensorCore, F16, 128) => "attention_tc_d128_f16",
        (AttentionKernel::Simt, F32, _) => "attention_simt_f32",
        (AttentionKernel::Simt, F16, _) => "attention_simt_f16",
        (AttentionKernel::Simt, BF16, _) => "attention_simt_bf16",
        (AttentionKernel::TensorCore, dtype, d) => {
            return Err(Error::invalid(
                OP,
                format!("no tensor-core kernel for {dtype} head_dim {d} (f16 / bf16 with head_dim 32, 64, 96, 128)"),
            ))
        }
    };
    Ok(KernelRef {
        module: MODULE,
        symbol,
    })
}

/// The split-KV merge kernel for `dtype`.
pub const fn merge_kernel(dtype: DType) -> KernelRef {
    let symbol = match dtype {
        DType::F32 => "attention_merge_f32",
        DType::F16 => "attention_merge_f16",
        DType::BF16 => "attention_merge_bf16",
    };
    KernelRef {
        module: MODULE,
        symbol,
    }
}

/// Every kernel of this op (for the static checks against the fatbin).
pub fn kernels() -> Vec<KernelRef> {
    let mut v = tensor_core_kernels();
    for d in DType::ALL {
        v.extend(kernel(AttentionKernel::Simt, d, 64));
        v.push(merge_kernel(d));
    }
    v
}

/// The tensor-core kernels (the static checks want HMMA, LDSM and LDGSTS).
pub fn tensor_core_kernels() -> Vec<KernelRef> {
    TENSOR_CORE_HEAD_DIMS
        .iter()
        .flat_map(|&hd| {
            [DType::BF16, DType::F16].map(|d| kernel(AttentionKernel::TensorCore, d, hd))
        })
        .filter_map(Result::ok)
        .collect()
}

/// Attention into a new `[rows, q_len, heads·head_dim]` tensor, with the
/// plan of [`plan`] for this shape and device.
///
/// - `q`: `[rows, q_len, ..]` view; `k`, `v`: `[rows, cap, ..]` views with
///   `dims.k_len <= cap`;
/// - `scale`: multiplies `Q·Kᵀ` (`head_dim^-0.5` in Marian).
///
/// # Errors
/// [`Error::Shape`] for non-3-D views, rows that differ, views too narrow
/// for the heads, `k_len` past the K / V positions, or key lengths not
/// `[rows]`; [`Error::InvalidArgument`] for head_dim 0 or above
/// [`MAX_HEAD_DIM`], no heads, operands on different devices, or sizes past
/// the kernels' limits; [`Error::Cuda`] on allocation or launch failure.
pub fn attention<T: DeviceElement>(
    q: HeadView<'_, T>,
    k: HeadView<'_, T>,
    v: HeadView<'_, T>,
    dims: AttentionDims,
    scale: f32,
    mask: AttentionMask<'_>,
) -> Result<DeviceTensor<T>> {
    check_dims(dims)?;
    let (rows, q_len, _) = q.dims("q", dims.heads, dims.head_dim)?;
    let mut out = DeviceTensor::zeros(
        q.tensor.device(),
        &[rows, q_len, dims.heads * dims.head_dim],
    )?;
    attention_into(q, k, v, dims, scale, mask, &mut out, None, None)?;
    Ok(out)
}

/// [`attention`] writing an existing `[rows, q_len, heads·head_dim]`
/// tensor, with an optional forced plan and a reusable split-KV workspace
/// (no allocation once it has grown: the decode loop's form).
///
/// # Errors
/// As [`attention`], and [`Error::Shape`] for an `out` of another shape;
/// [`Error::InvalidArgument`] for a plan with no kernel for the call.
#[allow(clippy::too_many_arguments)] // the call's natural operands
pub fn attention_into<T: DeviceElement>(
    q: HeadView<'_, T>,
    k: HeadView<'_, T>,
    v: HeadView<'_, T>,
    dims: AttentionDims,
    scale: f32,
    mask: AttentionMask<'_>,
    out: &mut DeviceTensor<T>,
    plan_override: Option<AttentionPlan>,
    workspace: Option<&mut Workspace>,
) -> Result<()> {
    let AttentionDims {
        heads,
        head_dim,
        k_len,
    } = dims;
    check_dims(dims)?;
    let device = q.tensor.device();
    let (rows, q_len, qw) = q.dims("q", heads, head_dim)?;
    let (k_rows, k_pos, kw) = k.dims("k", heads, head_dim)?;
    let (v_rows, v_pos, vw) = v.dims("v", heads, head_dim)?;
    same_device(OP, "k", device, k.tensor)?;
    same_device(OP, "v", device, v.tensor)?;
    if k_rows != rows || v_rows != rows {
        return Err(Error::shape(
            OP,
            format!("k and v with {rows} rows (as q)"),
            format!("k {k_rows} rows, v {v_rows} rows"),
        ));
    }
    if k_len > k_pos || k_len > v_pos {
        return Err(Error::shape(
            OP,
            format!("k_len {k_len} <= the positions of k and v"),
            format!("k {k_pos}, v {v_pos} positions"),
        ));
    }
    if let Some(l) = mask.key_lengths {
        shape_is(OP, "key_lengths", l, &[rows])?;
        same_device(OP, "key_lengths", device, l)?;
    }
    shape_is(OP, "out", out, &[rows, q_len, heads * head_dim])?;
    same_device(OP, "out", device, out)?;
    if rows == 0 || q_len == 0 {
        return Ok(());
    }
    let tensor_core_ok = T::DTYPE != DType::F32
        && TENSOR_CORE_HEAD_DIMS.contains(&head_dim)
        && q.aligned16(qw, q_len)
        && k.aligned16(kw, k_pos)
        && v.aligned16(vw, v_pos);
    let plan = plan_override.unwrap_or_else(|| {
        plan(
            rows,
            heads,
            q_len,
            k_len,
            tensor_core_ok,
            device.multiprocessor_count(),
        )
    });
    if plan.kernel == AttentionKernel::TensorCore && !tensor_core_ok {
        return Err(Error::invalid(
            OP,
            format!(
                "the tensor-core kernel needs f16 / bf16, head_dim 32, 64, 96 or 128 and 16-byte aligned rows ({} head_dim {head_dim})",
                T::DTYPE
            ),
        ));
    }
    let (splits, per) = split_keys(plan, k_len)?;
    let mut own = Workspace::new();
    let (partial_out, partial_ml) = if splits > 1 {
        let lanes = splits as usize * rows * heads * q_len;
        let ws = workspace
            .unwrap_or(&mut own)
            .get(device, lanes * (head_dim + 2))?;
        let base = ws.device_ptr_mut();
        (
            base as *mut f32,
            (base + (lanes * head_dim * 4) as u64) as *mut f32,
        )
    } else {
        (core::ptr::null_mut(), core::ptr::null_mut())
    };
    let e = |n: usize, what: &str| i64_of(OP, what, n);
    let params = AttentionParams {
        q: (q.tensor.device_ptr() + (q.column * std::mem::size_of::<T>()) as u64)
            as *const core::ffi::c_void,
        k: (k.tensor.device_ptr() + (k.column * std::mem::size_of::<T>()) as u64)
            as *const core::ffi::c_void,
        v: (v.tensor.device_ptr() + (v.column * std::mem::size_of::<T>()) as u64)
            as *const core::ffi::c_void,
        out: out.device_ptr_mut() as *mut core::ffi::c_void,
        key_lengths: mask
            .key_lengths
            .map_or(core::ptr::null(), |l| l.device_ptr() as *const i32),
        partial_out,
        partial_ml,
        rows: e(rows, "rows")?,
        heads: e(heads, "heads")?,
        q_len: e(q_len, "q_len")?,
        k_len: e(k_len, "k_len")?,
        head_dim: e(head_dim, "head_dim")?,
        q_batch_stride: e(q_len * qw, "q rows")?,
        q_pos_stride: e(qw, "q width")?,
        k_batch_stride: e(k_pos * kw, "k rows")?,
        k_pos_stride: e(kw, "k width")?,
        v_batch_stride: e(v_pos * vw, "v rows")?,
        v_pos_stride: e(vw, "v width")?,
        o_batch_stride: e(q_len * heads * head_dim, "out rows")?,
        o_pos_stride: e(heads * head_dim, "out width")?,
        scale,
        causal: i32::from(mask.causal),
        splits: splits as i32,
        keys_per_split: per,
    };
    // SAFETY: every view was checked to hold its heads for `rows` rows and
    // its positions (q_len for q, >= k_len for k and v), the strides are
    // the views' own, out is [rows, q_len, heads·head_dim] and exclusively
    // borrowed (so it overlaps no input), key lengths hold `rows` int32,
    // the workspace holds splits·rows·heads·q_len·(head_dim + 2) f32; all
    // on `device`, alive until the launch has run (stream order).
    unsafe { launch(device, T::DTYPE, plan, params) }
}

/// [`Error::InvalidArgument`] unless heads >= 1 and head_dim is 1 ..= [`MAX_HEAD_DIM`].
fn check_dims(dims: AttentionDims) -> Result<()> {
    let AttentionDims {
        heads, head_dim, ..
    } = dims;
    if heads == 0 || head_dim == 0 || head_dim > MAX_HEAD_DIM {
        return Err(Error::invalid(
            OP,
            format!("heads {heads} must be >= 1 and head_dim {head_dim} in 1..={MAX_HEAD_DIM}"),
        ));
    }
    Ok(())
}

/// `(splits, keys per split)`: whole 128-key chunks per split, no empty split.
pub(crate) fn split_keys(plan: AttentionPlan, k_len: usize) -> Result<(u32, i32)> {
    if plan.splits == 0 || plan.splits > MAX_SPLITS {
        return Err(Error::invalid(
            OP,
            format!("splits {} outside 1..={MAX_SPLITS}", plan.splits),
        ));
    }
    if plan.kernel == AttentionKernel::TensorCore && plan.splits != 1 {
        return Err(Error::invalid(
            OP,
            format!(
                "the tensor-core kernel does not split keys (splits {})",
                plan.splits
            ),
        ));
    }
    if plan.splits == 1 {
        let per =
            i32::try_from(k_len.max(1)).map_err(|_| Error::invalid(OP, "k_len past int32"))?;
        return Ok((1, per));
    }
    let chunks = k_len.div_ceil(SIMT_CHUNK).max(1);
    let per_chunks = chunks.div_ceil(plan.splits as usize);
    let splits = chunks.div_ceil(per_chunks) as u32;
    let per = i32::try_from(per_chunks * SIMT_CHUNK)
        .map_err(|_| Error::invalid(OP, "k_len past int32"))?;
    Ok((splits, per))
}

// SAFETY: AttentionParams is a `#[repr(C)]` plain-old-data struct generated
// from params.h, layout-checked by bindgen; passed by value.
unsafe impl LaunchParams for AttentionParams {}

/// Launches the kernel(s) of `plan` for `dtype` with caller-built params on
/// `device`'s stream (the raw API): the tensor-core kernel, or the SIMT
/// kernel (`p.splits` CTAs per row and head over `p.keys_per_split` keys
/// each) followed, when `p.splits > 1`, by the merge.
///
/// # Errors
/// [`Error::InvalidArgument`] for sizes out of range, a plan with no kernel
/// for `dtype` / `p.head_dim`, or a split launch without partial buffers;
/// [`Error::Cuda`] on launch failure.
///
/// # Safety
/// Every pointer of `p` addresses, through its strides, the elements the
/// kernel reads or writes (q: rows × q_len positions, k and v: rows ×
/// k_len, out: rows × q_len, all of `heads · head_dim` columns; key lengths
/// `rows` int32; partials `splits · rows · heads · q_len · head_dim` and
/// `· 2` f32) in `device`'s context; out overlaps no input; for the
/// tensor-core kernel, every head row starts 16-byte aligned; all stay
/// valid until the stream has run the kernels.
pub unsafe fn launch(
    device: &Device,
    dtype: DType,
    plan: AttentionPlan,
    p: AttentionParams,
) -> Result<()> {
    if p.rows < 0
        || p.q_len < 0
        || p.k_len < 0
        || p.heads < 1
        || p.head_dim < 1
        || p.head_dim > MAX_HEAD_DIM as i64
    {
        return Err(Error::invalid(
            OP,
            format!(
                "rows {}, q_len {}, k_len {} must be >= 0, heads {} >= 1, head_dim {} in 1..={MAX_HEAD_DIM}",
                p.rows, p.q_len, p.k_len, p.heads, p.head_dim
            ),
        ));
    }
    let symbol = kernel(plan.kernel, dtype, p.head_dim as usize)?;
    if p.rows == 0 || p.q_len == 0 {
        return Ok(());
    }
    let (rows, heads) = (p.rows as u32, p.heads as u32);
    if p.rows > 65_535 || p.heads > 65_535 {
        return Err(Error::invalid(
            OP,
            format!(
                "rows {} and heads {} must be <= 65535 (grid limits)",
                p.rows, p.heads
            ),
        ));
    }
    match plan.kernel {
        AttentionKernel::TensorCore => {
            let blocks = (p.q_len as usize).div_ceil(TC_BLOCK_Q);
            let shape = LaunchShape {
                grid: (
                    u32::try_from(blocks).map_err(|_| Error::invalid(OP, "q_len too large"))?,
                    heads,
                    rows,
                ),
                block: (THREADS, 1, 1),
                shared_mem_bytes: tc_shared_bytes(p.head_dim as usize),
            };
            // SAFETY: the caller guarantees the pointers and alignment.
            unsafe { device.launch(symbol, shape, &p) }
        }
        AttentionKernel::Simt => {
            if p.splits < 1
                || p.keys_per_split < 1
                || (p.splits > 1 && (p.partial_out.is_null() || p.partial_ml.is_null()))
            {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "splits {} and keys_per_split {} must be >= 1, with partial buffers when splits > 1",
                        p.splits, p.keys_per_split
                    ),
                ));
            }
            let shape = LaunchShape {
                grid: (p.splits as u32, heads, rows),
                block: (THREADS, 1, 1),
                shared_mem_bytes: SIMT_SMEM_BYTES,
            };
            // SAFETY: the caller guarantees the pointers.
            unsafe { device.launch(symbol, shape, &p)? };
            if p.splits > 1 {
                let n = (p.rows * p.heads * p.q_len * p.head_dim) as usize;
                let merge = LaunchShape::linear(grid_for(n, 256), 256);
                // SAFETY: the merge reads the partials the SIMT kernel wrote
                // (stream order) and writes out through its strides.
                unsafe { device.launch(merge_kernel(dtype), merge, &p)? };
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_the_documented_heuristic() {
        let tc = plan(32, 8, 30, 30, true, 132);
        assert_eq!(tc.kernel, AttentionKernel::TensorCore);
        // Decode at batch 1: 8 CTAs for 132 SMs, keys split (at most one per chunk).
        let d = plan(1, 8, 1, 1024, true, 132);
        assert_eq!(
            d,
            AttentionPlan {
                kernel: AttentionKernel::Simt,
                splits: 8
            }
        );
        assert_eq!(plan(1, 8, 1, 100, true, 132).splits, 1);
        // Enough rows: no split.
        assert_eq!(plan(128, 8, 1, 1024, true, 132).splits, 1);
        // f32 / odd head_dim: SIMT even at prefill.
        assert_eq!(
            plan(32, 8, 30, 30, false, 132).kernel,
            AttentionKernel::Simt
        );
    }

    #[test]
    fn splits_cover_the_keys_without_an_empty_split() {
        for k_len in [0, 1, 127, 128, 129, 1000, 5000] {
            for s in 1..=MAX_SPLITS {
                let p = AttentionPlan {
                    kernel: AttentionKernel::Simt,
                    splits: s,
                };
                let (n, per) = split_keys(p, k_len).unwrap();
                assert!(n >= 1 && n <= s);
                assert!(n as usize * per as usize >= k_len, "k_len {k_len} s {s}");
                assert!(
                    k_len == 0 || ((n - 1) as usize * (per as usize)) < k_len,
                    "empty split"
                );
            }
        }
    }

    #[test]
    fn shared_memory_fits_every_head_dim() {
        for d in TENSOR_CORE_HEAD_DIMS {
            assert!(tc_shared_bytes(d) <= 232_448);
        }
        assert_eq!(tc_shared_bytes(64), (64 + 256) * 72 * 2);
    }
}
