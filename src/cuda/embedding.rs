//! Token embedding + sinusoidal positions on the device (`kernels/embedding.cu`):
//! `out[b, s] = table[ids[b, s]] · scale + P(offset + s)`, the input of the
//! encoder and of each decoder step (Marian / Hugging Face
//! `MarianSinusoidalPositionalEmbedding`: first half sin, second half cos).
//!
//! Positions are computed in the kernel, not read from a table: the op is
//! memory-bound and a table would add one f32 read per output element
//! (double the traffic of a bf16 gather), while the sin/cos cost ALU time
//! that overlaps the loads. That is the roofline argument; no GPU run has
//! measured it yet.
//!
//! Reference: `cpu::embedding::embedding` (the tests and `verify` compare;
//! this module never calls the reference).
//!
//! Run status: executed on the SIMT emulator (its tests and `verify --device
//! emu`); not run on a GPU (no GPU run recorded in BENCHMARKS.md).

use super::check::{grid_for, i64_of, same_device, shape_is};
use super::device::Device;
use super::numerics::Tolerance;
use super::params::EmbeddingParams;
use super::runtime::{KernelRef, LaunchParams, LaunchShape};
use super::step_position::StepPosition;
use super::tensor::{DeviceElement, DeviceTensor};
use crate::error::fmt_shape;
use crate::{DType, Error, Result};

/// The module: `kernels/embedding.cu`.
pub const MODULE: &str = "embedding";

/// The symbol `embedding_<dtype>` of `embedding.cu`.
pub const fn kernel(dtype: DType) -> KernelRef {
    let symbol = match dtype {
        DType::F32 => "embedding_f32",
        DType::F16 => "embedding_f16",
        DType::BF16 => "embedding_bf16",
    };
    KernelRef {
        module: MODULE,
        symbol,
    }
}

/// Every kernel of this op (for the static checks against the fatbin).
pub fn kernels() -> Vec<KernelRef> {
    DType::ALL.map(kernel).to_vec()
}

/// f32 kernel vs the reference (f64 angles, f32 gather and add).
pub const TOL_F32: Tolerance = Tolerance {
    abs: 1e-6,
    rel: 2.4e-7,
    reason: "position: __sincosf of an f64-reduced angle, <= 2^-21.4 + 2^-24 absolute; sum: one rounding each side (same f32 product)",
};

/// The tolerance for outputs stored in `dtype`: [`TOL_F32`] plus one
/// rounding to the storage dtype ([`Tolerance::stored_as`]).
pub fn tolerance(dtype: DType) -> Tolerance {
    Tolerance::stored_as(TOL_F32, dtype)
}

/// Warps (tokens in flight) per 256-thread block; matches embedding.cu.
const WARPS_PER_BLOCK: usize = 8;

// SAFETY: EmbeddingParams is a `#[repr(C)]` plain-old-data struct generated
// from params.h, layout-checked by bindgen; the kernel takes it by value.
unsafe impl LaunchParams for EmbeddingParams {}

/// Embeds a `[batch, seq]` block of token ids (row-major in `ids`) into a
/// new `[batch, seq, d_model]` tensor.
///
/// - `table`: `[vocab, d_model]` (`model.shared.weight`);
/// - `scale`: `sqrt(d_model)` when `config.scale_embedding`, else 1;
/// - `position_offset`: the position of `ids[b, 0]` for every `b` (0 for the
///   encoder and a full decoder pass; the KV-cache length when decoding
///   step by step).
///
/// Every id is checked against `vocab` on the host before anything is
/// uploaded or launched.
///
/// # Errors
/// [`Error::InvalidArgument`] for an id `>= vocab` (naming the id and its
/// index), `seq == 0` with `batch > 0`, or sizes past `int32`/`int64`;
/// [`Error::Shape`] when `ids.len() != batch * seq` or `table` is not rank 2;
/// [`Error::Cuda`] on allocation, copy or launch failure.
pub fn embedding<T: DeviceElement>(
    ids: &[u32],
    batch: usize,
    seq: usize,
    table: &DeviceTensor<T>,
    scale: f32,
    position_offset: usize,
) -> Result<DeviceTensor<T>> {
    let d_model = table.shape().get(1).copied().unwrap_or(0);
    let mut out = DeviceTensor::zeros(table.device(), &[batch, seq, d_model])?;
    embedding_into(ids, batch, seq, table, scale, position_offset, &mut out)?;
    Ok(out)
}

