//! The encoder: token embedding (× sqrt(d_model) when `scale_embedding`) +
//! sinusoidal positions, then post-LN layers
//! `x = LN(x + SelfAttn(x)); x = LN(x + FFN(x))`, with padded keys masked.

use crate::error::{Error, Result};
use crate::model::backend::{AttnMask, Backend, Cols};
use crate::model::marian::MarianModel;

/// The encoder's output for a right-padded batch of sources, on backend `B`.
pub struct EncoderOutput<B: Backend> {
    /// `[batch, src_len, d_model]`; positions at `>= lengths[b]` are padding.
    pub hidden: B::Tensor,
    /// Real tokens per source, `[batch]` on the host.
    pub lengths: Vec<usize>,
    /// `lengths` on the backend ([`Backend::key_lengths`]), made once per
    /// batch: the key padding of the encoder's self-attention, and of
    /// cross-attention when the decoder rows are the sources themselves.
    pub key_lengths: B::Lengths,
    /// Padded length (the longest source).
    pub src_len: usize,
}

impl<B: Backend> MarianModel<B> {
    /// Encodes a batch of sources (ids including the trailing EOS), right
    /// padded with `pad_token_id`.
    ///
    /// Errors: [`Error::InvalidArgument`] for an empty source, a source longer
    /// than `max_position_embeddings`, or an id past the vocabulary; the
    /// backend's errors.
    pub fn encode(&self, sources: &[Vec<u32>]) -> Result<EncoderOutput<B>> {
        let cfg = &self.config;
        if let Some(i) = sources.iter().position(Vec::is_empty) {
            return Err(Error::invalid(
                "encode",
                format!("source {i} is empty (it needs at least the EOS token)"),
            ));
        }
        let max_pos = cfg.max_position_embeddings;
        if let Some((i, s)) = sources.iter().enumerate().find(|(_, s)| s.len() > max_pos) {
            // Hugging Face cannot embed positions past its table either.
            return Err(Error::invalid(
                "encode",
                format!(
                    "source {i} has {} tokens; the model's max_position_embeddings is {max_pos}",
                    s.len()
                ),
            ));
        }
        let lengths: Vec<usize> = sources.iter().map(Vec::len).collect();
        let src_len = lengths.iter().copied().max().unwrap_or(0);
        let rows = sources.len();
        let mut ids = vec![cfg.pad_token_id; rows * src_len];
        for (dst, s) in ids.chunks_exact_mut(src_len.max(1)).zip(sources) {
            dst[..s.len()].copy_from_slice(s);
        }
        let b = &self.backend;
        let mut h = b.embedding(
            &ids,
            rows,
            src_len,
            &self.weights.encoder_embed,
            cfg.embed_scale(),
            0,
        )?;
        let heads = cfg.encoder_attention_heads;
        let key_lengths = b.key_lengths(&lengths)?;
        let mask = AttnMask {
            key_lengths: Some(&key_lengths),
            causal: false,
        };
        let d = cfg.d_model;
        for layer in &self.weights.encoder {
            let w = &layer.self_attn;
            // One GEMM for q, k and v: [rows, src_len, 3·d_model].
            let qkv = self.proj(&h, &w.qkv, None)?;
            let (q, k, v) = (
                Cols::part(&qkv, 0, d),
                Cols::part(&qkv, 1, d),
                Cols::part(&qkv, 2, d),
            );
            let a = self.attend(&w.out, q, k, v, src_len, heads, mask)?;
            h = self.add_norm(&a, &h, &layer.self_attn_layer_norm)?;
            let f = self.ffn(&h, &layer.ffn)?;
            h = self.add_norm(&f, &h, &layer.final_layer_norm)?;
        }
        Ok(EncoderOutput {
            hidden: h,
            lengths,
            key_lengths,
            src_len,
        })
    }

    /// The encoder's last hidden states per source on the host, `[len, d_model]`
    /// each (real positions only), for parity tests against Hugging Face's
    /// `encoder_last_hidden_state`.
    pub fn encoder_hidden_states(&self, sources: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let enc = self.encode(sources)?;
        let all = self.backend.download(&enc.hidden)?;
        let d = self.config.d_model;
        Ok(enc
            .lengths
            .iter()
            .enumerate()
            .map(|(i, &len)| all[i * enc.src_len * d..][..len * d].to_vec())
            .collect())
    }
}
