//! The decoder: embedding + positions continuing from the cache length, then
//! post-LN layers `x = LN(x + CausalSelfAttn(x)); x = LN(x + CrossAttn(x,
//! memory)); x = LN(x + FFN(x))`, then `logits = x·lm_headᵀ + final_logits_bias`.
//!
//! Self-attention keys and values go to the [`KvCache`]; cross-attention keys
//! and values are computed once per source from the encoder output and
//! expanded to the decoder rows (sentences × beams).

use crate::error::{Error, Result};
use crate::model::backend::{AttnMask, Backend, Cols};
use crate::model::encoder::EncoderOutput;
use crate::model::kv_cache::KvCache;
use crate::model::marian::MarianModel;

/// Everything the decoder keeps between steps for a batch of rows, on backend `B`.
pub struct DecoderState<B: Backend> {
    /// Self-attention keys / values of the decoded positions.
    pub cache: KvCache<B::Tensor>,
    /// Per layer, cross-attention keys and values `[rows, src_len,
    /// 2·d_model]` (one fused projection of the encoder memory: keys in
    /// columns `0..d`, values in `d..2d`).
    cross_kv: Vec<B::Tensor>,
    /// Real source tokens of each row (key padding of cross-attention), on the host.
    src_lengths: Vec<usize>,
    /// `src_lengths` on the backend: made once per batch, rebuilt only when
    /// [`MarianModel::reorder_rows`] changes the row → source map.
    cross_lengths: B::Lengths,
    /// For each row, the index of its source in the encoder batch.
    row_source: Vec<usize>,
    /// Padded source length.
    src_len: usize,
}

impl<B: Backend> DecoderState<B> {
    /// Decoder rows.
    pub fn rows(&self) -> usize {
        self.row_source.len()
    }

    /// For each row, the index of its source in the encoded batch.
    pub fn row_source(&self) -> &[usize] {
        &self.row_source
    }
}

/// A backend's open decode step, aborted if dropped (on unwind); forgotten
/// once the step's operations have returned.
struct OpenStep<'a, B: Backend>(&'a B);

impl<B: Backend> Drop for OpenStep<'_, B> {
    fn drop(&mut self) {
        self.0.abort_decode_step();
    }
}

impl<B: Backend> MarianModel<B> {
    /// Starts decoding: row `r` decodes source `row_source[r]` of `enc`
    /// (e.g. `[0,0,0,0,1,1,1,1]` for 2 sources × 4 beams). Cross-attention
    /// keys and values are computed once per source and expanded to the rows.
    /// `capacity` is the number of positions to reserve in the KV cache.
    ///
    /// Errors: [`Error::InvalidArgument`] if a `row_source` entry is not a
    /// source of `enc`; the backend's errors.
    pub fn start_decoder(
        &self,
        enc: &EncoderOutput<B>,
        row_source: &[usize],
        capacity: usize,
    ) -> Result<DecoderState<B>> {
        if let Some(&bad) = row_source.iter().find(|&&s| s >= enc.lengths.len()) {
            return Err(Error::invalid(
                "start_decoder",
                format!("row source {bad} >= batch {}", enc.lengths.len()),
            ));
        }
        let b = &self.backend;
        let identity = row_source.len() == enc.lengths.len()
            && row_source.iter().enumerate().all(|(i, &s)| i == s);
        let mut cross_kv = Vec::with_capacity(self.weights.decoder.len());
        for layer in &self.weights.decoder {
            let w = &layer.encoder_attn;
            // One GEMM for k and v, once per batch: [sources, src_len, 2·d_model].
            let mut kv = self.proj(&enc.hidden, &w.kv, None)?;
            if !identity {
                kv = b.kv_gather(&kv, row_source, enc.src_len, enc.src_len)?;
            }
            cross_kv.push(kv);
        }
        let cache = KvCache::new(
            b,
            self.weights.decoder.len(),
            row_source.len(),
            capacity,
            self.config.d_model,
        )?;
        let src_lengths: Vec<usize> = row_source.iter().map(|&s| enc.lengths[s]).collect();
        let cross_lengths = b.key_lengths(&src_lengths)?;
        Ok(DecoderState {
            cache,
            cross_kv,
            src_lengths,
            cross_lengths,
            row_source: row_source.to_vec(),
            src_len: enc.src_len,
        })
    }

