//! Beam search with Hugging Face transformers 5.x `_beam_search` semantics
//! (`generation/utils.py`: `_get_top_k_continuations`,
//! `_get_running_beams_for_next_iteration`, `_update_finished_beams`,
//! `_check_early_stop_heuristic`), per source:
//!
//! 1. scores = log_softmax(logits) over the full vocabulary, then the logits
//!    processors, plus each beam's running score (f32); beams 1.. start at -1e9.
//! 2. The top `K = max(2, 1 + n_eos) · num_beams` of `num_beams · vocab`
//!    (ties: the lower flat index `beam · vocab + token`).
//! 3. A candidate hits a stopping criterion if its token is EOS or the
//!    sequence reaches max_length. The best `num_beams` candidates that did
//!    not hit one (others get -1e9 added) continue.
//! 4. Candidates among the first `num_beams` of the top K that hit one are
//!    finished with score `sum_logprobs / generated_len^length_penalty`,
//!    unless the source is already done (all beams finished with
//!    early_stopping=True, or the heuristic said no improvement is possible);
//!    the best `num_beams` finished hypotheses are kept.
//! 5. The heuristic: the best running score at the current generated length
//!    (max_length - 1 for early_stopping="never" with length_penalty > 0)
//!    cannot beat the worst finished score once all beams are finished.
//!
//! A source stops when the heuristic is satisfied, when all its beams are
//! finished and early_stopping=True, or at max_length; stopped sources leave
//! the batch (in Hugging Face they keep running with frozen results, so the
//! outcome is the same). The self-attention KV cache is reordered by the
//! surviving beams' parent rows each step. The first step runs one row per
//! source (all its beams are equal there) and its top-k stands for every
//! beam; the first reorder expands the state to the beams.
//!
//! Step 2 without the `[rows, vocab]` block: the backend's logits step
//! returns each row's best `min(K, vocab)` tokens by masked raw logit with
//! their log-probabilities (masked: `-inf`); the running score is added on
//! the host and the candidates of a source's beams are merged by (score
//! descending, flat index ascending). A candidate in the flat top K is among
//! its row's top K, so the merge sees what Hugging Face's `topk` sees. At
//! the forced-EOS step the processed score of each forced id is 0 (not its
//! log-probability) plus the running score, `-inf` elsewhere; such a row's
//! candidates are the forced ids, then the lowest other ids at `-inf`, in
//! id order (the flat order of Hugging Face's ties).
//!
//! The one theoretical difference: within a row, `log_prob + running_score`
//! in f32 (or `x - lse` itself) can round two different raw logits to the
//! same score. If such a tie falls exactly at the row's K-th entry,
//! Hugging Face breaks it by the lower id, possibly with an entry this
//! search did not fetch (it ranks the row by raw logit). That needs a
//! rounding coincidence at the boundary and has never been observed.

use crate::error::Result;
use crate::model::backend::{Backend, TokenMask, TopK};
use crate::model::encoder::EncoderOutput;
use crate::model::generation::{EarlyStopping, GenerationConfig};
use crate::model::marian::MarianModel;
use crate::model::search::processors::Processors;
use crate::model::search::{check_scores, top_row, Hypothesis};

/// Hugging Face's "very large negative" score for unusable beams.
const NEG_LARGE: f32 = -1.0e9;

/// One finished-hypothesis slot (`sequences` / `beam_scores` / `is_sent_finished`).
#[derive(Clone)]
struct Slot {
    score: f32,
    ids: Vec<u32>,
    finished: bool,
}

/// The beam state of one source.
struct Item {
    /// Running sequences (start token included), `num_beams` of them.
    running: Vec<Vec<u32>>,
    running_scores: Vec<f32>,
    slots: Vec<Slot>,
    heuristic_unsatisfied: bool,
}

/// A top-K candidate: accumulated score, parent beam, token.
#[derive(Clone, Copy)]
struct Cand {
    score: f32,
    beam: usize,
    token: u32,
}

/// `(len as f64)^lp` as the f32 divisor Hugging Face's tensor ops use.
fn len_penalty(len: usize, lp: f32) -> f32 {
    (len as f64).powf(f64::from(lp)) as f32
}

/// Sorts candidates best first: score descending (`total_cmp`), then the
/// lower flat index `beam · vocab + token` (Hugging Face's `topk` order).
fn sort_candidates(cands: &mut [Cand]) {
    cands.sort_by(|x, y| {
        y.score
            .total_cmp(&x.score)
            .then_with(|| (x.beam, x.token).cmp(&(y.beam, y.token)))
    });
}

