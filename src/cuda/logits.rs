//! The end of a decoder step on the device (`kernels/logits.cu`), one launch:
//! `score = logits + final_logits_bias`, pad column at −inf, log-softmax over
//! the vocabulary in f32, and per row the k best tokens (k = 1: greedy
//! argmax; k = 2·num_beams for beam search, as Hugging Face `generate` takes).
//!
//! Reference: `cpu::logits::logits_step` (the tests and `verify` compare;
//! this module never calls the reference).
//!
//! Shape of the launch: one 256-thread block per row, so a step with fewer
//! rows than the GPU has SMs (greedy decoding of one sentence: one row)
//! leaves most of the GPU idle; the kernel keeps several loads in flight per
//! thread to stay latency-tolerant there. Splitting the vocabulary of a row
//! across blocks would use the whole GPU for such steps (not done).
//!
//! Run status: executed on the SIMT emulator (its tests and `verify --device
//! emu`); not run on a GPU (no GPU run recorded in BENCHMARKS.md).

use std::sync::Arc;

use super::check::{i64_of, same_device, shape_is};
use super::device::Device;
use super::numerics::Tolerance;
use super::params::LogitsParams;
use super::runtime::{KernelRef, LaunchParams, LaunchShape};
use super::tensor::{DeviceElement, DeviceTensor};
use crate::error::fmt_shape;
use crate::{DType, Error, Result};

/// The module: `kernels/logits.cu`.
pub const MODULE: &str = "logits";

/// Compile-time maximum of k of a `logits.cu` kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TopKWidth {
    /// k = 1: greedy argmax.
    K1,
    /// k <= 8 (beam search up to 4 beams).
    K8,
    /// k <= 32 (beam search up to 16 beams).
    K32,
}

impl TopKWidth {
    /// Largest k any logits kernel takes.
    pub const MAX_K: usize = 32;

    /// Every width.
    pub const ALL: [TopKWidth; 3] = [TopKWidth::K1, TopKWidth::K8, TopKWidth::K32];

    /// The narrowest width that holds `k`, or `None` for k = 0 or k > [`TopKWidth::MAX_K`].
    pub const fn for_k(k: usize) -> Option<Self> {
        match k {
            1 => Some(TopKWidth::K1),
            2..=8 => Some(TopKWidth::K8),
            9..=32 => Some(TopKWidth::K32),
            _ => None,
        }
    }
}

/// The symbol `logits_topk<K>_<dtype>` of `logits.cu`.
pub const fn kernel(max_k: TopKWidth, dtype: DType) -> KernelRef {
    use DType::*;
    use TopKWidth::*;
    let symbol = match (max_k, dtype) {
        (K1, F32) => "logits_topk1_f32",
        (K1, F16) => "logits_topk1_f16",
        (K1, BF16) => "logits_topk1_bf16",
        (K8, F32) => "logits_topk8_f32",
        (K8, F16) => "logits_topk8_f16",
        (K8, BF16) => "logits_topk8_bf16",
        (K32, F32) => "logits_topk32_f32",
        (K32, F16) => "logits_topk32_f16",
        (K32, BF16) => "logits_topk32_bf16",
    };
    KernelRef {
        module: MODULE,
        symbol,
    }
}

/// Every kernel of this op (for the static checks against the fatbin).
pub fn kernels() -> Vec<KernelRef> {
    TopKWidth::ALL
        .iter()
        .flat_map(|&w| DType::ALL.map(|d| kernel(w, d)))
        .collect()
}

/// Largest k per row.
pub const MAX_K: usize = TopKWidth::MAX_K;

/// Threads per block; matches `kThreads` in logits.cu.
const THREADS: u32 = 256;

