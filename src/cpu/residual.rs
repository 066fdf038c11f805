//! Residual add: `y = x + residual`, element-wise in f32 (the skip connection
//! around every sublayer of the Transformer).

use crate::error::{fmt_shape, Error, Result};

/// `x + residual`, element-wise. Both slices must have the same length
/// (any shape, flattened). Errors: [`Error::Shape`] on a length mismatch.
pub fn add(x: &[f32], residual: &[f32]) -> Result<Vec<f32>> {
    if x.len() != residual.len() {
        return Err(Error::shape(
            "residual_add",
            fmt_shape(&[x.len()]),
            fmt_shape(&[residual.len()]),
        ));
    }
    Ok(x.iter().zip(residual).map(|(a, b)| a + b).collect())
}