/// Appends the candidates of a forced-EOS row: each forced id (sorted)
/// with processed score `0 + running`, then the lowest other ids with
/// `-inf`, `per_row` in all (Hugging Face: every score `-inf` but the
/// forced ids' 0, plus the running score).
fn forced_candidates(
    forced: &[u32],
    vocab: usize,
    per_row: usize,
    running: f32,
    beam: usize,
    out: &mut Vec<Cand>,
) {
    let start = out.len();
    for &token in forced.iter().take(per_row) {
        out.push(Cand {
            score: 0.0 + running,
            beam,
            token,
        });
    }
    let mut token = 0u32;
    while out.len() - start < per_row && (token as usize) < vocab {
        if !forced.contains(&token) {
            out.push(Cand {
                score: f32::NEG_INFINITY,
                beam,
                token,
            });
        }
        token += 1;
    }
}

/// Each row of `top` repeated `times` times, in place of `times` rows
/// (row `r` becomes rows `r·times .. (r+1)·times`).
fn repeat_rows(top: &TopK, times: usize) -> TopK {
    let mut out = TopK {
        rows: top.rows * times,
        k: top.k,
        ids: Vec::with_capacity(top.ids.len() * times),
        log_probs: Vec::with_capacity(top.log_probs.len() * times),
    };
    for r in 0..top.rows {
        for _ in 0..times {
            out.ids.extend_from_slice(top.row_ids(r));
            out.log_probs.extend_from_slice(top.row_log_probs(r));
        }
    }
    out
}

/// The search's mask rows for every running beam of the `active` sources.
fn fill_every_beam(proc: &Processors, mask: &mut TokenMask, active: &[usize], items: &[Item]) {
    proc.fill_rows(
        mask,
        active
            .iter()
            .flat_map(|&i| items[i].running.iter().map(Vec::as_slice)),
    );
}

