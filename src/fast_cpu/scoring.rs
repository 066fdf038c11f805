//! The logits step of the fast CPU backend: per row, the log-softmax
//! normaliser and the `k` best ids straight from the raw logits, with no
//! copy of the `[rows, vocab]` block.
//!
//! Two vectorised sweeps of each row, which stays in L1 between them. The
//! first finds the maximum, checks for NaN and scans for the top k: a
//! chunk of 16 logits none of which beats the current k-th best is skipped
//! after one vector compare (masking only lowers a logit, so a skipped
//! chunk can hold no winner), and only the few chunks that can hold a
//! winner are ranked one id at a time, with the mask looked up for those
//! ids only. The second sums `exp(x - max)` ([`super::vmath::exp`]).
//!
//! Semantics are [`crate::cpu::log_softmax_topk`]'s (the reference): the
//! same ids in the same order (ranking by the masked raw logit, ties and
//! the `-inf` tail by lower id). The log-probabilities are `x - (max + ln
//! Σ)` with this file's vectorised sum, within a few ulp of the
//! reference's id-order sum. Rows the fast path does not cover (a NaN or
//! `+inf` logit, a row of only `-inf`, a forced-ids row, fewer than `k`
//! unmasked finite logits) go to the reference function, row by row.

use super::isa::multiversion;
use super::vmath::{exp, reduce, LANES};
use crate::cpu::log_softmax_topk::{check_mask, log_softmax_topk as reference};
use std::sync::atomic::{AtomicBool, Ordering};

use super::threads::{SharedOut, Threads};
use crate::error::Result;
use crate::model::backend::{TokenMask, TopK};

multiversion! {
    /// `Σ exp(x - max)` over the row (f32, [`LANES`] partial sums, fixed order).
    fn sum_exp(row: &[f32], max: f32) -> f32 {
        let mut acc = [0.0f32; LANES];
        let (chunks, rest) = row.as_chunks::<LANES>();
        for c in chunks {
            for l in 0..LANES {
                acc[l] += exp(c[l] - max);
            }
        }
        for (l, &v) in rest.iter().enumerate() {
            acc[l] += exp(v - max);
        }
        reduce(acc)
    }
}

multiversion! {
    /// One sweep of the row: its maximum, whether it holds a NaN, and the
    /// top-k scan of the module docs into `best` (sorted best first, at
    /// most `k`; `masked` sorted ids scored `-inf`; meaningless when the
    /// row holds a NaN, which the caller then sends to the reference).
    fn scan(row: &[f32], k: usize, masked: &[u32], best: &mut Vec<(f32, u32)>) -> (f32, bool) {
        let mut mx = [f32::NEG_INFINITY; LANES];
        let mut nan = [false; LANES];
        let (chunks, rest) = row.as_chunks::<LANES>();
        let mut base = 0usize;
        for c in chunks {
            let thr = if best.len() < k { f32::NEG_INFINITY } else { best.last().map_or(f32::NEG_INFINITY, |b| b.0) };
            let mut any = false;
            for l in 0..LANES {
                let v = c[l];
                mx[l] = if v > mx[l] { v } else { mx[l] };
                nan[l] |= v.is_nan();
                any |= v > thr;
            }
            if any || best.len() < k {
                rank(c, base, k, masked, best);
            }
            base += LANES;
        }
        for (l, &v) in rest.iter().enumerate() {
            mx[l] = if v > mx[l] { v } else { mx[l] };
            nan[l] |= v.is_nan();
        }
        rank(rest, base, k, masked, best);
        let max = mx.iter().fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
        (max, nan.iter().any(|&b| b))
    }
}

