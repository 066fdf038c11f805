//! [`CudaBackend`]: the model's [`Backend`] on a [`Device`] (a GPU, or
//! unchanged on the SIMT emulator), built from this crate's kernels.
//!
//! Every tensor is a [`DeviceTensor<T>`] of the one storage dtype `T` the
//! backend was made for (`f32`, `f16` or `bf16`: the CLI's `--dtype`);
//! weights are rounded to `T` once, at upload (round to nearest even, as
//! `half` does). Arithmetic inside every kernel is f32.
//!
//! What each operation runs:
//! - `embedding`: `embedding.cu` (token gather · scale + sinusoidal positions);
//! - `linear`: `linear.cu` with bias and activation fused in the epilogue
//!   (the FFN's fc1 activation and the logits' `final_logits_bias` never
//!   take a separate pass);
//! - `attention`: `attention.cu`, reading q, k and v in place as column
//!   views of the fused projections' outputs and of the KV cache (`k_len`
//!   of the cache's capacity), key padding from a device `[rows]` int32
//!   buffer made once per batch;
//! - `layer_norm`: `layer_norm.cu`, residual add fused;
//! - `log_softmax_topk`: `logits.cu` in Hugging Face order (log-softmax of
//!   the raw row, then the search's masks as device byte masks), so only
//!   `[rows, k]` ids and log-probabilities reach the host per step; k above
//!   [`logits::MAX_K`] (beam search past 16 beams) falls back to the CPU
//!   reference on the downloaded row block (correct, slow, documented);
//! - `kv_write` / `kv_gather`: `gather_rows.cu`, copying only valid
//!   positions (a step's k / v columns straight from the fused QKV output).
//!
//! Scratch that outlives one call (split-K / split-KV partial sums, the
//! every-row token mask, the top-k buffers, the decoder's ids, the beam
//! reorder's row map) is kept in the backend and reused. Each one-token
//! decode step runs on fixed buffers (a step arena) with its position in
//! device memory ([`super::decode_step`]), so a steady decode loop
//! allocates nothing; a beam reorder gathers each layer's K and V into one
//! spare cache buffer (allocated only when the row count changes), copying
//! only the valid positions; a step with per-row masks (min_length,
//! bad-word prefixes, forced EOS) still uploads a new `[rows, vocab]` byte
//! mask.
//!
//! With step graphs on ([`CudaBackend::with_step_graphs`], the CLI's
//! `--cuda-graph on`), a step whose launches equal a recorded step's is
//! replayed as one unit (a CUDA graph on a GPU).
//!
//! Run status: executed on the SIMT emulator (`tests/cuda_model.rs`: token
//! parity with the CPU reference on the fixture models); not run on a GPU.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::Arc;

use super::attention::{self, AttentionDims, AttentionMask, HeadView};
use super::decode_step::{DecodeSteps, StepStats};
use super::device::Device;
use super::embedding;
use super::gather_rows::{self, ColumnRange, PositionRange};
use super::layer_norm;
use super::linear::{self, Epilogue};
use super::logits::{self, LogitsMasks, TopKBuffers};
use super::numerics::{to_storage, widen};
use super::tensor::{DeviceElement, DeviceTensor};
use super::workspace::Workspace;
use crate::activation::Activation;
use crate::cpu;
use crate::dtype::DType;
use crate::error::{fmt_shape, Error, Result};
use crate::model::backend::{AttnMask, Backend, Cols, TokenMask, TopK};

/// The model's operations on a CUDA device in storage dtype `T`.
pub struct CudaBackend<T: DeviceElement> {
    device: Arc<Device>,
    /// Whether one-token decode steps run as replayable steps.
    step_graphs: bool,
    scratch: RefCell<Scratch<T>>,
    _dtype: PhantomData<T>,
}

impl<T: DeviceElement> Default for Scratch<T> {
    fn default() -> Self {
        Scratch {
            workspace: Workspace::default(),
            every_row: None,
            topk: None,
            row_map: None,
            ids: None,
            spare: None,
            steps: DecodeSteps::default(),
        }
    }
}