/// Tolerance of the f32 log-probabilities (any storage dtype: the scores
/// are the same f32 sums on both sides) for a vocabulary of `vocab`: each
/// thread sums ceil(vocab / 256) exponentials sequentially, then 8 + 5
/// tree merges; every term and `expf` / `logf` carry a few ulp, so the
/// log-sum-exp may be off by about 2·(ceil(vocab/256) + 40)·ε absolute.
pub fn tolerance(vocab: usize) -> Tolerance {
    let terms = vocab.div_ceil(THREADS as usize) + 40;
    Tolerance {
        abs: 2.0 * terms as f32 * f32::EPSILON,
        rel: 2.0 * f32::EPSILON,
        reason: "f32 online log-sum-exp: ceil(vocab/256) sequential terms + 13 tree levels, 2 ulp expf/logf",
    }
}

// SAFETY: LogitsParams is a `#[repr(C)]` plain-old-data struct generated
// from params.h, layout-checked by bindgen; the kernel takes it by value.
unsafe impl LaunchParams for LogitsParams {}

/// The k best tokens of every row, downloaded to the host.
#[derive(Clone, Debug, PartialEq)]
pub struct TopK {
    /// Rows (batch · beams).
    pub rows: usize,
    /// Entries per row.
    pub k: usize,
    /// `[rows, k]` token ids, best first; equal scores: the lower id first.
    pub ids: Vec<u32>,
    /// `[rows, k]` log-probabilities of `ids` (f32, natural log).
    pub log_probs: Vec<f32>,
}

/// Device-side outputs of [`logits_step_into`]: `[rows, k]` ids and
/// log-probabilities, kept on the device (reuse them across steps; copy
/// them to the host with [`TopKBuffers::to_host`]).
pub struct TopKBuffers {
    ids: DeviceTensor<i32>,
    log_probs: DeviceTensor<f32>,
    rows: usize,
    k: usize,
}

impl TopKBuffers {
    /// Buffers for `rows` rows of `k` entries on `device`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `rows * k` overflows; [`Error::Cuda`]
    /// when the allocation fails.
    pub fn new(device: &Arc<Device>, rows: usize, k: usize) -> Result<Self> {
        // `zeros` reports an overflowing rows x k as InvalidArgument.
        let ids = DeviceTensor::zeros(device, &[rows, k])?;
        let log_probs = DeviceTensor::zeros(device, &[rows, k])?;
        Ok(Self {
            ids,
            log_probs,
            rows,
            k,
        })
    }

    /// `(rows, k)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.k)
    }

    /// Copies the ids and log-probabilities to the host (waits for the stream).
    ///
    /// # Errors
    /// [`Error::Cuda`] when the copy fails (including errors of the kernel);
    /// [`Error::InvalidArgument`] if a slot holds no id (only possible when
    /// the raw API was called with k > vocab).
    pub fn to_host(&self) -> Result<TopK> {
        let ids_i32 = self.ids.to_host()?;
        let log_probs = self.log_probs.to_host()?;
        let ids = ids_i32
            .iter()
            .map(|&i| {
                u32::try_from(i).map_err(|_| {
                    Error::invalid("logits", format!("kernel returned id {i}: no candidate"))
                })
            })
            .collect::<Result<Vec<u32>>>()?;
        Ok(TopK {
            rows: self.rows,
            k: self.k,
            ids,
            log_probs,
        })
    }
}

/// `k` (the top-k buffers') in `1..=min(MAX_K, vocab)`, and the buffers
/// sized for `rows` on `device`.
fn check_topk_buffers(
    op: &'static str,
    device: &Arc<Device>,
    rows: usize,
    vocab: usize,
    out: &TopKBuffers,
) -> Result<()> {
    let k = out.k;
    if k == 0 || k > MAX_K || k > vocab {
        return Err(Error::invalid(
            op,
            format!(
                "k = {k} must be in 1..={} (vocab {vocab})",
                MAX_K.min(vocab)
            ),
        ));
    }
    if out.rows != rows {
        return Err(Error::shape(
            op,
            format!("top-k buffers [{rows}, {k}]"),
            format!("top-k buffers [{}, {k}]", out.rows),
        ));
    }
    same_device(op, "top-k buffers", device, &out.log_probs)
}