/// [`embedding`] writing into `out`, `[batch, seq, d_model]`.
///
/// # Errors
/// As [`embedding`], plus [`Error::Shape`] when `out` has another shape.
pub fn embedding_into<T: DeviceElement>(
    ids: &[u32],
    batch: usize,
    seq: usize,
    table: &DeviceTensor<T>,
    scale: f32,
    position_offset: usize,
    out: &mut DeviceTensor<T>,
) -> Result<()> {
    const OP: &str = "embedding";
    let (vocab, _) = table_dims(OP, table)?;
    let tokens = token_count(OP, batch, seq)?;
    if ids.len() != tokens {
        return Err(Error::shape(
            OP,
            format!("ids [{batch}, {seq}] ({tokens} ids)"),
            format!("{} ids", ids.len()),
        ));
    }
    // Out-of-range ids are an error here, before anything reaches the device.
    let vocab_i32 = i32::try_from(vocab)
        .map_err(|_| Error::invalid(OP, format!("vocab = {vocab} does not fit int32 ids")))?;
    let mut ids_i32 = Vec::with_capacity(ids.len());
    for (i, &id) in ids.iter().enumerate() {
        match i32::try_from(id) {
            Ok(v) if v < vocab_i32 => ids_i32.push(v),
            _ => {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "token id {id} at index {i} (batch {}, position {}) is out of range for vocab_size {vocab}",
                        i / seq,
                        i % seq
                    ),
                ))
            }
        }
    }
    let ids_dev = DeviceTensor::from_host(table.device(), &ids_i32, &[batch, seq])?;
    embedding_from_device_ids(&ids_dev, batch, seq, table, scale, position_offset, out)
}

/// `(vocab, d_model)` of a `[vocab, d_model]` embedding table.
fn table_dims<T: DeviceElement>(
    op: &'static str,
    table: &DeviceTensor<T>,
) -> Result<(usize, usize)> {
    match *table.shape() {
        [vocab, d_model] => Ok((vocab, d_model)),
        _ => Err(Error::shape(
            op,
            "table [vocab, d_model]",
            format!("table {}", fmt_shape(table.shape())),
        )),
    }
}

/// `batch * seq`, or an error when it overflows.
fn token_count(op: &'static str, batch: usize, seq: usize) -> Result<usize> {
    batch
        .checked_mul(seq)
        .ok_or_else(|| Error::invalid(op, format!("batch {batch} x seq {seq} overflows")))
}

/// [`embedding_into`] with the ids already on the device (e.g. the previous
/// step's argmax), `[batch, seq]` int32. The ids cannot be checked on the
/// host here; the kernel never reads outside the table: an id outside
/// `[0, vocab)` yields a row of NaN in `out`, which [`embedding_into`]'s
/// host check turns into an error instead.
///
/// `ids` is a [`DeviceTensor`] of the same device, so every write to it
/// was queued on the device's one stream before this launch.
///
/// # Errors
/// [`Error::Shape`] when `ids` holds fewer than `batch * seq` ids, `table`
/// is not rank 2 or `out` is not `[batch, seq, d_model]`;
/// [`Error::InvalidArgument`] for operands on different devices or sizes
/// past `int64`; [`Error::Cuda`] on launch failure.
pub fn embedding_from_device_ids<T: DeviceElement>(
    ids: &DeviceTensor<i32>,
    batch: usize,
    seq: usize,
    table: &DeviceTensor<T>,
    scale: f32,
    position_offset: usize,
    out: &mut DeviceTensor<T>,
) -> Result<()> {
    embed_device_ids(ids, batch, seq, table, scale, position_offset, None, out)
}

/// [`embedding_from_device_ids`] with the position of the first token read
/// from `position` when the kernel runs (a replayable decode step, whose
/// launch parameters must not change from step to step).
///
/// # Errors
/// As [`embedding_from_device_ids`]; [`Error::InvalidArgument`] when
/// `position` is on another device.
pub fn embedding_from_device_ids_at<T: DeviceElement>(
    ids: &DeviceTensor<i32>,
    batch: usize,
    seq: usize,
    table: &DeviceTensor<T>,
    scale: f32,
    position: &StepPosition,
    out: &mut DeviceTensor<T>,
) -> Result<()> {
    same_device("embedding", "position", table.device(), position.tensor())?;
    embed_device_ids(ids, batch, seq, table, scale, 0, Some(position), out)
}