    /// Decodes `t` new tokens per row (`ids` is `[rows, t]`) at positions
    /// `cache.len() ..`, appending to the KV cache. Returns the logits
    /// `[rows, t, target_vocab]` (with `final_logits_bias`).
    ///
    /// Errors: [`Error::Shape`] if `ids.len() != rows * t`;
    /// [`Error::InvalidArgument`] if a position `>= max_position_embeddings`
    /// would be decoded; an id past the vocabulary; the backend's errors.
    pub fn decode_step(
        &self,
        state: &mut DecoderState<B>,
        ids: &[u32],
        t: usize,
    ) -> Result<B::Tensor> {
        let rows = state.rows();
        if ids.len() != rows * t {
            return Err(Error::shape(
                "decode_step",
                format!("ids [{rows}, {t}]"),
                format!("{} ids", ids.len()),
            ));
        }
        let cfg = &self.config;
        let b = &self.backend;
        let start = state.cache.len();
        let max_pos = cfg.max_position_embeddings;
        if start.saturating_add(t) > max_pos {
            // As the encoder: no position past the model's table.
            return Err(Error::invalid(
                "decode_step",
                format!(
                    "decoder positions {start}..{} go past the model's max_position_embeddings {max_pos}",
                    start.saturating_add(t)
                ),
            ));
        }
        state.cache.reserve(b, t)?;
        b.begin_decode_step(rows, t, start)?;
        // Aborts the step if an operation panics (a caller may catch it).
        let open = OpenStep(b);
        let result = self.decode_step_ops(state, ids, t, start);
        std::mem::forget(open);
        match result {
            Ok(logits) => {
                b.end_decode_step()?;
                Ok(logits)
            }
            Err(e) => {
                b.abort_decode_step();
                Err(e)
            }
        }
    }

    /// The operations of [`MarianModel::decode_step`], between the
    /// backend's `begin_decode_step` and `end_decode_step`.
    fn decode_step_ops(
        &self,
        state: &mut DecoderState<B>,
        ids: &[u32],
        t: usize,
        start: usize,
    ) -> Result<B::Tensor> {
        let cfg = &self.config;
        let b = &self.backend;
        let rows = state.rows();
        let heads = cfg.decoder_attention_heads;
        let mut h = b.embedding(
            ids,
            rows,
            t,
            &self.weights.decoder_embed,
            cfg.embed_scale(),
            start,
        )?;
        let self_mask = AttnMask {
            key_lengths: None,
            causal: true,
        };
        let cross_mask = AttnMask {
            key_lengths: Some(&state.cross_lengths),
            causal: false,
        };
        let d = cfg.d_model;
        for (l, layer) in self.weights.decoder.iter().enumerate() {
            let w = &layer.self_attn;
            // One GEMM for q, k and v; k and v go to the cache from its columns.
            let qkv = self.proj(&h, &w.qkv, None)?;
            state
                .cache
                .write(b, l, Cols::part(&qkv, 1, d), Cols::part(&qkv, 2, d))?;
            let a = self.attend(
                &w.out,
                Cols::part(&qkv, 0, d),
                Cols::new(&state.cache.k[l], 0, d),
                Cols::new(&state.cache.v[l], 0, d),
                start + t,
                heads,
                self_mask,
            )?;
            h = self.add_norm(&a, &h, &layer.self_attn_layer_norm)?;
            let w = &layer.encoder_attn;
            let q = self.proj(&h, &w.q, None)?;
            let kv = &state.cross_kv[l];
            let a = self.attend(
                &w.out,
                Cols::new(&q, 0, d),
                Cols::part(kv, 0, d),
                Cols::part(kv, 1, d),
                state.src_len,
                heads,
                cross_mask,
            )?;
            h = self.add_norm(&a, &h, &layer.encoder_attn_layer_norm)?;
            let f = self.ffn(&h, &layer.ffn)?;
            h = self.add_norm(&f, &h, &layer.final_layer_norm)?;
        }
        state.cache.advance(t);
        b.linear(
            &h,
            &self.weights.lm_head,
            Some(&self.weights.final_logits_bias),
            None,
        )
    }

