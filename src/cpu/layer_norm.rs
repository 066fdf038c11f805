//! LayerNorm (Ba et al., 2016) with an optional fused residual add, as every
//! post-LN Marian sublayer uses it: `y = LN(x + residual)`.
//!
//! `LN(h)_i = (h_i - mean) / sqrt(var + eps) * gamma_i + beta_i`, with the
//! biased variance `var = mean((h - mean)²)` (PyTorch `nn.LayerNorm`).
//! Statistics are two-pass (mean first, then the centred squares), never
//! `E[h²] - E[h]²`, which cancels catastrophically for rows with a large
//! mean. The sums are accumulated in f64 so that the oracle is more accurate
//! than any f32 kernel it judges; inputs and outputs are f32.

use crate::cpu::linear::check_len;
use crate::error::{Error, Result};

/// `LN(x + residual) * gamma + beta` over rows of `hidden` elements.
///
/// - `x`: `[rows, hidden]` f32; `residual`: optional, same shape.
/// - `gamma`, `beta`: `[hidden]`.
/// - `eps`: added to the variance (1e-5 in Marian / `nn.LayerNorm`).
///
/// Returns `[rows, hidden]`. Errors: [`Error::Shape`] on a length mismatch or
/// `hidden == 0` with a non-empty `x`.
pub fn layer_norm(
    x: &[f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    hidden: usize,
    eps: f32,
) -> Result<Vec<f32>> {
    if hidden == 0 {
        return Err(Error::shape("layer_norm", "hidden > 0", "hidden 0"));
    }
    let rows = x.len() / hidden;
    check_len("layer_norm", "x", x.len(), &[rows, hidden])?;
    check_len("layer_norm", "gamma", gamma.len(), &[hidden])?;
    check_len("layer_norm", "beta", beta.len(), &[hidden])?;
    let mut y = x.to_vec();
    if let Some(r) = residual {
        check_len("layer_norm", "residual", r.len(), &[rows, hidden])?;
        for (yi, ri) in y.iter_mut().zip(r) {
            *yi += ri;
        }
    }
    for row in y.chunks_exact_mut(hidden) {
        normalize_row(row, gamma, beta, eps);
    }
    Ok(y)
}

/// Normalises one row in place (two-pass statistics, f64 accumulation).
fn normalize_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = row.len() as f64;
    let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = row
        .iter()
        .map(|&v| {
            let d = f64::from(v) - mean;
            d * d
        })
        .sum::<f64>()
        / n;
    let inv_std = 1.0 / (var + f64::from(eps)).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = ((f64::from(*v) - mean) * inv_std) as f32 * g + b;
    }
}
