//! The `Backend` trait: the operations the Marian model is written against.
//!
//! The model (encoder, decoder, KV cache, search) only calls these; the CPU
//! reference backend implements them with the reference ops, and a GPU
//! backend can implement them with device tensors (the associated
//! [`Backend::Tensor`]) and fused kernels. The trait is shaped so that
//! everything stays on the device between decode steps:
//!
//! - weights are uploaded once, in the checkpoint's storage dtype
//!   ([`Backend::upload`]);
//! - the key lengths of a batch (right padding) are made once per batch
//!   ([`Backend::key_lengths`]) and passed by reference to every attention
//!   call;
//! - the self-attention KV cache is written in place ([`Backend::kv_write`])
//!   and read in place by [`Backend::attention`] (no copy of the valid
//!   positions per step);
//! - the logits step (log-softmax, the search's masks, top-k) is one
//!   operation ([`Backend::log_softmax_topk`]) and only `[rows, k]` ids and
//!   log-probabilities reach the host, where greedy and beam search run.
//!   The full `[rows, vocab]` block is downloaded only by the teacher-forced
//!   parity path (`MarianModel::decoder_logits`).
//!
//! Tensor conventions: row-major, f32 semantics whatever the storage dtype
//! (a backend may store f16 / bf16; statistics, softmax and accumulation are
//! f32), activations `[rows, seq, width]`, linear weights
//! `[out_features, in_features]` as Hugging Face stores them, vectors
//! (biases, LayerNorm gamma / beta) `[n]`. A KV cache tensor is
//! `[rows, capacity, d_model]` of which the first `len` positions are valid.
//!
//! Errors: every method returns [`crate::Error`]; shape mismatches are
//! [`crate::Error::Shape`] naming the op and both shapes, bad ids or
//! parameters [`crate::Error::InvalidArgument`], and a device backend adds
//! its own driver errors (allocation, launch, copy).

use crate::activation::Activation;
use crate::dtype::DType;
use crate::error::Result;

/// Masking of one attention call (see [`Backend::attention`]); `L` is the
/// backend's [`Backend::Lengths`].
#[derive(Debug)]
pub struct AttnMask<'a, L> {
    /// Real keys per row (right padding), made by [`Backend::key_lengths`]:
    /// keys at positions `>=` a row's length are masked. `None`: every key
    /// up to `k_len` is real.
    pub key_lengths: Option<&'a L>,
    /// Query `i` of `q_len` sits at absolute position `k_len - q_len + i`
    /// and sees keys `0..=` that position.
    pub causal: bool,
}

// Manual impls: the derives would require `L: Clone` / `L: Default`, but
// the mask only holds a reference to `L`.
impl<L> Clone for AttnMask<'_, L> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<L> Copy for AttnMask<'_, L> {}

impl<L> Default for AttnMask<'_, L> {
    fn default() -> Self {
        AttnMask {
            key_lengths: None,
            causal: false,
        }
    }
}

/// Columns `column .. column + width` of every position of a
/// `[rows, positions, total]` tensor: a view, nothing copied. The fused
/// projections' outputs are read through it: q, k and v of the
/// self-attention's `[rows, seq, 3·d_model]`, k and v of the
/// cross-attention's `[rows, src_len, 2·d_model]`.
#[derive(Debug)]
pub struct Cols<'a, T> {
    /// The tensor, `[rows, positions, total]`.
    pub tensor: &'a T,
    /// First column.
    pub column: usize,
    /// Columns in the view.
    pub width: usize,
}

impl<T> Clone for Cols<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Cols<'_, T> {}

impl<'a, T> Cols<'a, T> {
    /// Columns `column .. column + width` of `tensor`.
    pub fn new(tensor: &'a T, column: usize, width: usize) -> Self {
        Cols {
            tensor,
            column,
            width,
        }
    }

    /// The part `i` of `width` columns (`i = 0, 1, 2` for q, k, v of a
    /// fused QKV output of `3·width` columns).
    pub fn part(tensor: &'a T, i: usize, width: usize) -> Self {
        Cols::new(tensor, i * width, width)
    }
}