    /// Keeps rows `rows` of the state, in that order: beam reorder by the
    /// surviving indices, or dropping finished sentences. Cross-attention
    /// memory (and its key lengths) is gathered only when the row → source
    /// map changes.
    ///
    /// Errors: [`Error::InvalidArgument`] for a row `>=` the state's rows;
    /// the backend's errors.
    pub fn reorder_rows(&self, state: &mut DecoderState<B>, rows: &[usize]) -> Result<()> {
        let n = state.rows();
        if let Some(&bad) = rows.iter().find(|&&r| r >= n) {
            return Err(Error::invalid(
                "reorder_rows",
                format!("row {bad} >= rows {n}"),
            ));
        }
        let b = &self.backend;
        state.cache.reorder(b, rows)?;
        let new_source: Vec<usize> = rows.iter().map(|&r| state.row_source[r]).collect();
        if new_source != state.row_source {
            for t in state.cross_kv.iter_mut() {
                *t = b.kv_gather(t, rows, state.src_len, state.src_len)?;
            }
            state.src_lengths = rows.iter().map(|&r| state.src_lengths[r]).collect();
            state.cross_lengths = b.key_lengths(&state.src_lengths)?;
            state.row_source = new_source;
        }
        Ok(())
    }

    /// Teacher-forced logits: for each pair, the decoder reads
    /// `decoder_inputs[i]` (starting with `decoder_start_token_id`) in one
    /// causal pass over source `sources[i]`. Returns, per pair,
    /// `[decoder_inputs[i].len(), target_vocab]` logits on the host (as
    /// Hugging Face `MarianMTModel(input_ids, decoder_input_ids).logits`).
    /// Right padding of the decoder inputs is harmless: a causal query never
    /// sees a later (padded) key.
    ///
    /// Errors: [`Error::InvalidArgument`] if the counts differ or a sequence is empty.
    pub fn decoder_logits(
        &self,
        sources: &[Vec<u32>],
        decoder_inputs: &[Vec<u32>],
    ) -> Result<Vec<Vec<f32>>> {
        if sources.len() != decoder_inputs.len() {
            return Err(Error::invalid(
                "decoder_logits",
                format!(
                    "{} sources but {} decoder inputs",
                    sources.len(),
                    decoder_inputs.len()
                ),
            ));
        }
        if decoder_inputs.iter().any(Vec::is_empty) {
            return Err(Error::invalid("decoder_logits", "empty decoder input"));
        }
        if sources.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self.encode(sources)?;
        let rows: Vec<usize> = (0..sources.len()).collect();
        let t = decoder_inputs.iter().map(Vec::len).max().unwrap_or(0);
        let mut state = self.start_decoder(&enc, &rows, t)?;
        let mut ids = vec![self.config.pad_token_id; rows.len() * t];
        for (dst, s) in ids.chunks_exact_mut(t).zip(decoder_inputs) {
            dst[..s.len()].copy_from_slice(s);
        }
        let logits = self
            .backend
            .download(&self.decode_step(&mut state, &ids, t)?)?;
        let vocab = self.config.target_vocab_size();
        Ok(decoder_inputs
            .iter()
            .enumerate()
            .map(|(i, s)| logits[i * t * vocab..][..s.len() * vocab].to_vec())
            .collect())
    }
}
