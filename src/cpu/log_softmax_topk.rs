//! The logits step of the CPU backend ([`crate::model::backend::Backend::log_softmax_topk`]):
//! per row, log-softmax over the full vocabulary in f32, the search's masks
//! (`-inf`, no renormalisation), and the `k` best ids by masked raw logit.
//!
//! The log-softmax is the same f32 arithmetic as
//! [`crate::cpu::softmax::log_softmax_in_place`] (max, then an f32 sum of
//! `exp(x - max)` in id order, then `x - (max + ln sum)`), so the model's
//! scores are bit for bit those of a full-row log-softmax; only the `k`
//! entries that are returned are computed. (`cpu::logits::logits_step` is
//! the f64 oracle of the GPU kernel, not this.)

use crate::error::{Error, Result};
use crate::model::backend::{TokenMask, TopK};

const OP: &str = "log_softmax_topk";

/// The subtrahend of row `row`'s log-softmax, exactly as
/// `log_softmax_in_place` computes it: `Some(max + ln Σ exp(x - max))`, or
/// `None` for a row of only `-inf` (or empty), which that function leaves
/// unchanged. A NaN in the row gives `Some(NaN)` (also when every other
/// entry is `-inf`), and so does a `+inf` entry (`inf - inf`).
pub fn log_softmax_shift(row: &[f32]) -> Option<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return row.iter().any(|v| v.is_nan()).then_some(f32::NAN);
    }
    let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
    Some(max + sum.ln())
}

/// `a` ranks strictly above `b`: NaN above every number (as `torch.topk`),
/// otherwise the larger value.
fn ranks_above(a: f32, b: f32) -> bool {
    if a.is_nan() {
        !b.is_nan()
    } else {
        a > b
    }
}

/// Checks every id of `list` against `vocab`.
fn check_ids(list: &[u32], vocab: usize, what: &str) -> Result<()> {
    match list.iter().find(|&&id| id as usize >= vocab) {
        None => Ok(()),
        Some(id) => Err(Error::invalid(
            OP,
            format!("{what}: token id {id} >= vocab {vocab}"),
        )),
    }
}

/// Checks a [`TokenMask`] for `rows` rows of `vocab` ids (every backend's
/// `log_softmax_topk` runs it first).
///
/// Errors: [`Error::Shape`] if `mask.per_row` / `mask.only` are neither
/// empty nor `[rows]`; [`Error::InvalidArgument`] for an id `>= vocab`.
pub fn check_mask(mask: &TokenMask, rows: usize, vocab: usize) -> Result<()> {
    for (what, n) in [("per_row", mask.per_row.len()), ("only", mask.only.len())] {
        if n != 0 && n != rows {
            return Err(Error::shape(
                OP,
                format!("mask.{what} [0] or [{rows}]"),
                format!("mask.{what} [{n}]"),
            ));
        }
    }
    check_ids(&mask.every_row, vocab, "mask.every_row")?;
    for list in &mask.per_row {
        check_ids(list, vocab, "mask.per_row")?;
    }
    for list in mask.only.iter().flatten() {
        check_ids(list, vocab, "mask.only")?;
    }
    Ok(())
}