/// Which tokens a logits step scores `-inf` (Hugging Face's logits
/// processors and this crate's pad mask, as lists of ids; see
/// [`Backend::log_softmax_topk`]).
///
/// Every id must be `< vocab`. `per_row` and `only` are either empty (no
/// row has such entries) or hold one entry per row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenMask {
    /// Ids masked in every row: pad (when it is not an EOS id) and the
    /// single-token `bad_words_ids`.
    pub every_row: Vec<u32>,
    /// `[rows]`: ids masked in that row only: the last token of a
    /// multi-token bad word whose prefix ends the row's sequence, the EOS
    /// ids while the row is under `min_length` / `min_new_tokens`.
    pub per_row: Vec<Vec<u32>>,
    /// `[rows]`: `Some(ids)` keeps only these ids in that row and masks
    /// every other one, whatever `every_row` and `per_row` say (the
    /// forced-EOS step: Hugging Face sets every score to `-inf` but the
    /// forced ids').
    pub only: Vec<Option<Vec<u32>>>,
}

impl TokenMask {
    /// A mask of `every_row` in every row and nothing per row.
    pub fn new(every_row: Vec<u32>) -> Self {
        TokenMask {
            every_row,
            per_row: Vec::new(),
            only: Vec::new(),
        }
    }

    /// The ids masked in row `row` besides [`TokenMask::every_row`] (empty
    /// when `per_row` is empty or shorter).
    pub fn row_masked(&self, row: usize) -> &[u32] {
        self.per_row.get(row).map_or(&[], Vec::as_slice)
    }

    /// The "only these ids" list of row `row`, if it has one.
    pub fn row_only(&self, row: usize) -> Option<&[u32]> {
        self.only.get(row).and_then(Option::as_deref)
    }
}

/// The `k` best tokens of every row of a logits step, on the host (see
/// [`Backend::log_softmax_topk`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TopK {
    /// Rows (sentences × beams).
    pub rows: usize,
    /// Entries per row.
    pub k: usize,
    /// `[rows, k]` token ids, best first.
    pub ids: Vec<u32>,
    /// `[rows, k]` log-probabilities of `ids` (f32, natural log; `-inf` for
    /// a masked id).
    pub log_probs: Vec<f32>,
}

impl TopK {
    /// Row `r`'s ids, `[k]`, best first (empty past the last row).
    pub fn row_ids(&self, r: usize) -> &[u32] {
        self.ids.get(r * self.k..(r + 1) * self.k).unwrap_or(&[])
    }

    /// Row `r`'s log-probabilities, `[k]`, in the order of [`TopK::row_ids`].
    pub fn row_log_probs(&self, r: usize) -> &[f32] {
        self.log_probs
            .get(r * self.k..(r + 1) * self.k)
            .unwrap_or(&[])
    }
}

/// Operations of the encoder-decoder Transformer on one device.
pub trait Backend {
    /// A tensor on this backend's device, with its shape (and, on a device
    /// backend, its storage dtype).
    type Tensor;

    /// Per-row key lengths of a batch (`[rows]` integers) in the form
    /// [`Backend::attention`] reads them (a device buffer on a GPU). Made
    /// once per batch by [`Backend::key_lengths`].
    type Lengths;

    /// Short name for messages (`"cpu"`, `"fast-cpu"`, `"cuda"`).
    fn name(&self) -> &'static str;

    /// Copies host f32 data of `shape` (row-major) to the device, stored as
    /// `dtype` (rounded to nearest even when 16-bit). Weights are uploaded
    /// in the checkpoint's stored dtype (so 16-bit weights stay 16-bit on a
    /// GPU); activations and host inputs as [`DType::F32`]. A backend may
    /// store a wider dtype than asked when that is exact (the CPU reference
    /// keeps f32: widening f16 / bf16 to f32 loses nothing), and a backend
    /// made for one storage dtype stores every tensor in it (the CUDA
    /// backend: the user's `--dtype`, rounding at upload).
    ///
    /// Errors: [`crate::Error::Shape`] if `data.len()` is not the product of `shape`.
    fn upload(&self, data: Vec<f32>, shape: &[usize], dtype: DType) -> Result<Self::Tensor>;

    /// As [`Backend::upload`], for a linear layer's weight `[out_features,
    /// in_features]` (the `w` of [`Backend::linear`]): a backend may hold
    /// it in the layout of its GEMM (the fast CPU backend packs it into
    /// panels, once, at load). [`Backend::download`] still returns the
    /// row-major elements. The default is [`Backend::upload`].
    ///
    /// Errors: as [`Backend::upload`].
    fn upload_weight(&self, data: Vec<f32>, shape: &[usize], dtype: DType) -> Result<Self::Tensor> {
        self.upload(data, shape, dtype)
    }

    /// Copies a tensor back to the host as f32, row-major (the product of
    /// its shape elements).
    ///
    /// Errors: a device backend's copy error.
    fn download(&self, t: &Self::Tensor) -> Result<Vec<f32>>;

