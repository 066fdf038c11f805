//! Reference of one decoder step's logits processing, the oracle of
//! `kernels/logits.cu`:
//!
//! - `score[v] = logits[v] + final_logits_bias[v]` (f32 add, as the kernel;
//!   CASES.md D1), `score[pad_id] = -inf` (Marian never generates pad);
//! - `log_probs[v] = score[v] - lse`, `lse = max + ln Σ exp(score - max)`
//!   (PyTorch `log_softmax`); a row of only -inf gives -inf everywhere;
//! - the k best scores per row, best first, equal scores by lower id.
//!
//! The sum of exponentials is accumulated in f64 so that the oracle stays
//! more accurate than the f32 kernel it judges at vocabulary sizes like
//! 58101 (an f32 running sum there can be off by n·ε ≈ 3.5e-3 relative
//! in the worst case; `cpu::softmax` sums in f32 and serves the model).

use crate::error::{fmt_shape, Error, Result};

/// The output of [`logits_step`] for `rows` rows.
#[derive(Clone, Debug, PartialEq)]
pub struct LogitsStep {
    /// `[rows, vocab]` log-probabilities (f32).
    pub log_probs: Vec<f32>,
    /// `[rows, k]` ids of the k best scores per row, best first.
    pub topk_ids: Vec<u32>,
    /// `[rows, k]` log-probabilities of `topk_ids`.
    pub topk_log_probs: Vec<f32>,
}

/// Scores of one row: `logits + bias` with the pad column at -inf.
pub fn scores(row: &[f32], bias: Option<&[f32]>, pad_id: Option<usize>) -> Vec<f32> {
    let mut s: Vec<f32> = match bias {
        Some(b) => row.iter().zip(b).map(|(x, b)| x + b).collect(),
        None => row.to_vec(),
    };
    if let Some(slot) = pad_id.and_then(|p| s.get_mut(p)) {
        *slot = f32::NEG_INFINITY;
    }
    s
}

/// `max + ln Σ exp(x - max)` of a row, accumulated in f64; -inf for a row
/// of only -inf (or an empty row).
pub fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return f32::NEG_INFINITY;
    }
    let sum: f64 = row
        .iter()
        .map(|&x| (f64::from(x) - f64::from(max)).exp())
        .sum();
    (f64::from(max) + sum.ln()) as f32
}

/// Ids of the `k` largest values of `row`, best first; equal values are
/// ordered by lower id (what `logits.cu` does). NaN values are never chosen
/// ahead of a number. `k` is clamped to `row.len()`.
pub fn top_k(row: &[f32], k: usize) -> Vec<u32> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| {
        let (va, vb) = (row[a], row[b]);
        // Descending by value (NaN last), then ascending by id.
        match vb.partial_cmp(&va) {
            Some(o) if o != std::cmp::Ordering::Equal => o,
            Some(_) => a.cmp(&b),
            None => va.is_nan().cmp(&vb.is_nan()).then(a.cmp(&b)),
        }
    });
    idx.into_iter().take(k).map(|i| i as u32).collect()
}

/// The whole step for `[rows, vocab]` logits.
///
/// - `logits`: `[rows, vocab]` f32 (widened from the storage dtype);
/// - `bias`: `[vocab]` `final_logits_bias`, or `None`;
/// - `pad_id`: the masked column (`pad_token_id`), or `None`;
/// - `k`: tokens per row, `1..=vocab`.
///
/// Errors: [`Error::Shape`] when lengths do not match; [`Error::InvalidArgument`]
/// for `vocab == 0`, `k` outside `1..=vocab` or `pad_id >= vocab`.
pub fn logits_step(
    logits: &[f32],
    rows: usize,
    vocab: usize,
    bias: Option<&[f32]>,
    pad_id: Option<usize>,
    k: usize,
) -> Result<LogitsStep> {
    const OP: &str = "logits";
    if vocab == 0 || k == 0 || k > vocab {
        return Err(Error::invalid(
            OP,
            format!("vocab {vocab} must be >= 1 and k {k} in 1..=vocab"),
        ));
    }
    if rows.checked_mul(vocab) != Some(logits.len()) {
        return Err(Error::shape(
            OP,
            format!("logits {}", fmt_shape(&[rows, vocab])),
            format!("{} elements", logits.len()),
        ));
    }
    if let Some(b) = bias {
        if b.len() != vocab {
            return Err(Error::shape(
                OP,
                format!("final_logits_bias [{vocab}]"),
                format!("final_logits_bias [{}]", b.len()),
            ));
        }
    }
    if let Some(p) = pad_id.filter(|&p| p >= vocab) {
        return Err(Error::invalid(OP, format!("pad_id {p} >= vocab {vocab}")));
    }
    let mut out = LogitsStep {
        log_probs: Vec::with_capacity(logits.len()),
        topk_ids: Vec::with_capacity(rows * k),
        topk_log_probs: Vec::with_capacity(rows * k),
    };
    for row in logits.chunks_exact(vocab) {
        let s = scores(row, bias, pad_id);
        let lse = log_sum_exp(&s);
        let lp: Vec<f32> = s
            .iter()
            .map(|&x| {
                if lse == f32::NEG_INFINITY {
                    f32::NEG_INFINITY
                } else {
                    x - lse
                }
            })
            .collect();
        for id in top_k(&s, k) {
            out.topk_ids.push(id);
            out.topk_log_probs.push(lp[id as usize]);
        }
        out.log_probs.extend_from_slice(&lp);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bias_is_added_and_pad_masked() {
        // D1: a non-zero bias changes the argmax.
        let logits = [1.0f32, 2.0, 0.0, 1.5];
        let bias = [0.0f32, 0.0, 3.0, 0.0];
        let r = logits_step(&logits, 1, 4, Some(&bias), Some(1), 2).unwrap();
        assert_eq!(r.topk_ids, vec![2, 3]);
        assert_eq!(r.log_probs[1], f32::NEG_INFINITY);
        let total: f64 = r.log_probs.iter().map(|&l| f64::from(l).exp()).sum::<f64>();
        assert!((total - 1.0).abs() < 1e-6, "probabilities sum to {total}");
    }

    #[test]
    fn ties_go_to_the_lower_id_and_all_masked_row_is_neg_inf() {
        assert_eq!(top_k(&[1.0, 3.0, 3.0, 2.0], 3), vec![1, 2, 3]);
        let r = logits_step(&[f32::NEG_INFINITY; 3], 1, 3, None, None, 1).unwrap();
        assert!(r.log_probs.iter().all(|&l| l == f32::NEG_INFINITY));
        assert_eq!(r.topk_ids, vec![0]);
    }

    #[test]
    fn k_out_of_range_is_an_error() {
        assert!(logits_step(&[0.0; 4], 1, 4, None, None, 5).is_err());
        assert!(logits_step(&[0.0; 4], 1, 4, None, None, 0).is_err());
        assert!(logits_step(&[0.0; 4], 1, 4, None, Some(4), 1).is_err());
    }
}