/// The checks and the launch of both entry points above.
#[allow(clippy::too_many_arguments)] // the op's parameters plus the position source
fn embed_device_ids<T: DeviceElement>(
    ids: &DeviceTensor<i32>,
    batch: usize,
    seq: usize,
    table: &DeviceTensor<T>,
    scale: f32,
    position_offset: usize,
    position: Option<&StepPosition>,
    out: &mut DeviceTensor<T>,
) -> Result<()> {
    const OP: &str = "embedding";
    let device = table.device().clone();
    let (vocab, d_model) = table_dims(OP, table)?;
    let tokens = token_count(OP, batch, seq)?;
    if ids.numel() < tokens {
        return Err(Error::shape(
            OP,
            format!("ids [{batch}, {seq}] ({tokens} ids)"),
            format!("{} ids", ids.numel()),
        ));
    }
    same_device(OP, "ids", &device, ids)?;
    shape_is(OP, "out", out, &[batch, seq, d_model])?;
    same_device(OP, "out", &device, out)?;
    if tokens == 0 || d_model == 0 {
        return Ok(());
    }
    let params = EmbeddingParams {
        ids: ids.device_ptr() as *const i32,
        table: table.device_ptr() as *const core::ffi::c_void,
        out: out.device_ptr_mut() as *mut core::ffi::c_void,
        tokens: i64_of(OP, "tokens", tokens)?,
        seq_len: i64_of(OP, "seq", seq)?,
        d_model: i64_of(OP, "d_model", d_model)?,
        vocab: i64_of(OP, "vocab", vocab)?,
        position_offset: i64_of(OP, "position_offset", position_offset)?,
        position_device: position
            .map_or(core::ptr::null(), |p| p.tensor().device_ptr() as *const i32),
        scale,
    };
    // SAFETY: `ids` holds at least `tokens` int32 values on this device
    // (checked above), and stream order puts the kernel after every write
    // queued to it. The kernel reads the table only at ids in [0, vocab) (others give NaN);
    // `table` is [vocab, d_model] and `out` [batch, seq, d_model] on
    // `device`; `out` is borrowed mutably so it aliases nothing.
    unsafe { launch(&device, T::DTYPE, params) }
}

/// Launches the embedding kernel for `dtype` with caller-built params on
/// `device`'s stream (the raw API). An empty problem launches nothing.
///
/// # Errors
/// [`Error::InvalidArgument`] for negative sizes, `seq_len < 1` or
/// `d_model < 1` with tokens present; [`Error::Cuda`] on launch failure.
///
/// # Safety
/// `p.ids` must point to `p.tokens` int32 values, `p.table` to
/// `p.vocab * p.d_model` and `p.out` to `p.tokens * p.d_model` elements of
/// `dtype` in `device`'s context, `p.out` not overlapping the inputs, all
/// valid until the stream has run the kernel. Ids outside `[0, vocab)` are
/// not read out of bounds: they produce a row of NaN. `p.position_device`,
/// unless null, points to one int32 `>= 0` (read when the kernel runs).
pub unsafe fn launch(device: &Device, dtype: DType, p: EmbeddingParams) -> Result<()> {
    const OP: &str = "embedding";
    let tokens = usize::try_from(p.tokens)
        .map_err(|_| Error::invalid(OP, format!("tokens = {} is negative", p.tokens)))?;
    if tokens == 0 {
        return Ok(());
    }
    if p.seq_len < 1 || p.d_model < 1 || p.vocab < 0 || p.position_offset < 0 {
        return Err(Error::invalid(
            OP,
            format!(
                "seq_len {} and d_model {} must be >= 1, vocab {} and position_offset {} >= 0",
                p.seq_len, p.d_model, p.vocab, p.position_offset
            ),
        ));
    }
    let shape = LaunchShape::linear(grid_for(tokens, WARPS_PER_BLOCK), 256);
    // SAFETY: the caller guarantees the pointers (see `# Safety`); 256
    // threads matches the kernel's __launch_bounds__ and its 8-warp layout.
    unsafe { device.launch(kernel(dtype), shape, &p) }
}
