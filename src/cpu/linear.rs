//! Linear layer: `y = x · Wᵀ + b`, the projection of every Transformer
//! sublayer (PyTorch `nn.Linear` convention: `W` is `[out_features, in_features]`).
//!
//! The product runs through `matrixmultiply::sgemm` (f32 in, f32 accumulate),
//! a well-kept blocked GEMM, so that whole models run at usable speed; the
//! bias is added afterwards in a plain loop.

use crate::error::{fmt_shape, Error, Result};

/// `y[m, n] = x[m, k] · w[n, k]ᵀ + b[n]`, all row-major f32.
///
/// - `x`: `[m, k]` activations.
/// - `w`: `[n, k]` weight, as Hugging Face / PyTorch store it (`out, in`).
/// - `b`: optional `[n]` bias.
///
/// Returns `[m, n]`. `m`, `n` or `k` may be 0 (then `y` is `b` broadcast or
/// empty). Errors: [`Error::Shape`] when a slice length disagrees with the
/// dimensions.
pub fn linear(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    m: usize,
    n: usize,
    k: usize,
) -> Result<Vec<f32>> {
    let mut y = vec![0.0f32; m.checked_mul(n).ok_or_else(|| overflow(m, n))?];
    linear_into(x, w, b, m, n, k, &mut y)?;
    Ok(y)
}

/// As [`linear`], writing into `y` (`[m, n]`, overwritten) to avoid an
/// allocation per call in the model's hot loop.
pub fn linear_into(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    m: usize,
    n: usize,
    k: usize,
    y: &mut [f32],
) -> Result<()> {
    check_len("linear", "x", x.len(), &[m, k])?;
    check_len("linear", "w", w.len(), &[n, k])?;
    check_len("linear", "y", y.len(), &[m, n])?;
    if let Some(b) = b {
        check_len("linear", "b", b.len(), &[n])?;
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        y.fill(0.0);
    } else {
        let (k_i, n_i) = (to_isize(k)?, to_isize(n)?);
        // SAFETY: the checks above guarantee x has m*k, w has n*k and y has
        // m*n elements; the strides below address exactly those ranges:
        // x row-major [m, k] (rs k, cs 1), wᵀ viewed as [k, n] through w's
        // row-major [n, k] storage (rs 1, cs k), y row-major [m, n].
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                x.as_ptr(),
                k_i,
                1,
                w.as_ptr(),
                1,
                k_i,
                0.0,
                y.as_mut_ptr(),
                n_i,
                1,
            );
        }
    }
    if let Some(b) = b {
        for row in y.chunks_exact_mut(n) {
            for (yi, bi) in row.iter_mut().zip(b) {
                *yi += bi;
            }
        }
    }
    Ok(())
}

/// Checks that a slice holds exactly the product of `shape`.
pub(crate) fn check_len(op: &'static str, what: &str, len: usize, shape: &[usize]) -> Result<()> {
    let want = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::shape(op, format!("{what} {}", fmt_shape(shape)), "overflow"))?;
    if want != len {
        return Err(Error::shape(
            op,
            format!("{what} {} ({want} elements)", fmt_shape(shape)),
            format!("{len} elements"),
        ));
    }
    Ok(())
}

fn to_isize(v: usize) -> Result<isize> {
    isize::try_from(v).map_err(|_| Error::invalid("linear", format!("dimension {v} too large")))
}

fn overflow(m: usize, n: usize) -> Error {
    Error::invalid("linear", format!("output [{m}, {n}] overflows usize"))
}
