//! The `Backend` trait: the operations the Marian model is written against.
//!
//! The model (encoder, decoder, KV cache) only calls these; `cpu::Cpu`
//! implements them with the reference ops, and a CUDA backend can implement
//! them with device tensors (the associated [`Backend::Tensor`]) and fused
//! kernels. Search runs on the host: each step downloads the `[rows, vocab]`
//! scores with [`Backend::download`].
//!
//! Tensor conventions: row-major f32 semantics (a backend may store 16-bit,
//! but statistics and softmax are f32), activations `[rows, seq, width]`,
//! linear weights `[out_features, in_features]` as Hugging Face stores them,
//! vectors (biases, LayerNorm gamma / beta) `[n]`. A KV cache tensor is
//! `[rows, capacity, d_model]` of which the first `len` positions are valid.

use crate::activation::Activation;
use crate::error::Result;

/// Masking of one attention call (see [`Backend::attention`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct AttnMask<'a> {
    /// `[rows]`: real keys per row (right padding); keys at `>=` this are masked.
    pub key_lengths: Option<&'a [usize]>,
    /// Query `i` of `q_len` sits at absolute position `k_len - q_len + i`
    /// and sees keys `0..=` that position.
    pub causal: bool,
}

/// Operations of the encoder-decoder Transformer on one device.
pub trait Backend {
    /// A tensor on this backend's device, with its shape.
    type Tensor;

    /// Short name for messages (`"cpu"`, `"cuda"`).
    fn name(&self) -> &'static str;

    /// Copies host f32 data of `shape` to the device. Errors: [`crate::Error::Shape`]
    /// if `data.len()` is not the product of `shape`.
    fn upload(&self, data: Vec<f32>, shape: &[usize]) -> Result<Self::Tensor>;

    /// Copies a tensor back to the host as f32, row-major.
    fn download(&self, t: &Self::Tensor) -> Result<Vec<f32>>;

    /// The shape of `t`.
    fn shape<'t>(&self, t: &'t Self::Tensor) -> &'t [usize];

    /// `table[ids] · scale + sinusoid(start + s)`: ids `[rows, seq]`, table
    /// `[vocab, d_model]`; returns `[rows, seq, d_model]`.
    /// Errors: an id out of the vocabulary ([`crate::Error::InvalidArgument`]).
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
    /// b `[n]`; returns `[.., n]`.
    fn linear(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        b: Option<&Self::Tensor>,
        act: Option<Activation>,
    ) -> Result<Self::Tensor>;

    /// Multi-head attention `softmax(Q·Kᵀ·scale + mask)·V` with `heads` heads:
    /// q `[rows, q_len, d]`; k, v `[rows, cap, d]` of which the first `k_len`
    /// positions are used. Returns `[rows, q_len, d]`. A query whose keys are
    /// all masked gets 0.
    #[allow(clippy::too_many_arguments)] // the attention call's natural parameters
    fn attention(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        k_len: usize,
        heads: usize,
        scale: f32,
        mask: AttnMask<'_>,
    ) -> Result<Self::Tensor>;

    /// `LayerNorm(x + residual) · gamma + beta` over the last dimension.
    fn layer_norm(
        &self,
        x: &Self::Tensor,
        residual: Option<&Self::Tensor>,
        gamma: &Self::Tensor,
        beta: &Self::Tensor,
        eps: f32,
    ) -> Result<Self::Tensor>;

    /// Log-softmax over the last dimension (f32).
    fn log_softmax(&self, x: &Self::Tensor) -> Result<Self::Tensor>;

    /// A zeroed KV-cache buffer `[rows, cap, width]`.
    fn kv_alloc(&self, rows: usize, cap: usize, width: usize) -> Result<Self::Tensor>;

    /// Writes `new` (`[rows, t, width]`) into `cache` (`[rows, cap, width]`)
    /// at positions `at .. at + t`, in place (no copy of the rest of the cache).
    fn kv_write(&self, cache: &mut Self::Tensor, new: &Self::Tensor, at: usize) -> Result<()>;

    /// A new `[rows.len(), cap, width]` buffer whose row `r` holds positions
    /// `0..len` of `cache` row `rows[r]`: reorders beams by their surviving
    /// indices, expands encoder memory per beam, drops finished sentences, or
    /// grows the capacity, copying only the `len` valid positions.
    fn kv_gather(
        &self,
        cache: &Self::Tensor,
        rows: &[usize],
        len: usize,
        cap: usize,
    ) -> Result<Self::Tensor>;
}