/// The logits step over `logits` `[rows, vocab]` (f32, row-major): see
/// [`crate::model::backend::Backend::log_softmax_topk`] for the semantics
/// (log-softmax of the unmasked row, masked ids at `-inf`, ranking by the
/// masked raw logit with ties and the `-inf` tail by lower id, a NaN or
/// `+inf` logit making the row's log-probabilities NaN).
///
/// Returns [`TopK`] with `[rows, k]` ids and log-probabilities.
///
/// Errors: [`Error::InvalidArgument`] for `vocab == 0`, `k` outside
/// `1..=vocab` or a mask id `>= vocab`; [`Error::Shape`] if
/// `logits.len() != rows * vocab` or `mask.per_row` / `mask.only` are
/// neither empty nor `[rows]`.
pub fn log_softmax_topk(
    logits: &[f32],
    rows: usize,
    vocab: usize,
    mask: &TokenMask,
    k: usize,
) -> Result<TopK> {
    crate::cpu::logits::check_rows_vocab_k(OP, logits.len(), rows, vocab, k)?;
    check_mask(mask, rows, vocab)?;

    let mut out = TopK {
        rows,
        k,
        ids: Vec::with_capacity(rows * k),
        log_probs: Vec::with_capacity(rows * k),
    };
    // Reused across rows: the row's sorted mask list and its best entries.
    let mut list: Vec<u32> = Vec::new();
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    for (r, row) in logits.chunks_exact(vocab).enumerate() {
        let shift = log_softmax_shift(row);
        let row_nan = shift.is_some_and(f32::is_nan);
        // `list` holds the masked ids, or (inverted) the only ids kept.
        list.clear();
        let inverted = match mask.row_only(r) {
            Some(only) => {
                list.extend_from_slice(only);
                true
            }
            None => {
                list.extend_from_slice(&mask.every_row);
                list.extend_from_slice(mask.row_masked(r));
                false
            }
        };
        list.sort_unstable();
        list.dedup();

        best.clear();
        let mut next = list.iter().copied().peekable();
        for (id, &x) in row.iter().enumerate() {
            let id = id as u32;
            let member = next.next_if_eq(&id).is_some();
            let key = if member != inverted {
                f32::NEG_INFINITY
            } else {
                x
            };
            if best.len() == k && best.last().is_some_and(|&(w, _)| !ranks_above(key, w)) {
                continue;
            }
            // After every entry that ranks at least as high: ties keep id order.
            let pos = best.partition_point(|&(b, _)| !ranks_above(key, b));
            best.insert(pos, (key, id));
            best.truncate(k);
        }
        for &(key, id) in &best {
            out.ids.push(id);
            let lp = if row_nan {
                f32::NAN
            } else if key == f32::NEG_INFINITY {
                f32::NEG_INFINITY
            } else {
                shift.map_or(key, |s| key - s)
            };
            out.log_probs.push(lp);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::softmax::log_softmax_in_place;

    fn mask() -> TokenMask {
        TokenMask::default()
    }

    #[test]
    fn log_probs_are_bit_identical_to_log_softmax_in_place() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32 * 40.0 - 20.0
        };
        for vocab in [1, 2, 7, 100, 5000] {
            let row: Vec<f32> = (0..vocab).map(|_| rand()).collect();
            let mut full = row.clone();
            log_softmax_in_place(&mut full);
            let t = log_softmax_topk(&row, 1, vocab, &mask(), vocab).unwrap();
            for (&id, &lp) in t.ids.iter().zip(&t.log_probs) {
                assert_eq!(
                    lp.to_bits(),
                    full[id as usize].to_bits(),
                    "vocab {vocab} id {id}"
                );
            }
        }
    }

    #[test]
    fn ranks_by_raw_logit_ties_by_lower_id_and_masks_without_renormalising() {
        let row = [1.0, 3.0, 3.0, 2.0, 5.0];
        let mut full = row.to_vec();
        log_softmax_in_place(&mut full);
        let m = TokenMask::new(vec![4]);
        let t = log_softmax_topk(&row, 1, 5, &m, 5).unwrap();
        assert_eq!(t.ids, [1, 2, 3, 0, 4]);
        assert_eq!(t.log_probs[..4], [full[1], full[2], full[3], full[0]]);
        assert_eq!(t.log_probs[4], f32::NEG_INFINITY);
    }

    #[test]
    fn per_row_masks_and_only_lists() {
        let logits = [0.0, 1.0, 2.0, 3.0, /* row 1 */ 3.0, 2.0, 1.0, 0.0];
        let m = TokenMask {
            every_row: vec![3],
            per_row: vec![vec![2], vec![]],
            only: vec![None, Some(vec![3, 2])],
        };
        let t = log_softmax_topk(&logits, 2, 4, &m, 3).unwrap();
        assert_eq!(t.row_ids(0), [1, 0, 2]);
        assert_eq!(t.row_log_probs(0)[2], f32::NEG_INFINITY);
        // Only 2 and 3 kept (the every_row mask of 3 does not apply), then
        // the -inf tail in id order.
        assert_eq!(t.row_ids(1), [2, 3, 0]);
        let mut full = logits[4..].to_vec();
        log_softmax_in_place(&mut full);
        assert_eq!(t.row_log_probs(1)[..2], [full[2], full[3]]);
        assert_eq!(t.row_log_probs(1)[2], f32::NEG_INFINITY);
    }

    #[test]
    fn a_nan_anywhere_makes_the_row_nan() {
        let inf = f32::NEG_INFINITY;
        for row in [
            [0.0, f32::NAN, 1.0],
            [inf, inf, f32::NAN],
            [0.0, f32::INFINITY, 1.0],
        ] {
            let m = TokenMask::new(vec![1]);
            let t = log_softmax_topk(&row, 1, 3, &m, 2).unwrap();
            assert!(t.log_probs.iter().all(|v| v.is_nan()), "{row:?}: {t:?}");
        }
        // Unmasked NaN ranks first.
        let t = log_softmax_topk(&[0.0, 1.0, f32::NAN], 1, 3, &mask(), 1).unwrap();
        assert_eq!(t.ids, [2]);
    }

    #[test]
    fn all_minus_inf_row_gives_minus_inf_in_id_order() {
        let inf = f32::NEG_INFINITY;
        let t = log_softmax_topk(&[inf; 4], 1, 4, &mask(), 3).unwrap();
        assert_eq!(t.ids, [0, 1, 2]);
        assert!(t.log_probs.iter().all(|&v| v == inf));
    }

    #[test]
    fn bad_arguments_are_errors() {
        let row = [0.0f32; 4];
        assert!(log_softmax_topk(&row, 1, 4, &mask(), 0).is_err());
        assert!(log_softmax_topk(&row, 1, 4, &mask(), 5).is_err());
        assert!(log_softmax_topk(&row, 2, 4, &mask(), 1).is_err());
        assert!(log_softmax_topk(&row, 1, 4, &TokenMask::new(vec![4]), 1).is_err());
        let m = TokenMask {
            per_row: vec![vec![], vec![]],
            ..TokenMask::default()
        };
        assert!(log_softmax_topk(&row, 1, 4, &m, 1).is_err());
    }
}