/// One decoder step's logits processing, with the top-k copied to the host.
///
/// - `logits`: `[rows, vocab]` (the output projection `h · sharedᵀ` of the
///   last position of each row);
/// - `bias`: `[vocab]` `final_logits_bias`, or `None`;
/// - `pad_id`: the column set to −inf before normalising (`pad_token_id`), or `None`;
/// - `k`: tokens kept per row, `1..=`[`MAX_K`] and `<= vocab`;
/// - `log_probs`: `[rows, vocab]` f32 receiving every log-probability, or
///   `None` when only the top-k are needed (saves a full write of the row).
///
/// Waits for the stream (the top-k are copied to the host).
///
/// Non-finite scores (as the reference, `cpu::logits`): a NaN
/// score outside the pad column makes every log-probability of its row NaN
/// and ranks above every number in the top-k (NaN ids by lower id); `n`
/// scores at +inf (no NaN) get log-probability `-ln(n)` each and the rest
/// -inf; a row of only -inf gets -inf everywhere.
///
/// # Errors
/// [`Error::Shape`] for mismatched shapes; [`Error::InvalidArgument`] for
/// `k` out of range, `pad_id >= vocab`, `vocab` past `int32`, or operands
/// on different devices; [`Error::Cuda`] on allocation, launch or copy failure.
pub fn logits_step<T: DeviceElement>(
    logits: &DeviceTensor<T>,
    bias: Option<&DeviceTensor<T>>,
    pad_id: Option<usize>,
    k: usize,
    log_probs: Option<&mut DeviceTensor<f32>>,
) -> Result<TopK> {
    let rows = logits.shape().first().copied().unwrap_or(0);
    let mut out = TopKBuffers::new(logits.device(), rows, k)?;
    logits_step_into(logits, bias, pad_id, log_probs, &mut out)?;
    out.to_host()
}

/// [`logits_step`] without leaving the device: the top-k go to `out`
/// (`k` is `out`'s), nothing waits for the stream.
///
/// # Errors
/// As [`logits_step`], plus [`Error::Shape`] when `out` has another row count.
pub fn logits_step_into<T: DeviceElement>(
    logits: &DeviceTensor<T>,
    bias: Option<&DeviceTensor<T>>,
    pad_id: Option<usize>,
    log_probs: Option<&mut DeviceTensor<f32>>,
    out: &mut TopKBuffers,
) -> Result<()> {
    const OP: &str = "logits";
    let device = logits.device().clone();
    let &[rows, vocab] = logits.shape() else {
        return Err(Error::shape(
            OP,
            "logits [rows, vocab]",
            format!("logits {}", fmt_shape(logits.shape())),
        ));
    };
    let k = out.k;
    if vocab == 0 || i32::try_from(vocab).is_err() {
        return Err(Error::invalid(
            OP,
            format!("vocab = {vocab} must be in 1..=i32::MAX"),
        ));
    }
    check_topk_buffers(OP, &device, rows, vocab, out)?;
    if let Some(b) = bias {
        shape_is(OP, "final_logits_bias", b, &[vocab])?;
        same_device(OP, "final_logits_bias", &device, b)?;
    }
    if let Some(p) = pad_id {
        if p >= vocab {
            return Err(Error::invalid(OP, format!("pad_id {p} >= vocab {vocab}")));
        }
    }
    if let Some(lp) = log_probs.as_deref() {
        shape_is(OP, "log_probs", lp, &[rows, vocab])?;
        same_device(OP, "log_probs", &device, lp)?;
    }
    if rows == 0 {
        return Ok(());
    }
    let ids_ptr = out.ids.device_ptr_mut();
    let params = LogitsParams {
        logits: logits.device_ptr() as *const core::ffi::c_void,
        bias: bias.map_or(core::ptr::null(), |b| {
            b.device_ptr() as *const core::ffi::c_void
        }),
        log_probs: log_probs.map_or(core::ptr::null_mut(), |lp| lp.device_ptr_mut() as *mut f32),
        topk_ids: ids_ptr as *mut i32,
        topk_log_probs: out.log_probs.device_ptr_mut() as *mut f32,
        rows: i64_of(OP, "rows", rows)?,
        vocab: i64_of(OP, "vocab", vocab)?,
        row_stride: i64_of(OP, "vocab", vocab)?,
        pad_id: pad_id.map_or(Ok(-1), |p| i64_of(OP, "pad_id", p))?,
        token_mask: core::ptr::null(),
        row_mask: core::ptr::null(),
        // k <= MAX_K = 32, checked above.
        k: k as i32,
        mask_after_normalise: 0,
    };
    // SAFETY: `logits` is [rows, vocab] (row stride vocab), `bias` and
    // `log_probs` were checked against [vocab] / [rows, vocab], the top-k
    // buffers hold rows * k elements; all live on `device`; `log_probs` and
    // `out` are borrowed mutably, so no output aliases an input or another
    // output; all outlive the kernel (later uses go through the same stream).
    unsafe { launch(&device, T::DTYPE, params) }
}

