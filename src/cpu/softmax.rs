//! Row-wise softmax and log-softmax in f32, max-subtracted for stability.
//!
//! `softmax(x)_i = exp(x_i - max) / Σ_j exp(x_j - max)`;
//! `log_softmax(x)_i = x_i - max - ln Σ_j exp(x_j - max)` (as PyTorch
//! `log_softmax`). Masked entries are `-inf` and get probability 0. A row
//! with every entry `-inf` has no distribution: softmax gives a row of 0
//! (never NaN), log-softmax a row of `-inf`.

use crate::cpu::linear::check_len;
use crate::error::Result;

/// Softmax over each row of `x`, `[rows, cols]` row-major. Returns `[rows, cols]`.
///
/// Errors: [`crate::Error::Shape`] if `x.len() != rows * cols`.
pub fn softmax_rows(x: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>> {
    check_len("softmax", "x", x.len(), &[rows, cols])?;
    let mut y = x.to_vec();
    if cols > 0 {
        y.chunks_exact_mut(cols).for_each(softmax_in_place);
    }
    Ok(y)
}

/// Log-softmax over each row of `x`, `[rows, cols]` row-major. Returns `[rows, cols]`.
///
/// Errors: [`crate::Error::Shape`] if `x.len() != rows * cols`.
pub fn log_softmax_rows(x: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>> {
    check_len("log_softmax", "x", x.len(), &[rows, cols])?;
    let mut y = x.to_vec();
    if cols > 0 {
        y.chunks_exact_mut(cols).for_each(log_softmax_in_place);
    }
    Ok(y)
}

/// Softmax of one row in place; a row of only `-inf` becomes all 0.
pub fn softmax_in_place(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        row.fill(0.0);
        return;
    }
    let mut sum = 0.0f32;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// Log-softmax of one row in place; a row of only `-inf` stays `-inf`.
pub fn log_softmax_in_place(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return;
    }
    let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
    let shift = max + sum.ln();
    for v in row.iter_mut() {
        *v -= shift;
    }
}