/// Ranks ids `base..base + c.len()` into `best` one by one (the reference's
/// insertion: after every entry that ranks at least as high, so ties keep
/// id order). No NaN reaches here.
#[inline(always)]
fn rank(c: &[f32], base: usize, k: usize, masked: &[u32], best: &mut Vec<(f32, u32)>) {
    for (j, &x) in c.iter().enumerate() {
        if best.len() == k && best.last().is_some_and(|&(w, _)| x <= w) {
            continue;
        }
        let id = (base + j) as u32;
        let key = if masked.binary_search(&id).is_ok() {
            f32::NEG_INFINITY
        } else {
            x
        };
        if best.len() == k && best.last().is_some_and(|&(w, _)| key <= w) {
            continue;
        }
        let pos = best.partition_point(|&(b, _)| b >= key);
        best.insert(pos, (key, id));
        best.truncate(k);
    }
}

/// Below this many logits per call the rows are scored on one thread.
const PARALLEL_MIN_LOGITS: usize = 1 << 16;

/// The logits step over `logits` `[rows, vocab]`: the semantics and errors
/// of [`crate::cpu::log_softmax_topk::log_softmax_topk`] (see the module
/// docs for the rounding of the log-probabilities). Rows are independent;
/// large calls split them over `threads`.
pub fn log_softmax_topk(
    threads: &Threads,
    logits: &[f32],
    rows: usize,
    vocab: usize,
    mask: &TokenMask,
    k: usize,
) -> Result<TopK> {
    crate::cpu::logits::check_rows_vocab_k("log_softmax_topk", logits.len(), rows, vocab, k)?;
    check_mask(mask, rows, vocab)?;
    let mut ids = vec![0u32; rows * k];
    let mut log_probs = vec![0.0f32; rows * k];
    let (ids_out, lp_out) = (SharedOut::new(&mut ids), SharedOut::new(&mut log_probs));
    let failed = AtomicBool::new(false);
    threads.run(rows, rows * vocab >= PARALLEL_MIN_LOGITS, |r| {
        // SAFETY: row r owns entries r·k .. (r+1)·k of both outputs, which
        // outlive `run`.
        let (ids, lps) = unsafe { (ids_out.slice(r * k, k), lp_out.slice(r * k, k)) };
        let row = &logits[r * vocab..][..vocab];
        if score_row(row, mask, r, k, ids, lps).is_err() {
            failed.store(true, Ordering::Relaxed);
        }
    });
    if failed.load(Ordering::Relaxed) {
        // Unreachable: the mask and k were checked above.
        return Err(crate::Error::invalid(
            "log_softmax_topk",
            "a row failed its checks",
        ));
    }
    Ok(TopK {
        rows,
        k,
        ids,
        log_probs,
    })
}

/// Row `r` into `ids` / `lps` (`[k]` each): the fast path, or the
/// reference for the rare rows of the module docs.
fn score_row(
    row: &[f32],
    mask: &TokenMask,
    r: usize,
    k: usize,
    ids: &mut [u32],
    lps: &mut [f32],
) -> Result<()> {
    if mask.row_only(r).is_none() {
        let mut masked: Vec<u32> =
            Vec::with_capacity(mask.every_row.len() + mask.row_masked(r).len());
        masked.extend_from_slice(&mask.every_row);
        masked.extend_from_slice(mask.row_masked(r));
        masked.sort_unstable();
        masked.dedup();
        let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
        let (max, nan) = scan(row, k, &masked, &mut best);
        if !nan
            && max.is_finite()
            && best.len() == k
            && best.iter().all(|&(key, _)| key.is_finite())
        {
            let shift = max + sum_exp(row, max).ln();
            for ((&(key, id), i), lp) in best.iter().zip(ids.iter_mut()).zip(lps.iter_mut()) {
                *i = id;
                *lp = key - shift;
            }
            return Ok(());
        }
    }
    let one = TokenMask {
        every_row: mask.every_row.clone(),
        per_row: mask
            .per_row
            .get(r)
            .map_or_else(Vec::new, |p| vec![p.clone()]),
        only: mask.only.get(r).map_or_else(Vec::new, |o| vec![o.clone()]),
    };
    let t = reference(row, 1, row.len(), &one, k)?;
    ids.copy_from_slice(&t.ids);
    lps.copy_from_slice(&t.log_probs);
    Ok(())
}
