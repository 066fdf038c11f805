//! Reference of one decoder step's logits processing, the oracle of
//! `kernels/logits.cu`:
//!
//! - `score[v] = logits[v] + final_logits_bias[v]` (f32 add, as the kernel;
//!   CASES.md D1), `score[pad_id] = -inf` (Marian never generates pad);
//! - `log_probs[v] = score[v] - lse`, `lse = max + ln Σ exp(score - max)`
//!   (PyTorch `log_softmax`); a row of only -inf gives -inf everywhere;
//! - the k best scores per row, best first, equal scores by lower id.
//!
//! Non-finite scores, defined here and matched by the kernel:
//! - a NaN score (the pad column excepted: it is masked first) makes every
//!   log-probability of its row NaN, top-k included (as PyTorch
//!   `log_softmax` does); top-k ranks NaN above every number (as
//!   `torch.topk` / `torch.argmax` do), NaNs among themselves by lower id;
//! - `n >= 1` scores at +inf and no NaN: log-probability `-ln(n)` at each
//!   +inf entry and -inf elsewhere, the limit of log-softmax as those `n`
//!   scores grow together (PyTorch gives NaN here: `inf - inf`); the
//!   log-sum-exp is +inf.
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
/// of only -inf (or an empty row), NaN when any entry is NaN, +inf when an
/// entry is +inf (and none is NaN).
pub fn log_sum_exp(row: &[f32]) -> f32 {
    if row.iter().any(|x| x.is_nan()) {
        return f32::NAN;
    }
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max.is_infinite() {
        return max;
    }
    let sum: f64 = row
        .iter()
        .map(|&x| (f64::from(x) - f64::from(max)).exp())
        .sum();
    (f64::from(max) + sum.ln()) as f32
}

/// Log-softmax of one row of scores (f32 out, f64 sum), with the
/// non-finite rules of the module docs: any NaN gives NaN everywhere; only
/// -inf (or empty) gives -inf everywhere; `n` entries at +inf give `-ln(n)`
/// there and -inf elsewhere; otherwise `x - log_sum_exp(row)`.
pub fn log_softmax(row: &[f32]) -> Vec<f32> {
    let lse = log_sum_exp(row);
    if lse.is_nan() {
        return vec![f32::NAN; row.len()];
    }
    if lse == f32::INFINITY {
        let n = row.iter().filter(|&&x| x == f32::INFINITY).count();
        let at_inf = -((n as f64).ln()) as f32;
        return row
            .iter()
            .map(|&x| {
                if x == f32::INFINITY {
                    at_inf
                } else {
                    f32::NEG_INFINITY
                }
            })
            .collect();
    }
    if lse == f32::NEG_INFINITY {
        return vec![f32::NEG_INFINITY; row.len()];
    }
    row.iter().map(|&x| x - lse).collect()
}

/// Ids of the `k` largest values of `row`, best first; equal values are
/// ordered by lower id (what `logits.cu` does). NaN ranks above every
/// number (as `torch.topk` ranks it), NaNs among themselves by lower id.
/// `k` is clamped to `row.len()`.
pub fn top_k(row: &[f32], k: usize) -> Vec<u32> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| {
        let (va, vb) = (row[a], row[b]);
        // NaN first, then descending by value, then ascending by id.
        vb.is_nan()
            .cmp(&va.is_nan())
            .then_with(|| vb.partial_cmp(&va).unwrap_or(std::cmp::Ordering::Equal))
            .then(a.cmp(&b))
    });
    idx.into_iter().take(k).map(|i| i as u32).collect()
}

