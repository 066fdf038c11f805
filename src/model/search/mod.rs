//! Search over the decoder's per-step scores, on the host, with Hugging Face
//! `generate` semantics (transformers 5.x `GenerationMixin._sample` for
//! greedy and `_beam_search` for beams), so that token ids match the
//! reference exactly.

mod beam;
mod greedy;
pub(crate) mod processors;

use crate::error::{Error, Result};
use crate::model::backend::Backend;
use crate::model::generation::GenerationConfig;
use crate::model::marian::MarianModel;

/// One generated translation of a source.
#[derive(Clone, Debug, PartialEq)]
pub struct Hypothesis {
    /// Generated ids: without the decoder start token, with the EOS id when
    /// one was generated (absent when the sequence stopped at max_length).
    pub ids: Vec<u32>,
    /// Beam search: Hugging Face's `sequences_scores`, the sum of the
    /// processed log-probabilities divided by `generated_len^length_penalty`.
    /// Greedy: the sum of the model's log-probabilities of the generated
    /// tokens (no length penalty).
    pub score: f32,
}

impl<B: Backend> MarianModel<B> {
    /// Translates a batch of sources: ids including the trailing EOS (the
    /// tokenizer appends it), batched internally with right padding. Returns,
    /// per source in input order, the n-best list of
    /// `gen.num_return_sequences` hypotheses, best first.
    ///
    /// Greedy when `gen.num_beams == 1`, beam search otherwise. A source's
    /// result does not depend on the other sources of the batch.
    ///
    /// Errors: [`Error::InvalidArgument`] for an empty source, a source longer
    /// than `max_position_embeddings`, an id past the vocabulary, a beam
    /// width the vocabulary cannot fill, or invalid settings (see
    /// [`GenerationConfig::validate`]).
    /// An empty `sources` gives `Ok(vec![])`.
    pub fn generate(
        &self,
        sources: &[Vec<u32>],
        gen: &GenerationConfig,
    ) -> Result<Vec<Vec<Hypothesis>>> {
        if sources.is_empty() {
            return Ok(Vec::new());
        }
        let vocab = self.config.target_vocab_size();
        gen.validate(vocab)?;
        let src_vocab = self.config.vocab_size;
        for (i, s) in sources.iter().enumerate() {
            if s.is_empty() {
                return Err(Error::invalid(
                    "generate",
                    format!("source {i} is empty (it needs at least the EOS token)"),
                ));
            }
            if let Some(&id) = s.iter().find(|&&id| id as usize >= src_vocab) {
                return Err(Error::invalid(
                    "generate",
                    format!("source {i}: token id {id} >= vocab_size {src_vocab}"),
                ));
            }
        }
        // Beam search keeps max(2, 1 + n_eos) · num_beams candidates per step
        // (Hugging Face's top-k would fail on a smaller vocabulary).
        let keep = (1 + gen.eos_token_id.len()).max(2) * gen.num_beams;
        if gen.num_beams > 1 && keep > gen.num_beams * vocab {
            return Err(Error::invalid(
                "generate",
                format!("num_beams {} needs {keep} candidates per step but the vocabulary has {vocab} tokens", gen.num_beams),
            ));
        }
        let enc = self.encode(sources)?;
        // Room for every decoder input up front when it is small; the cache
        // doubles if a long generation needs more.
        let cap = gen.effective_max_length().min(2 * enc.src_len + 16);
        if gen.num_beams == 1 {
            greedy::greedy(self, &enc, gen, cap)
        } else {
            beam::beam_search(self, &enc, gen, cap)
        }
    }
}

/// Index of the first maximum (as `torch.argmax`); 0 for an empty or all-`-inf` row.
pub(crate) fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}
