//! Search over the decoder's per-step scores, on the host, with Hugging Face
//! `generate` semantics (transformers 5.x `GenerationMixin._sample` for
//! greedy and `_beam_search` for beams), so that token ids match the
//! reference exactly.
//!
//! Each step downloads only the `[rows, k]` best ids and log-probabilities
//! of the backend's logits step ([`Backend::log_softmax_topk`]), never the
//! `[rows, vocab]` block: the logits processors are masks handed to that
//! step, and greedy (k = 1) and beam search (k = the candidates Hugging
//! Face keeps per step) need nothing else.

mod beam;
mod greedy;
pub(crate) mod processors;

use crate::error::{Error, Result};
use crate::model::backend::{Backend, TopK};
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
    /// than `max_position_embeddings`, an effective max_length whose decoder
    /// positions (`max_length - 1`) exceed `max_position_embeddings`, a NaN
    /// decoder score, an id past the vocabulary, a beam
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
        // Decoder inputs sit at positions 0 ..= max_length - 2 (the last
        // generated token is never fed back). Hugging Face cannot embed
        // positions past the table either; failing up front is clearer than
        // failing (or, worse, silently running past it) mid-generation.
        let max_pos = self.config.max_position_embeddings;
        let max_len = gen.effective_max_length();
        if max_len - 1 > max_pos {
            return Err(Error::invalid(
                "generate",
                format!(
                    "max_length {max_len} needs {} decoder positions but the model's \
                     max_position_embeddings is {max_pos}; lower max_length / max_new_tokens",
                    max_len - 1
                ),
            ));
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

/// Fails when a decoder score holds a NaN: NaN logits come from weights
/// or activations that overflowed, and picking a token anyway (NaN compares
/// false, so an argmax would be token 0, EOS for opus-mt) would turn the
/// fault into a silently empty translation. The backend's logits step makes
/// every log-probability of a row NaN when any of its logits is NaN, so the
/// row's top-k suffices.
///
/// `ids` and `scores` are one row of a [`crate::model::TopK`] (`[k]` each);
/// `step` is the generated position (0-based), `row` the decoder row.
/// Errors: [`Error::InvalidArgument`] naming the first NaN entry's token.
pub(crate) fn check_scores(ids: &[u32], scores: &[f32], step: usize, row: usize) -> Result<()> {
    match scores.iter().position(|v| v.is_nan()) {
        None => Ok(()),
        Some(i) => {
            let token = ids.get(i).copied().unwrap_or(i as u32);
            Err(Error::invalid(
                "generate",
                format!(
                    "the decoder produced a NaN score (token {token}, decoder row {row}, step {step}): \
                     the model's activations overflowed or the weights are corrupt \
                     (with f16 storage values past 65504 overflow: bf16 or f32 keep them)"
                ),
            ))
        }
    }
}

/// Row `r` of `top` as `(ids, log_probs)`, `[k]` each.
///
/// Errors: [`Error::Shape`] if the backend returned fewer rows or entries
/// than asked (a backend bug; never a panic).
pub(crate) fn top_row(top: &TopK, r: usize, k: usize) -> Result<(&[u32], &[f32])> {
    let (ids, lps) = (top.row_ids(r), top.row_log_probs(r));
    if top.k != k || ids.len() != k || lps.len() != k {
        return Err(Error::shape(
            "log_softmax_topk",
            format!("row {r} of [rows, {k}]"),
            format!(
                "[{}, {}] ({} ids, {} log-probs)",
                top.rows,
                top.k,
                top.ids.len(),
                top.log_probs.len()
            ),
        ));
    }
    Ok((ids, lps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nan_score_is_an_error_naming_its_token_instead_of_picking_eos() {
        for (ids, row) in [
            ([7, 3, 0], [f32::NAN; 3]),
            ([4, 2, 9], [0.0, f32::NAN, -1.0]),
        ] {
            match check_scores(&ids, &row, 3, 2) {
                Err(Error::InvalidArgument { op, msg }) => {
                    assert_eq!(op, "generate");
                    assert!(msg.contains("NaN") && msg.contains("step 3"), "{msg}");
                    let token = ids[row.iter().position(|v| v.is_nan()).unwrap()];
                    assert!(msg.contains(&format!("token {token},")), "{msg}");
                }
                other => panic!("expected a NaN error, got {other:?}"),
            }
        }
        check_scores(&[1, 2], &[f32::NEG_INFINITY, -0.5], 0, 0).unwrap();
    }

    #[test]
    fn a_short_top_k_row_is_an_error_not_a_panic() {
        let top = TopK {
            rows: 1,
            k: 2,
            ids: vec![1, 2],
            log_probs: vec![-1.0, -2.0],
        };
        assert!(top_row(&top, 0, 2).is_ok());
        assert!(top_row(&top, 1, 2).is_err());
        assert!(top_row(&top, 0, 3).is_err());
    }
}
