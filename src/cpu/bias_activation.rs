//! Reference of `kernels/bias_activation.cu`: `out[r, c] = act(x[r, c] + bias[c])`,
//! the bias add in f32 and the activation by [`Activation::eval`] (f64,
//! rounded to f32).

use crate::activation::Activation;
use crate::error::{Error, Result};

/// `act(x + bias)` over rows of `cols` elements (`x`: `[rows, cols]`,
/// `bias`: `[cols]` or `None`). Returns `[rows, cols]`.
///
/// Errors: [`Error::Shape`] when `cols == 0` with a non-empty `x`, `x` is not
/// whole rows, or `bias` is not `[cols]`.
pub fn bias_activation(
    x: &[f32],
    bias: Option<&[f32]>,
    cols: usize,
    act: Activation,
) -> Result<Vec<f32>> {
    const OP: &str = "bias_activation";
    if cols == 0 {
        return if x.is_empty() {
            Ok(Vec::new())
        } else {
            Err(Error::shape(OP, "cols >= 1", "cols 0"))
        };
    }
    if !x.len().is_multiple_of(cols) {
        return Err(Error::shape(
            OP,
            format!("x [rows, {cols}]"),
            format!("{} elements", x.len()),
        ));
    }
    if let Some(b) = bias {
        if b.len() != cols {
            return Err(Error::shape(
                OP,
                format!("bias [{cols}]"),
                format!("bias [{}]", b.len()),
            ));
        }
    }
    Ok(x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let h = match bias {
                Some(b) => v + b[i % cols],
                None => v,
            };
            act.eval(h)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bias_is_added_per_column_before_the_activation() {
        let x = [1.0f32, -1.0, 0.5, -3.0];
        let bias = [-2.0f32, 2.0];
        let y = bias_activation(&x, Some(&bias), 2, Activation::Relu).unwrap();
        assert_eq!(y, vec![0.0, 1.0, 0.0, 0.0]);
        // gelu(1) = Φ(1) (erf form).
        let g = bias_activation(&[1.0], None, 1, Activation::Gelu).unwrap();
        assert!((g[0] - 0.841_344_8).abs() < 1e-6, "gelu(1) = {}", g[0]);
    }

    #[test]
    fn shape_errors() {
        assert!(bias_activation(&[1.0; 3], None, 2, Activation::Relu).is_err());
        assert!(bias_activation(&[1.0; 4], Some(&[0.0; 3]), 2, Activation::Relu).is_err());
        assert!(bias_activation(&[1.0], None, 0, Activation::Relu).is_err());
    }
}
