//! Hugging Face logits processors used by `generate`, applied per row on the
//! host in Hugging Face's order (`GenerationMixin._get_logits_processor`):
//! `NoBadWordsLogitsProcessor`, `MinLengthLogitsProcessor`,
//! `MinNewTokensLengthLogitsProcessor`, `ForcedEOSTokenLogitsProcessor`;
//! then this crate's pad mask (pad is never generated, DESIGN.md).
//!
//! Sequence lengths count the decoder start token, as `input_ids` does in
//! Hugging Face's encoder-decoder generation.

use crate::model::generation::GenerationConfig;

/// The processors of one `generate` call.
pub(crate) struct Processors {
    single_bad: Vec<u32>,
    multi_bad: Vec<Vec<u32>>,
    eos: Vec<u32>,
    forced_eos: Vec<u32>,
    min_length: usize,
    min_new_tokens: usize,
    max_length: usize,
    pad: Option<u32>,
}

impl Processors {
    pub(crate) fn new(gen: &GenerationConfig) -> Self {
        // NoBadWordsLogitsProcessor drops the sequences that are exactly one EOS id.
        let bad: Vec<&Vec<u32>> = gen
            .bad_words_ids
            .iter()
            .filter(|w| !(w.len() == 1 && gen.eos_token_id.contains(&w[0])))
            .collect();
        Processors {
            single_bad: bad.iter().filter(|w| w.len() == 1).map(|w| w[0]).collect(),
            multi_bad: bad
                .iter()
                .filter(|w| w.len() > 1)
                .map(|w| (*w).clone())
                .collect(),
            eos: gen.eos_token_id.clone(),
            forced_eos: gen.forced_eos_token_id.clone(),
            min_length: gen.min_length,
            min_new_tokens: gen.min_new_tokens.unwrap_or(0),
            max_length: gen.effective_max_length(),
            pad: (!gen.eos_token_id.contains(&gen.pad_token_id)).then_some(gen.pad_token_id),
        }
    }

    /// Applies every processor to `scores` (`[vocab]`, logits or log-probs)
    /// of a row whose sequence so far (start token included) is `seq`.
    pub(crate) fn apply(&self, seq: &[u32], scores: &mut [f32]) {
        let mut mask = |id: u32| {
            if let Some(s) = scores.get_mut(id as usize) {
                *s = f32::NEG_INFINITY;
            }
        };
        for &id in &self.single_bad {
            mask(id);
        }
        for w in &self.multi_bad {
            let (prefix, last) = w.split_at(w.len() - 1);
            if seq.ends_with(prefix) {
                mask(last[0]);
            }
        }
        let generated = seq.len().saturating_sub(1);
        if seq.len() < self.min_length || generated < self.min_new_tokens {
            for &id in &self.eos {
                mask(id);
            }
        }
        if let Some(p) = self.pad {
            mask(p);
        }
        if !self.forced_eos.is_empty() && seq.len() + 1 == self.max_length {
            scores.fill(f32::NEG_INFINITY);
            for &id in &self.forced_eos {
                if let Some(s) = scores.get_mut(id as usize) {
                    *s = 0.0;
                }
            }
        }
    }

    /// True if `id` ends a sequence.
    pub(crate) fn is_eos(&self, id: u32) -> bool {
        self.eos.contains(&id)
    }

    /// The effective max_length (start token included).
    pub(crate) fn max_length(&self) -> usize {
        self.max_length
    }
}