/// Device buffers reused across calls.
struct Scratch<T: DeviceElement> {
    /// Split-K (linear) and split-KV (attention) partial sums.
    workspace: Workspace,
    /// The last every-row mask uploaded, by its ids and vocabulary.
    every_row: Option<(Vec<u32>, usize, DeviceTensor<u8>)>,
    /// The last top-k buffers, reused while `(rows, k)` stays.
    topk: Option<TopKBuffers>,
    /// The last row map of `kv_gather` (one beam reorder applies the same
    /// map to every layer's K and V: uploaded once per step).
    row_map: Option<gather_rows::RowMap>,
    /// The decoder's token ids, reused while their count stays.
    ids: Option<DeviceTensor<i32>>,
    /// The spare KV-cache buffer of `kv_reorder`: each reorder gathers
    /// into it and swaps it with the cache, so one spare serves every
    /// layer's K and V (they share a shape) and a beam step allocates no
    /// cache.
    spare: Option<DeviceTensor<T>>,
    /// Replayable decode steps: arena, step inputs, recorded steps.
    steps: DecodeSteps,
}

impl<T: DeviceElement> std::fmt::Debug for CudaBackend<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaBackend<{}>({:?})", T::NAME, self.device)
    }
}

impl<T: DeviceElement> CudaBackend<T> {
    /// A backend on `device` (a GPU from [`Device::open`] or the emulator
    /// from [`Device::emulator`]).
    pub fn new(device: Arc<Device>) -> Self {
        CudaBackend {
            device,
            step_graphs: false,
            scratch: RefCell::new(Scratch::default()),
            _dtype: PhantomData,
        }
    }

    /// Turns step replay on or off (off by default). Every one-token
    /// decode step runs on fixed buffers with its position read on the
    /// device; with replay on, a step whose launches equal a recorded
    /// step's is replayed as one unit: a CUDA graph on a GPU (compiled, not
    /// yet run on one), the recorded launches re-issued on the emulator.
    /// The launches are the same either way, so are the outputs.
    pub fn with_step_graphs(mut self, on: bool) -> Self {
        self.step_graphs = on;
        self
    }

    /// Whether replayable decode steps are on.
    pub fn step_graphs(&self) -> bool {
        self.step_graphs
    }

    /// How the decode steps so far ran (all zero with step graphs off).
    pub fn step_stats(&self) -> StepStats {
        self.scratch.borrow().steps.stats
    }

    /// The device the backend runs on.
    pub fn device(&self) -> &Arc<Device> {
        &self.device
    }

    /// The storage dtype of every tensor.
    pub fn dtype(&self) -> DType {
        T::DTYPE
    }

    /// The every-row mask of `ids` over `vocab` on the device, uploaded
    /// only when it differs from the last one (it is the same every step).
    fn every_row_mask<'s>(
        scratch: &'s mut Scratch<T>,
        device: &Arc<Device>,
        ids: &[u32],
        vocab: usize,
    ) -> Result<&'s DeviceTensor<u8>> {
        let same = scratch
            .every_row
            .as_ref()
            .is_some_and(|(cached, v, _)| cached == ids && *v == vocab);
        if !same {
            let mut bytes = vec![0u8; vocab];
            for &id in ids {
                bytes[id as usize] = 1;
            }
            let t = DeviceTensor::from_host(device, &bytes, &[vocab])?;
            scratch.every_row = Some((ids.to_vec(), vocab, t));
        }
        match &scratch.every_row {
            Some((_, _, t)) => Ok(t),
            None => Err(Error::invalid("log_softmax_topk", "mask cache vanished")),
        }
    }
}

