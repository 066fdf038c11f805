//! Linear layer: `y = x · Wᵀ + b`, the projection of every Transformer
//! sublayer (PyTorch `nn.Linear` convention: `W` is `[out_features, in_features]`).
//!
//! Every output element is one f32 dot product of an input row and a weight
//! row ([`dot`]: 8 partial sums, fixed reduction order), so the value of a
//! row's output never depends on the other rows of the batch (a sentence
//! translated in a batch gives bit-identical states to the same sentence
//! alone). Weight rows are processed in cache-sized blocks against every
//! input row, so decoding (a few rows per step) reads the weights once per
//! step; `matrixmultiply::sgemm` re-packs the whole weight on every call,
//! which made decoding 5x slower (measured for the 58101 x 512 output
//! projection, one row: 40 ms vs 8 ms). Large products use up to 4 threads.

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
        // An empty sum: y is the bias broadcast (or 0).
        for row in y.chunks_exact_mut(n) {
            row.copy_from_slice(b.unwrap_or(&vec![0.0; n]));
        }
        return Ok(());
    }
    // Split the output columns over threads when the product is large enough
    // to pay for them; each element is computed by the same `dot`, so the
    // result does not depend on the split.
    let threads = if m * n * k >= PARALLEL_MIN_MACS {
        thread_count().min(n)
    } else {
        1
    };
    if threads <= 1 {
        gemm_block(x, w, b, k, n, 0, n, y);
        return Ok(());
    }
    let per = n.div_ceil(threads);
    let mut parts: Vec<(usize, Vec<f32>)> = Vec::with_capacity(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (j0, j1) = (t * per, ((t + 1) * per).min(n));
                s.spawn(move || {
                    let mut out = vec![0.0f32; m * (j1 - j0)];
                    gemm_block(x, w, b, k, j1 - j0, j0, j1, &mut out);
                    (j0, out)
                })
            })
            .collect();
        for h in handles {
            // A panic in a worker can only come from a bug in gemm_block
            // (all lengths are checked above); propagate it unchanged.
            parts.push(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
    });
    for (j0, out) in parts {
        let width = out.len() / m;
        for (i, row) in out.chunks_exact(width).enumerate() {
            y[i * n + j0..][..width].copy_from_slice(row);
        }
    }
    Ok(())
}

/// Below this many multiply-adds a single thread is faster than spawning.
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// Worker threads for large products: the machine's parallelism, at most 4.
fn thread_count() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .min(4)
}

/// Columns `j0..j1` of `y = x·wᵀ + b` into `out` (`[m, ldo]`, column `j - j0`).
///
/// Loops over blocks of output columns (weight rows, which stay in cache)
/// and, inside, over every input row: the weights are read from memory once
/// per call whatever `m` is, which is what decoding (m = a few rows) needs.
#[allow(clippy::too_many_arguments)] // private kernel over checked slices
fn gemm_block(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    k: usize,
    ldo: usize,
    j0: usize,
    j1: usize,
    out: &mut [f32],
) {
    const COLS: usize = 64; // 64 weight rows of k <= 1024 floats: <= 256 KiB, L2-resident
    let mut jb = j0;
    while jb < j1 {
        let je = (jb + COLS).min(j1);
        for (xr, orow) in x.chunks_exact(k.max(1)).zip(out.chunks_exact_mut(ldo)) {
            for j in jb..je {
                let bias = b.map_or(0.0, |b| b[j]);
                orow[j - j0] = dot(xr, &w[j * k..][..k]) + bias;
            }
        }
        jb = je;
    }
}

/// `Σ a_i·b_i` in f32 with 8 independent partial sums (lane `l` takes the
/// indices `≡ l mod 8`), reduced in a fixed order: vectorisable, and the
/// same rounding for a given pair of rows wherever it is computed.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ta.iter().zip(tb) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
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

fn overflow(m: usize, n: usize) -> Error {
    Error::invalid("linear", format!("output [{m}, {n}] overflows usize"))
}