/// The masks of [`log_softmax_topk_into`], as device byte masks (nonzero =
/// the id is masked).
#[derive(Clone, Copy, Debug, Default)]
pub struct LogitsMasks<'a> {
    /// `[vocab]`: ids masked in every row (pad, single-token bad words).
    pub every_row: Option<&'a DeviceTensor<u8>>,
    /// `[rows, vocab]`: ids masked in one row (min_length's EOS ban,
    /// multi-token bad words, every id but the forced one at the forced-EOS
    /// step).
    pub per_row: Option<&'a DeviceTensor<u8>>,
}

/// The model's logits step ([`crate::model::Backend::log_softmax_topk`]'s
/// semantics, Hugging Face `generate`'s order) on the device: per row of
/// `logits` `[.., vocab]` (every leading dimension counts as rows), the
/// log-softmax over the raw row in f32, then the masked ids at `-inf`
/// (no renormalisation), and the `k` best ids by masked raw logit into
/// `out` (`k` is `out`'s; ties to the lower id; NaN above every number).
/// A NaN or `+inf` anywhere in a row makes its log-probabilities NaN.
/// Nothing waits for the stream.
///
/// # Errors
/// [`Error::Shape`] for a rank-0 `logits`, masks that are not `[vocab]` /
/// `[rows, vocab]` or `out` of another row count; [`Error::InvalidArgument`]
/// for `k` outside `1..=min(vocab, MAX_K)`, `vocab` past `int32` or operands
/// on different devices; [`Error::Cuda`] on launch failure.
pub fn log_softmax_topk_into<T: DeviceElement>(
    logits: &DeviceTensor<T>,
    masks: LogitsMasks<'_>,
    out: &mut TopKBuffers,
) -> Result<()> {
    const OP: &str = "log_softmax_topk";
    let device = logits.device().clone();
    let Some(&vocab) = logits.shape().last() else {
        return Err(Error::shape(OP, "logits [.., vocab]", "logits []"));
    };
    if vocab == 0 || i32::try_from(vocab).is_err() {
        return Err(Error::invalid(
            OP,
            format!("vocab = {vocab} must be in 1..=i32::MAX"),
        ));
    }
    let rows = logits.numel() / vocab;
    let k = out.k;
    check_topk_buffers(OP, &device, rows, vocab, out)?;
    if let Some(m) = masks.every_row {
        shape_is(OP, "every-row mask", m, &[vocab])?;
        same_device(OP, "every-row mask", &device, m)?;
    }
    if let Some(m) = masks.per_row {
        shape_is(OP, "per-row mask", m, &[rows, vocab])?;
        same_device(OP, "per-row mask", &device, m)?;
    }
    if rows == 0 {
        return Ok(());
    }
    let params = LogitsParams {
        logits: logits.device_ptr() as *const core::ffi::c_void,
        bias: core::ptr::null(),
        log_probs: core::ptr::null_mut(),
        topk_ids: out.ids.device_ptr_mut() as *mut i32,
        topk_log_probs: out.log_probs.device_ptr_mut() as *mut f32,
        rows: i64_of(OP, "rows", rows)?,
        vocab: i64_of(OP, "vocab", vocab)?,
        row_stride: i64_of(OP, "vocab", vocab)?,
        pad_id: -1,
        token_mask: masks
            .every_row
            .map_or(core::ptr::null(), |m| m.device_ptr() as *const u8),
        row_mask: masks
            .per_row
            .map_or(core::ptr::null(), |m| m.device_ptr() as *const u8),
        // k <= MAX_K = 32, checked above.
        k: k as i32,
        mask_after_normalise: 1,
    };
    // SAFETY: `logits` holds rows * vocab elements (row stride vocab), the
    // masks were checked against [vocab] / [rows, vocab], the top-k buffers
    // hold rows * k elements; all live on `device`; `out` is borrowed
    // mutably, so it aliases no input; later uses go through the same stream.
    unsafe { launch(&device, T::DTYPE, params) }
}