impl<T: DeviceElement> CudaBackend<T> {
    /// The device row map of `rows`: the cached one when it is the same
    /// (every layer's K and V of a beam step), else uploaded.
    fn row_map<'s>(
        scratch: &'s mut Scratch<T>,
        device: &Arc<Device>,
        rows: &[usize],
    ) -> Result<&'s gather_rows::RowMap> {
        match &mut scratch.row_map {
            Some(m) if m.rows() == rows => {}
            // Same length (every beam step): rewritten in place.
            Some(m) if m.rows().len() == rows.len() => m.set(rows)?,
            slot => *slot = Some(gather_rows::RowMap::new(device, rows)?),
        }
        scratch
            .row_map
            .as_ref()
            .ok_or_else(|| Error::invalid("kv_gather", "row map vanished"))
    }
}

/// `(rows, seq, width)` of a 3-D tensor.
fn dims3<T: DeviceElement>(op: &'static str, t: &DeviceTensor<T>) -> Result<(usize, usize, usize)> {
    match *t.shape() {
        [r, s, w] => Ok((r, s, w)),
        _ => Err(Error::shape(op, "[rows, seq, width]", fmt_shape(t.shape()))),
    }
}

/// The dense `[rows, vocab]` byte mask of a step whose rows differ (per-row
/// ids or an "only these ids" row); the every-row ids are folded in for
/// every row without an `only` list, which overrides them.
fn dense_row_mask(mask: &TokenMask, rows: usize, vocab: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; rows * vocab];
    for (r, row) in bytes.chunks_exact_mut(vocab).enumerate() {
        match mask.row_only(r) {
            Some(keep) => {
                row.fill(1);
                for &id in keep {
                    row[id as usize] = 0;
                }
            }
            None => {
                for &id in mask.every_row.iter().chain(mask.row_masked(r)) {
                    row[id as usize] = 1;
                }
            }
        }
    }
    bytes
}

impl<T: DeviceElement> Backend for CudaBackend<T> {
    type Tensor = DeviceTensor<T>;
    /// Key lengths as the attention kernels read them: `[rows]` int32.
    type Lengths = DeviceTensor<i32>;