/// The argument checks of a top-k step over `[rows, vocab]` logits (this
/// oracle and the CPU backend's `log_softmax_topk`): `vocab >= 1`, `k` in
/// `1..=vocab`, `len == rows * vocab`.
pub(crate) fn check_rows_vocab_k(
    op: &'static str,
    len: usize,
    rows: usize,
    vocab: usize,
    k: usize,
) -> Result<()> {
    if vocab == 0 || k == 0 || k > vocab {
        return Err(Error::invalid(
            op,
            format!("vocab {vocab} must be >= 1 and k {k} in 1..=vocab"),
        ));
    }
    if rows.checked_mul(vocab) != Some(len) {
        return Err(Error::shape(
            op,
            format!("logits {}", fmt_shape(&[rows, vocab])),
            format!("{len} elements"),
        ));
    }
    Ok(())
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
    check_rows_vocab_k(OP, logits.len(), rows, vocab, k)?;
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
        let lp = log_softmax(&s);
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
    fn a_nan_makes_its_row_nan_and_ranks_first() {
        let nan = f32::NAN;
        // Row 0 has NaN at ids 1 and 3; row 1 is finite; row 2 has NaN only
        // in the pad column, which is masked before anything reads it.
        let logits = [
            1.0, nan, 3.0, nan, 0.0, //
            1.0, 2.0, 3.0, 4.0, 0.0, //
            1.0, 2.0, 3.0, 4.0, nan,
        ];
        let r = logits_step(&logits, 3, 5, None, Some(4), 3).unwrap();
        assert!(
            r.log_probs[..5].iter().all(|l| l.is_nan()),
            "NaN row: {:?}",
            &r.log_probs[..5]
        );
        assert_eq!(&r.topk_ids[..3], &[1, 3, 2], "NaN ids first, by id");
        assert!(r.topk_log_probs[..3].iter().all(|l| l.is_nan()));
        for row in [1, 2] {
            let lp = &r.log_probs[row * 5..row * 5 + 5];
            assert!(lp.iter().all(|l| !l.is_nan()), "row {row}: {lp:?}");
            assert_eq!(lp[4], f32::NEG_INFINITY, "row {row}: pad");
            assert_eq!(&r.topk_ids[row * 3..row * 3 + 3], &[3, 2, 1]);
        }
        // inf + (-inf) from the bias is NaN too.
        let r = logits_step(
            &[f32::INFINITY, 0.0],
            1,
            2,
            Some(&[f32::NEG_INFINITY, 0.0]),
            None,
            1,
        )
        .unwrap();
        assert!(r.log_probs.iter().all(|l| l.is_nan()), "{:?}", r.log_probs);
        assert_eq!(r.topk_ids, vec![0]);
    }

    #[test]
    fn n_entries_at_plus_inf_share_the_mass() {
        let inf = f32::INFINITY;
        // Two +inf: -ln 2 each; a third +inf in the pad column does not count.
        let r = logits_step(&[0.0, inf, 5.0, inf, inf], 1, 5, None, Some(4), 3).unwrap();
        let half = -std::f32::consts::LN_2;
        let ninf = f32::NEG_INFINITY;
        assert_eq!(r.log_probs, vec![ninf, half, ninf, half, ninf]);
        assert_eq!(r.topk_ids, vec![1, 3, 2]);
        assert_eq!(r.topk_log_probs, vec![half, half, ninf]);
        // One +inf: probability 1 there (log 0), 0 elsewhere.
        let r = logits_step(&[-3.0, 1e30, inf], 1, 3, None, None, 2).unwrap();
        assert_eq!(r.log_probs, vec![ninf, ninf, 0.0]);
        assert_eq!(r.topk_ids, vec![2, 1]);
        // Three +inf (n need not be a power of two).
        let lp = log_softmax(&[inf, 1.0, inf, inf]);
        let third = -(3.0f64.ln()) as f32;
        assert_eq!(lp, vec![third, ninf, third, third]);
        assert_eq!(log_sum_exp(&[inf, 1.0]), inf);
        assert!(log_sum_exp(&[f32::NAN, inf]).is_nan());
    }

    #[test]
    fn k_out_of_range_is_an_error() {
        assert!(logits_step(&[0.0; 4], 1, 4, None, None, 5).is_err());
        assert!(logits_step(&[0.0; 4], 1, 4, None, None, 0).is_err());
        assert!(logits_step(&[0.0; 4], 1, 4, None, Some(4), 1).is_err());
    }
}