/// Launches the logits kernel for `dtype` with caller-built params on
/// `device`'s stream (the raw API: e.g. logits rows strided inside a
/// `[batch, seq, vocab]` tensor, or outputs kept on the device).
///
/// # Errors
/// [`Error::InvalidArgument`] for `k` outside `1..=MAX_K`, `k > vocab`,
/// `vocab` outside `1..=i32::MAX`, `row_stride < vocab` or `rows < 0`;
/// [`Error::Cuda`] on launch failure.
///
/// # Safety
/// `p.logits` must point to rows of `p.vocab` elements of `dtype` at a
/// stride of `p.row_stride`, `p.bias` (unless null) to `p.vocab`,
/// `p.log_probs` (unless null) to `p.rows * p.vocab` f32, `p.token_mask`
/// (unless null) to `p.vocab` bytes, `p.row_mask` (unless null) to
/// `p.rows * p.vocab` bytes, `p.topk_ids` and
/// `p.topk_log_probs` to `p.rows * p.k` values, all in `device`'s context,
/// outputs not overlapping inputs or each other, valid until the stream
/// has run the kernel.
pub unsafe fn launch(device: &Device, dtype: DType, p: LogitsParams) -> Result<()> {
    const OP: &str = "logits";
    let k = usize::try_from(p.k).unwrap_or(0);
    let Some(max_k) = TopKWidth::for_k(k) else {
        return Err(Error::invalid(
            OP,
            format!("k = {} must be in 1..={MAX_K}", p.k),
        ));
    };
    if p.vocab < 1 || p.vocab > i64::from(i32::MAX) || i64::from(p.k) > p.vocab {
        return Err(Error::invalid(
            OP,
            format!("vocab = {} must be in k..=i32::MAX (k = {})", p.vocab, p.k),
        ));
    }
    if p.row_stride < p.vocab {
        return Err(Error::invalid(
            OP,
            format!("row_stride {} < vocab {}", p.row_stride, p.vocab),
        ));
    }
    let rows = usize::try_from(p.rows)
        .map_err(|_| Error::invalid(OP, format!("rows = {} is negative", p.rows)))?;
    if rows == 0 {
        return Ok(());
    }
    // One block per row; grid.x is at most 2^31 - 1.
    let grid = u32::try_from(rows)
        .ok()
        .filter(|&g| g <= i32::MAX as u32)
        .ok_or_else(|| {
            Error::invalid(
                OP,
                format!("rows = {rows} exceed the grid (one block per row)"),
            )
        })?;
    let shape = LaunchShape::linear(grid, THREADS);
    // SAFETY: the caller guarantees the pointers (see `# Safety`); one block
    // of THREADS per row, as the kernel expects.
    unsafe { device.launch(kernel(max_k, dtype), shape, &p) }
}