    fn name(&self) -> &'static str {
        "cuda"
    }

    /// Stores `T` whatever `dtype` says: the backend's dtype is the user's
    /// choice (`--dtype`), and every op runs in it.
    fn upload(&self, data: Vec<f32>, shape: &[usize], _dtype: DType) -> Result<DeviceTensor<T>> {
        DeviceTensor::from_host(&self.device, &to_storage::<T>(&data), shape)
    }

    fn download(&self, t: &DeviceTensor<T>) -> Result<Vec<f32>> {
        Ok(widen(&t.to_host()?))
    }

    fn shape<'t>(&self, t: &'t DeviceTensor<T>) -> &'t [usize] {
        t.shape()
    }

    fn key_lengths(&self, lengths: &[usize]) -> Result<DeviceTensor<i32>> {
        let l: Vec<i32> = lengths
            .iter()
            .map(|&n| {
                i32::try_from(n).map_err(|_| {
                    Error::invalid("key_lengths", format!("length {n} does not fit int32"))
                })
            })
            .collect::<Result<_>>()?;
        DeviceTensor::from_host(&self.device, &l, &[l.len()])
    }

    fn embedding(
        &self,
        ids: &[u32],
        rows: usize,
        seq: usize,
        table: &DeviceTensor<T>,
        scale: f32,
        start: usize,
    ) -> Result<DeviceTensor<T>> {
        let [vocab, d] = *table.shape() else {
            return Err(Error::shape(
                "embedding",
                "table [vocab, d_model]",
                fmt_shape(table.shape()),
            ));
        };
        if ids.len() != rows.saturating_mul(seq) {
            return Err(Error::shape(
                "embedding",
                format!("ids [{rows}, {seq}]"),
                format!("{} ids", ids.len()),
            ));
        }
        if i32::try_from(vocab).is_err() {
            return Err(Error::invalid(
                "embedding",
                format!("vocab = {vocab} does not fit int32 ids"),
            ));
        }
        // Checked here, on the host: the kernel turns a bad id into NaN.
        if let Some((i, &id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= vocab) {
            return Err(Error::invalid(
                "embedding",
                format!("token id {id} at index {i} is out of range for vocab_size {vocab}"),
            ));
        }
        let host: Vec<i32> = ids.iter().map(|&id| id as i32).collect();
        let mut scratch = self.scratch.borrow_mut();
        // The ids buffer is reused while the count stays (every decode step
        // of a batch): the copy is queued after the kernels that read it.
        match &mut scratch.ids {
            Some(buf) if buf.numel() == host.len() => buf.copy_from_host(&host)?,
            slot => *slot = Some(DeviceTensor::from_host(&self.device, &host, &[host.len()])?),
        }
        if let Some(open) = scratch.steps.open {
            if start != open.position || rows != open.rows || seq != open.t {
                return Err(Error::invalid(
                    "embedding",
                    format!(
                        "[{rows}, {seq}] at position {start} inside a decode step of [{}, {}] at {}",
                        open.rows, open.t, open.position
                    ),
                ));
            }
        }
        let scratch = &mut *scratch;
        let mut out = scratch.steps.output(&self.device, &[rows, seq, d])?;
        let ids_dev = scratch
            .ids
            .as_ref()
            .ok_or_else(|| Error::invalid("embedding", "ids buffer vanished"))?;
        if scratch.steps.open.is_some() {
            let position = scratch.steps.position()?;
            embedding::embedding_from_device_ids_at(
                ids_dev, rows, seq, table, scale, position, &mut out,
            )?;
        } else {
            embedding::embedding_from_device_ids(
                ids_dev, rows, seq, table, scale, start, &mut out,
            )?;
        }
        Ok(out)
    }

    fn linear(
        &self,
        x: &DeviceTensor<T>,
        w: &DeviceTensor<T>,
        b: Option<&DeviceTensor<T>>,
        act: Option<Activation>,
    ) -> Result<DeviceTensor<T>> {
        let epilogue = Epilogue {
            bias: b,
            activation: act,
            residual: None,
        };
        let [n, k] = *w.shape() else {
            return Err(Error::shape("linear", "w [n, k]", fmt_shape(w.shape())));
        };
        if x.shape().last() != Some(&k) {
            return Err(Error::shape(
                "linear",
                format!("x [.., {k}]"),
                fmt_shape(x.shape()),
            ));
        }
        let m = x.numel() / k.max(1);
        let mut shape = x.shape().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = n;
        }
        let plan = linear::plan(m, n, k, T::DTYPE, self.device.multiprocessor_count());
        let mut scratch = self.scratch.borrow_mut();
        let mut out = scratch.steps.output(&self.device, &shape)?;
        linear::linear_into_with(x, w, epilogue, &mut out, plan, &mut scratch.workspace)?;
        Ok(out)
    }

    fn attention(
        &self,
        q: Cols<'_, DeviceTensor<T>>,
        k: Cols<'_, DeviceTensor<T>>,
        v: Cols<'_, DeviceTensor<T>>,
        k_len: usize,
        heads: usize,
        scale: f32,
        mask: AttnMask<'_, DeviceTensor<i32>>,
    ) -> Result<DeviceTensor<T>> {
        let (rows, q_len, _) = dims3("attention", q.tensor)?;
        let d = q.width;
        if k.width != d || v.width != d {
            return Err(Error::shape(
                "attention",
                format!("k and v views of width {d} (as q)"),
                format!("k width {}, v width {}", k.width, v.width),
            ));
        }
        if heads == 0 || !d.is_multiple_of(heads) {
            return Err(Error::invalid(
                "attention",
                format!("d_model {d} not divisible by heads {heads}"),
            ));
        }
        let mut scratch = self.scratch.borrow_mut();
        let scratch = &mut *scratch;
        let mut out = scratch.steps.output(&self.device, &[rows, q_len, d])?;
        let mut dims = AttentionDims {
            heads,
            head_dim: d / heads,
            k_len,
        };
        let mut m = AttentionMask {
            key_lengths: mask.key_lengths,
            causal: mask.causal,
        };
        if let (Some(open), true, None) = (scratch.steps.open, mask.causal, mask.key_lengths) {
            // The self-attention of a replayable step: over the cache's
            // whole capacity, masked at the step's length read on the
            // device (one query per row: the causal mask is that mask).
            let (_, cap, _) = dims3("attention", k.tensor)?;
            if q_len != 1 || k_len != open.position + 1 {
                return Err(Error::invalid(
                    "attention",
                    format!(
                        "causal attention of {q_len} queries over {k_len} keys inside a decode \
                         step at position {} (expected 1 query over {} keys)",
                        open.position,
                        open.position + 1
                    ),
                ));
            }
            dims.k_len = cap;
            m = AttentionMask {
                key_lengths: Some(scratch.steps.self_lengths()?),
                causal: false,
            };
        }
        // The views are read in place: head h of q at column q.column + h·head_dim.
        attention::attention_into(
            HeadView::at(q.tensor, q.column),
            HeadView::at(k.tensor, k.column),
            HeadView::at(v.tensor, v.column),
            dims,
            scale,
            m,
            &mut out,
            None,
            Some(&mut scratch.workspace),
        )?;
        Ok(out)
    }

    fn layer_norm(
        &self,
        x: &DeviceTensor<T>,
        residual: Option<&DeviceTensor<T>>,
        gamma: &DeviceTensor<T>,
        beta: &DeviceTensor<T>,
        eps: f32,
    ) -> Result<DeviceTensor<T>> {
        let mut out = self
            .scratch
            .borrow_mut()
            .steps
            .output(&self.device, x.shape())?;
        layer_norm::layer_norm_into(x, residual, gamma, beta, eps, &mut out)?;
        Ok(out)
    }

    fn log_softmax_topk(
        &self,
        logits_t: &DeviceTensor<T>,
        mask: &TokenMask,
        k: usize,
    ) -> Result<TopK> {
        const OP: &str = "log_softmax_topk";
        let Some(&vocab) = logits_t.shape().last() else {
            return Err(Error::shape(OP, "logits [.., vocab]", "logits []"));
        };
        let rows = logits_t.numel().checked_div(vocab).unwrap_or(0);
        if vocab == 0 || k == 0 || k > vocab {
            return Err(Error::invalid(
                OP,
                format!("k = {k} must be in 1..=vocab ({vocab})"),
            ));
        }
        cpu::log_softmax_topk::check_mask(mask, rows, vocab)?;
        if k > logits::MAX_K {
            // Wider than the kernel's compile-time top-k: the reference
            // op on the downloaded rows (same semantics; beams > 16 only).
            let host = self.download(logits_t)?;
            return cpu::log_softmax_topk::log_softmax_topk(&host, rows, vocab, mask, k);
        }
        let mut scratch = self.scratch.borrow_mut();
        let scratch = &mut *scratch;
        let rows_differ =
            mask.per_row.iter().any(|l| !l.is_empty()) || mask.only.iter().any(Option::is_some);
        let per_row = if rows_differ {
            let bytes = dense_row_mask(mask, rows, vocab);
            Some(DeviceTensor::from_host(
                &self.device,
                &bytes,
                &[rows, vocab],
            )?)
        } else {
            None
        };
        let mut out = match scratch.topk.take() {
            Some(b) if b.shape() == (rows, k) => b,
            _ => TopKBuffers::new(&self.device, rows, k)?,
        };
        let every_row = if per_row.is_none() && !mask.every_row.is_empty() {
            Some(Self::every_row_mask(
                scratch,
                &self.device,
                &mask.every_row,
                vocab,
            )?)
        } else {
            None
        };
        let masks = LogitsMasks {
            every_row,
            per_row: per_row.as_ref(),
        };
        logits::log_softmax_topk_into(logits_t, masks, &mut out)?;
        let top = out.to_host()?;
        scratch.topk = Some(out);
        Ok(TopK {
            rows: top.rows,
            k: top.k,
            ids: top.ids,
            log_probs: top.log_probs,
        })
    }

    fn kv_alloc(&self, rows: usize, cap: usize, width: usize) -> Result<DeviceTensor<T>> {
        DeviceTensor::zeros(&self.device, &[rows, cap, width])
    }

    fn kv_write(
        &self,
        cache: &mut DeviceTensor<T>,
        new: Cols<'_, DeviceTensor<T>>,
        at: usize,
    ) -> Result<()> {
        let (_, t, _) = dims3("kv_write", new.tensor)?;
        let (_, _, width) = dims3("kv_write", cache)?;
        if new.width != width {
            return Err(Error::shape(
                "kv_write",
                format!("new columns of width {width} (the cache's)"),
                format!("width {}", new.width),
            ));
        }
        let range = PositionRange {
            src_at: 0,
            dst_at: at,
            len: t,
        };
        let cols = ColumnRange {
            src: new.column,
            dst: 0,
            width,
        };
        let scratch = self.scratch.borrow();
        match scratch.steps.open {
            Some(open) => {
                if at != open.position {
                    return Err(Error::invalid(
                        "kv_write",
                        format!(
                            "position {at} inside a decode step at position {}",
                            open.position
                        ),
                    ));
                }
                // The position is read on the device (fixed launch).
                let position = scratch.steps.position()?;
                gather_rows::gather_columns_into_at(new.tensor, range, cols, position, cache)
            }
            None => gather_rows::gather_columns_into(new.tensor, None, range, cols, cache),
        }
    }

    fn kv_gather(
        &self,
        cache: &DeviceTensor<T>,
        rows: &[usize],
        len: usize,
        cap: usize,
    ) -> Result<DeviceTensor<T>> {
        let mut scratch = self.scratch.borrow_mut();
        let map = Self::row_map(&mut scratch, &self.device, rows)?;
        gather_rows::gather_rows_map(cache, map, len, cap)
    }

    /// Gathers into the spare buffer (allocated only when the shape
    /// changes: the first reorder, or when sentences are dropped) and swaps
    /// it with `cache`; only the `len` valid positions are copied. With
    /// step graphs on and the row count kept, the positions are copied
    /// back instead of swapping, so the cache keeps its buffers.
    fn kv_reorder(&self, cache: &mut DeviceTensor<T>, rows: &[usize], len: usize) -> Result<()> {
        let (_, cap, width) = dims3("kv_reorder", cache)?;
        let mut scratch = self.scratch.borrow_mut();
        let scratch = &mut *scratch;
        let shape = [rows.len(), cap, width];
        let mut spare = match scratch.spare.take() {
            Some(t) if t.shape() == shape => t,
            _ => DeviceTensor::zeros(&self.device, &shape)?,
        };
        let map = Self::row_map(scratch, &self.device, rows)?;
        gather_rows::gather_rows_map_into(cache, map, len, &mut spare)?;
        if self.step_graphs && rows.len() == self.shape(cache)[0] {
            // Replayable steps name the cache's buffers: keep them, and
            // copy the valid positions back (a second copy, the price of a
            // step that replays every time; swapping would rotate each
            // layer's K and V through the spare, a new buffer set per step).
            let range = PositionRange {
                src_at: 0,
                dst_at: 0,
                len,
            };
            gather_rows::gather_rows_into(&spare, None, range, cache)?;
        } else {
            std::mem::swap(cache, &mut spare);
        }
        scratch.spare = Some(spare);
        Ok(())
    }

    /// Opens a one-token step on fixed buffers, replayed when step graphs
    /// are on (see [`super::decode_step`]); a longer step runs as usual.
    fn begin_decode_step(&self, rows: usize, t: usize, position: usize) -> Result<()> {
        self.scratch
            .borrow_mut()
            .steps
            .begin(&self.device, rows, t, position, self.step_graphs)
    }

    fn end_decode_step(&self) -> Result<()> {
        self.scratch.borrow_mut().steps.end(&self.device)
    }

    fn abort_decode_step(&self) {
        if let Ok(mut s) = self.scratch.try_borrow_mut() {
            s.steps.abort(&self.device);
        }
    }
}
