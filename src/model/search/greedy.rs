//! Greedy search (Hugging Face `_sample` with `do_sample=False`): at each
//! step the processed logits' argmax; a row stops at EOS or when the sequence
//! (start token included) reaches max_length. Finished rows leave the batch
//! (their KV-cache rows are dropped), which does not change the others.
//!
//! Each step asks the backend for the top-1 of every row by masked raw logit
//! (Hugging Face's argmax over the processed logits: ties by lower id) and
//! its log-probability; the hypothesis score adds the model's own
//! log-probability of the token (the logits step masks without
//! renormalising, so the returned value is that log-probability). At the
//! forced-EOS step Hugging Face sets every score to `-inf` but the forced
//! ids' (0), so its argmax is the lowest forced id: the step asks for the
//! forced ids alone and takes the lowest, adding its real log-probability.

use crate::error::Result;
use crate::model::backend::Backend;
use crate::model::encoder::EncoderOutput;
use crate::model::generation::GenerationConfig;
use crate::model::marian::MarianModel;
use crate::model::search::processors::Processors;
use crate::model::search::{check_scores, top_row, Hypothesis};

pub(crate) fn greedy<B: Backend>(
    model: &MarianModel<B>,
    enc: &EncoderOutput<B>,
    gen: &GenerationConfig,
    cap: usize,
) -> Result<Vec<Vec<Hypothesis>>> {
    let n = enc.lengths.len();
    let proc = Processors::new(gen);
    let mut mask = proc.token_mask();
    let start = gen.decoder_start_token_id;
    // seqs include the start token, as Hugging Face's input_ids.
    let mut seqs: Vec<Vec<u32>> = vec![vec![start]; n];
    let mut scores = vec![0.0f32; n];
    let mut active: Vec<usize> = (0..n).collect();
    let mut state = model.start_decoder(enc, &active, cap)?;
    let mut ids = vec![start; n];
    while !active.is_empty() {
        let logits = model.decode_step(&mut state, &ids, 1)?;
        proc.fill_rows(&mut mask, active.iter().map(|&i| seqs[i].as_slice()));
        // One entry per row, or every forced id at the forced-EOS step.
        let k = mask
            .only
            .iter()
            .flatten()
            .map(Vec::len)
            .max()
            .unwrap_or(1)
            .max(1);
        let top = model.backend.log_softmax_topk(&logits, &mask, k)?;
        let mut keep = Vec::with_capacity(active.len());
        for (r, &item) in active.iter().enumerate() {
            let step = seqs[item].len() - 1;
            let (row_ids, row_lps) = top_row(&top, r, k)?;
            // A NaN logit anywhere in the row (even at a token the
            // processors mask) makes the row's log-probabilities NaN:
            // fail rather than emit a meaningless result.
            check_scores(row_ids, row_lps, step, r)?;
            let (tok, lp) = match mask.row_only(r).and_then(|only| only.iter().min()) {
                // The forced step: the lowest forced id. It is among the
                // entries unless its logit is -inf (then so is its log-prob).
                Some(&tok) => {
                    let lp = row_ids
                        .iter()
                        .position(|&id| id == tok)
                        .map_or(f32::NEG_INFINITY, |j| row_lps[j]);
                    (tok, lp)
                }
                None => (row_ids[0], row_lps[0]),
            };
            scores[item] += lp;
            seqs[item].push(tok);
            let done = proc.is_eos(tok) || seqs[item].len() >= proc.max_length();
            if !done {
                keep.push(r);
            }
        }
        active = keep.iter().map(|&r| active[r]).collect();
        if active.is_empty() {
            break;
        }
        model.reorder_rows(&mut state, &keep)?;
        ids = active
            .iter()
            .map(|&i| *seqs[i].last().unwrap_or(&start))
            .collect();
    }
    Ok(seqs
        .into_iter()
        .zip(scores)
        .map(|(s, score)| {
            vec![Hypothesis {
                ids: s[1..].to_vec(),
                score,
            }]
        })
        .collect())
}
