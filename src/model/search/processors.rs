//! Hugging Face logits processors used by `generate`, as masks for the
//! backend's logits step ([`TokenMask`], see
//! [`crate::model::Backend::log_softmax_topk`]) instead of edits of a full
//! score row, in Hugging Face's order (`GenerationMixin._get_logits_processor`):
//! `NoBadWordsLogitsProcessor`, `MinLengthLogitsProcessor`,
//! `MinNewTokensLengthLogitsProcessor`, `ForcedEOSTokenLogitsProcessor`;
//! plus this crate's pad mask (pad is never generated, DESIGN.md). Each
//! masks ids to `-inf` without renormalising, except the forced-EOS step,
//! which keeps only the forced ids (Hugging Face sets every score to `-inf`
//! and the forced ids' to 0; the search turns that into scores).
//!
//! Sequence lengths count the decoder start token, as `input_ids` does in
//! Hugging Face's encoder-decoder generation.

use crate::model::backend::TokenMask;
use crate::model::generation::GenerationConfig;

/// The processors of one `generate` call.
pub(crate) struct Processors {
    single_bad: Vec<u32>,
    multi_bad: Vec<Vec<u32>>,
    eos: Vec<u32>,
    /// Sorted, without duplicates.
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
        let mut forced_eos = gen.forced_eos_token_id.clone();
        forced_eos.sort_unstable();
        forced_eos.dedup();
        Processors {
            single_bad: bad.iter().filter(|w| w.len() == 1).map(|w| w[0]).collect(),
            multi_bad: bad
                .iter()
                .filter(|w| w.len() > 1)
                .map(|w| (*w).clone())
                .collect(),
            eos: gen.eos_token_id.clone(),
            forced_eos,
            min_length: gen.min_length,
            min_new_tokens: gen.min_new_tokens.unwrap_or(0),
            max_length: gen.effective_max_length(),
            pad: (!gen.eos_token_id.contains(&gen.pad_token_id)).then_some(gen.pad_token_id),
        }
    }

    /// A mask holding the ids masked at every step in every row (the
    /// single-token bad words and pad) and nothing per row yet; see
    /// [`Processors::fill_rows`].
    pub(crate) fn token_mask(&self) -> TokenMask {
        let mut every_row = self.single_bad.clone();
        every_row.extend(self.pad);
        TokenMask::new(every_row)
    }

    /// Sets the per-row part of `mask` for rows whose sequences so far
    /// (start token included) are `seqs`, in row order: the last token of
    /// each multi-token bad word whose prefix ends the sequence, the EOS ids
    /// while under min_length / min_new_tokens, and the forced ids as the
    /// row's only ids at the forced-EOS step. Reuses `mask`'s allocations.
    pub(crate) fn fill_rows<'s>(
        &self,
        mask: &mut TokenMask,
        seqs: impl Iterator<Item = &'s [u32]>,
    ) {
        let mut rows = 0;
        for (r, seq) in seqs.enumerate() {
            rows = r + 1;
            if mask.per_row.len() < rows {
                mask.per_row.push(Vec::new());
                mask.only.push(None);
            }
            let masked = &mut mask.per_row[r];
            masked.clear();
            for w in &self.multi_bad {
                let (prefix, last) = w.split_at(w.len() - 1);
                if seq.ends_with(prefix) {
                    masked.push(last[0]);
                }
            }
            let generated = seq.len().saturating_sub(1);
            if seq.len() < self.min_length || generated < self.min_new_tokens {
                masked.extend_from_slice(&self.eos);
            }
            mask.only[r] = self.is_forced_step(seq).then(|| self.forced_eos.clone());
        }
        mask.per_row.truncate(rows);
        mask.only.truncate(rows);
    }

    /// True if the row whose sequence is `seq` is at the forced-EOS step
    /// (its next token is the last one max_length allows).
    fn is_forced_step(&self, seq: &[u32]) -> bool {
        !self.forced_eos.is_empty() && seq.len() + 1 == self.max_length
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