pub(crate) fn beam_search<B: Backend>(
    model: &MarianModel<B>,
    enc: &EncoderOutput<B>,
    gen: &GenerationConfig,
    cap: usize,
) -> Result<Vec<Vec<Hypothesis>>> {
    let n = enc.lengths.len();
    let k = gen.num_beams;
    let vocab = model.config.target_vocab_size();
    let proc = Processors::new(gen);
    let mut mask = proc.token_mask();
    let max_length = proc.max_length();
    let lp = gen.length_penalty;
    let start = gen.decoder_start_token_id;
    let keep_k = (1 + gen.eos_token_id.len()).max(2) * k;
    // A row can give at most its whole vocabulary to the flat top K.
    let per_row = keep_k.min(vocab);

    let mut items: Vec<Item> = (0..n)
        .map(|_| Item {
            running: vec![vec![start]; k],
            running_scores: (0..k)
                .map(|j| if j == 0 { 0.0 } else { NEG_LARGE })
                .collect(),
            slots: vec![
                Slot {
                    score: NEG_LARGE,
                    ids: Vec::new(),
                    finished: false
                };
                k
            ],
            heuristic_unsatisfied: true,
        })
        .collect();
    let mut active: Vec<usize> = (0..n).collect();
    // The first step runs one row per source: every beam of a source has
    // the same input (the start token), cache (empty) and mask, hence the
    // same logits, so that row's top-k stands for all its beams, and the
    // state is expanded to the beams by the first reorder.
    let mut state = model.start_decoder(enc, &(0..n).collect::<Vec<_>>(), cap)?;
    let mut ids = vec![start; n];
    let mut cur_len = 1usize; // sequence length including the start token
    let mut cands: Vec<Cand> = Vec::with_capacity(k * per_row);

    while !active.is_empty() {
        let first = cur_len == 1;
        let logits = model.decode_step(&mut state, &ids, 1)?;
        let top = if first {
            proc.fill_rows(
                &mut mask,
                active.iter().map(|&i| items[i].running[0].as_slice()),
            );
            let one = model.backend.log_softmax_topk(&logits, &mask, per_row)?;
            // The candidates below read the mask of every beam's row.
            fill_every_beam(&proc, &mut mask, &active, &items);
            repeat_rows(&one, k)
        } else {
            fill_every_beam(&proc, &mut mask, &active, &items);
            model.backend.log_softmax_topk(&logits, &mask, per_row)?
        };
        let mut next_active = Vec::with_capacity(active.len());
        let mut parent_rows = Vec::with_capacity(active.len() * k);
        for (a, &item_idx) in active.iter().enumerate() {
            let item = &mut items[item_idx];
            // The candidates sort by total_cmp, where NaN is the largest
            // value: a NaN must fail here, not become the best candidate.
            // (A NaN logit makes its whole row's log-probabilities NaN.)
            for r in a * k..(a + 1) * k {
                let (row_ids, row_lps) = top_row(&top, r, per_row)?;
                check_scores(row_ids, row_lps, cur_len - 1, r)?;
            }
            cands.clear();
            for (j, &rs) in item.running_scores.iter().enumerate() {
                let r = a * k + j;
                match mask.row_only(r) {
                    Some(forced) => forced_candidates(forced, vocab, per_row, rs, j, &mut cands),
                    None => {
                        let (row_ids, row_lps) = top_row(&top, r, per_row)?;
                        cands.extend(row_ids.iter().zip(row_lps).map(|(&token, &lp)| Cand {
                            score: lp + rs,
                            beam: j,
                            token,
                        }));
                    }
                }
            }
            sort_candidates(&mut cands);
            cands.truncate(keep_k);
            let hits: Vec<bool> = cands
                .iter()
                .map(|c| proc.is_eos(c.token) || cur_len + 1 >= max_length)
                .collect();

            // Finished hypotheses (uses the heuristic flag of the previous step).
            let all_finished = item.slots.iter().all(|s| s.finished);
            let frozen = (all_finished && gen.early_stopping == EarlyStopping::WhenFull)
                || !item.heuristic_unsatisfied;
            if !frozen {
                let denom = len_penalty(cur_len, lp); // generated length incl. the new token
                let mut merged = item.slots.clone();
                for (c, _) in cands.iter().zip(&hits).take(k).filter(|(_, &h)| h) {
                    let mut seq = item.running[c.beam].clone();
                    seq.push(c.token);
                    merged.push(Slot {
                        score: c.score / denom,
                        ids: seq,
                        finished: true,
                    });
                }
                // Stable: ties keep existing slots, then candidates in top-K order.
                merged.sort_by(|x, y| y.score.total_cmp(&x.score));
                merged.truncate(k);
                item.slots = merged;
            }

            // Running beams for the next step.
            let mut ranked: Vec<(f32, usize)> = cands
                .iter()
                .zip(&hits)
                .enumerate()
                .map(|(j, (c, &h))| (if h { c.score + NEG_LARGE } else { c.score }, j))
                .collect();
            ranked.sort_by(|x, y| y.0.total_cmp(&x.0));
            ranked.truncate(k);
            let new_running: Vec<Vec<u32>> = ranked
                .iter()
                .map(|&(_, j)| {
                    let mut s = item.running[cands[j].beam].clone();
                    s.push(cands[j].token);
                    s
                })
                .collect();
            item.running_scores = ranked.iter().map(|&(s, _)| s).collect();
            let parents: Vec<usize> = ranked.iter().map(|&(_, j)| a * k + cands[j].beam).collect();
            item.running = new_running;

            // Heuristic with the new length.
            let gen_len = if gen.early_stopping == EarlyStopping::Never && lp > 0.0 {
                max_length - 1
            } else {
                cur_len
            };
            let best_running = item.running_scores[0] / len_penalty(gen_len, lp);
            let min_slot = item
                .slots
                .iter()
                .map(|s| s.score)
                .fold(f32::INFINITY, f32::min);
            let can_improve = item
                .slots
                .iter()
                .any(|s| best_running > if s.finished { min_slot } else { NEG_LARGE });
            item.heuristic_unsatisfied &= can_improve;

            let all_finished = item.slots.iter().all(|s| s.finished);
            let done = !item.heuristic_unsatisfied
                || (all_finished && gen.early_stopping == EarlyStopping::WhenFull)
                || hits.iter().all(|&h| h);
            if !done {
                next_active.push(item_idx);
                parent_rows.extend(parents);
            }
        }
        cur_len += 1;
        active = next_active;
        if active.is_empty() {
            break;
        }
        if first {
            // Parent row a·k + beam of source a is the state's row a.
            for p in parent_rows.iter_mut() {
                *p /= k;
            }
        }
        model.reorder_rows(&mut state, &parent_rows)?;
        ids = active
            .iter()
            .flat_map(|&i| items[i].running.iter().map(|s| *s.last().unwrap_or(&start)))
            .collect();
    }

    Ok(items
        .into_iter()
        .map(|item| {
            item.slots
                .into_iter()
                .take(gen.num_return_sequences)
                .map(|s| Hypothesis {
                    ids: s.ids.get(1..).map(<[u32]>::to_vec).unwrap_or_default(),
                    score: s.score,
                })
                .collect()
        })
        .collect())
}