    /// The shape of `t`.
    fn shape<'t>(&self, t: &'t Self::Tensor) -> &'t [usize];

    /// Makes the key lengths of a batch, `lengths` `[rows]` (real keys of
    /// each row; keys at `>=` its length are masked), for
    /// [`AttnMask::key_lengths`]. Called once per batch (and again only
    /// when rows are reordered or dropped), not per attention call.
    ///
    /// Errors: [`crate::Error::InvalidArgument`] if a length does not fit
    /// the backend's index type; a device backend's allocation or copy error.
    fn key_lengths(&self, lengths: &[usize]) -> Result<Self::Lengths>;

    /// `table[ids] · scale + sinusoid(start + s)`: ids `[rows, seq]` (host),
    /// table `[vocab, d_model]`; returns `[rows, seq, d_model]` (f32
    /// semantics). Positions are `start .. start + seq` (sinusoidal, first
    /// half sin, second half cos; CASES.md D4).
    ///
    /// Errors: [`crate::Error::Shape`] if `ids.len() != rows * seq` or the
    /// table is not 2-D; [`crate::Error::InvalidArgument`] for an id
    /// `>= vocab`.
    fn embedding(
        &self,
        ids: &[u32],
        rows: usize,
        seq: usize,
        table: &Self::Tensor,
        scale: f32,
        start: usize,
    ) -> Result<Self::Tensor>;

    /// `act(x · wᵀ + b)` over the last dimension: x `[.., k]`, w `[n, k]`,
    /// b `[n]`; returns `[.., n]` (f32 accumulation).
    ///
    /// Errors: [`crate::Error::Shape`] if w is not 2-D, x's last dimension
    /// is not `k` or b is not `[n]`.
    fn linear(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        b: Option<&Self::Tensor>,
        act: Option<Activation>,
    ) -> Result<Self::Tensor>;

    /// Multi-head attention `softmax(Q·Kᵀ·scale + mask)·V` with `heads`
    /// heads of `d / heads`: q `[rows, q_len, d]`; k, v `[rows, cap, d]` of
    /// which the first `k_len` positions are used, each a column view
    /// ([`Cols`], `d` = its width) of a wider tensor or a whole tensor.
    /// Returns `[rows, q_len, d]`. The KV cache and the fused projections'
    /// outputs are read in place (a device backend copies nothing). A query
    /// whose keys are all masked gets 0, never NaN. Softmax in f32.
    ///
    /// Errors: [`crate::Error::Shape`] for non-3-D operands, views past
    /// their tensor's columns, mismatched rows or widths, `k_len > cap`, or
    /// key lengths not `[rows]`; [`crate::Error::InvalidArgument`] if `d`
    /// is not divisible by `heads`.
    #[allow(clippy::too_many_arguments)] // the attention call's natural parameters
    fn attention(
        &self,
        q: Cols<'_, Self::Tensor>,
        k: Cols<'_, Self::Tensor>,
        v: Cols<'_, Self::Tensor>,
        k_len: usize,
        heads: usize,
        scale: f32,
        mask: AttnMask<'_, Self::Lengths>,
    ) -> Result<Self::Tensor>;

    /// `LayerNorm(x + residual) · gamma + beta` over the last dimension
    /// (width `n`): x and residual of the same shape `[.., n]`, gamma and
    /// beta `[n]`. f32 statistics, two-pass variance. Returns x's shape.
    ///
    /// Errors: [`crate::Error::Shape`] if the shapes do not match.
    fn layer_norm(
        &self,
        x: &Self::Tensor,
        residual: Option<&Self::Tensor>,
        gamma: &Self::Tensor,
        beta: &Self::Tensor,
        eps: f32,
    ) -> Result<Self::Tensor>;

    /// The logits step of one decode step, returning only `[rows, k]` to
    /// the host.
    ///
    /// `logits` is `[.., vocab]` (the output projection with
    /// `final_logits_bias` already added by [`Backend::linear`]); every
    /// leading dimension counts as rows (`[rows, 1, vocab]` from a decode
    /// step is fine). For each row:
    ///
    /// 1. `log_prob = log_softmax(logits)` over the FULL vocabulary of the
    ///    unmasked logits (f32; the pad column is in the normaliser, as
    ///    Hugging Face does it);
    /// 2. the ids of `mask` get `log_prob = -inf` (no renormalisation);
    /// 3. the `k` ids with the highest masked raw logit (`-inf` at masked
    ///    ids), best first; equal values by lower id, so when fewer than
    ///    `k` ids are finite the `-inf` entries fill the tail in id order.
    ///    Ranking by the raw logit, not by `x - lse`, is Hugging Face's
    ///    greedy argmax over processed logits and avoids ties made by
    ///    rounding the subtraction.
    ///
    /// A NaN anywhere in a row's logits (masked or not) makes every
    /// log-probability of that row NaN (the search reports it as an error);
    /// a NaN logit at an unmasked id ranks above every number. A `+inf`
    /// logit makes the row's log-probabilities NaN too (as PyTorch:
    /// `inf - inf`).
    ///
    /// Errors: [`crate::Error::InvalidArgument`] for `k` outside
    /// `1..=vocab` or a mask id `>= vocab`; [`crate::Error::Shape`] if
    /// `mask.per_row` / `mask.only` are neither empty nor `[rows]`.
    fn log_softmax_topk(&self, logits: &Self::Tensor, mask: &TokenMask, k: usize) -> Result<TopK>;

    /// A zeroed KV-cache buffer `[rows, cap, width]` (compute dtype).
    ///
    /// Errors: a device backend's allocation error.
    fn kv_alloc(&self, rows: usize, cap: usize, width: usize) -> Result<Self::Tensor>;

    /// Writes `new` (a `[rows, t, width]` view: the k or v columns of a
    /// fused QKV output) into `cache` (`[rows, cap, width]`) at positions
    /// `at .. at + t`, in place (no copy of the rest of the cache).
    ///
    /// Errors: [`crate::Error::Shape`] if rows or widths differ, the view
    /// passes its tensor's columns or `at + t > cap`.
    fn kv_write(
        &self,
        cache: &mut Self::Tensor,
        new: Cols<'_, Self::Tensor>,
        at: usize,
    ) -> Result<()>;

    /// A new `[rows.len(), cap, width]` buffer whose row `r` holds positions
    /// `0..len` of `cache` row `rows[r]`: reorders beams by their surviving
    /// indices, expands encoder memory per beam, drops finished sentences, or
    /// grows the capacity, copying only the `len` valid positions.
    ///
    /// Errors: [`crate::Error::Shape`] if `len` exceeds either capacity;
    /// [`crate::Error::InvalidArgument`] for a row index past the cache's rows.
    fn kv_gather(
        &self,
        cache: &Self::Tensor,
        rows: &[usize],
        len: usize,
        cap: usize,
    ) -> Result<Self::Tensor>;

    /// Opens one decode step: `rows` rows, `t` new tokens each at positions
    /// `position .. position + t`. The model calls it after the KV cache
    /// has room for the step and before the step's first operation, then
    /// [`Backend::end_decode_step`] after its last (the logits projection),
    /// or [`Backend::abort_decode_step`] when an operation failed. Between
    /// them a device backend may run the step on fixed buffers and replay it
    /// as one unit (the CUDA backend's step graphs); a tensor the step
    /// returned is the caller's as always (a fixed buffer is not reused
    /// while it is held). The default does nothing.
    ///
    /// Errors: a device backend's copy error.
    fn begin_decode_step(&self, rows: usize, t: usize, position: usize) -> Result<()> {
        let _ = (rows, t, position);
        Ok(())
    }

    /// Closes the step opened by [`Backend::begin_decode_step`] (its work is
    /// queued by the time this returns). The default does nothing.
    ///
    /// Errors: a device backend's launch error.
    fn end_decode_step(&self) -> Result<()> {
        Ok(())
    }

    /// Abandons the step opened by [`Backend::begin_decode_step`] after an
    /// error inside it. The default does nothing.
    fn abort_decode_step(&self) {}

    /// Replaces `cache` (`[n, cap, width]`) by its rows `rows`, in that
    /// order, keeping the capacity: afterwards row `r` holds positions
    /// `0..len` of the old row `rows[r]`; positions `>= len` hold
    /// unspecified values (they are written before they are read). The
    /// per-step beam reorder: a backend may keep a spare buffer and swap it
    /// in (no allocation, nothing but the valid positions written); the
    /// default is [`Backend::kv_gather`] into a new buffer.
    ///
    /// Errors: as [`Backend::kv_gather`]; [`crate::Error::Shape`] for a
    /// cache that is not 3-D.
    fn kv_reorder(&self, cache: &mut Self::Tensor, rows: &[usize], len: usize) -> Result<()> {
        let cap = match *self.shape(cache) {
            [_, cap, _] => cap,
            ref other => {
                return Err(crate::Error::shape(
                    "kv_reorder",
                    "cache [rows, cap, width]",
                    crate::error::fmt_shape(other),
                ))
            }
        };
        *cache = self.kv_gather(cache, rows, len, cap)?;
        Ok(())
    }
}
