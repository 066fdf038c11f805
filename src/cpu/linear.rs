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

use crate::activation::Activation;
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

/// The rest of a fused linear epilogue after [`linear`]'s bias:
/// `y = act(y) + residual` in f32, on `y` (`[m, n]`, row-major).
/// `activation` uses [`Activation::eval`] (f64, rounded to f32).
///
/// Errors: [`Error::Shape`] when `residual` is not as long as `y`.
pub fn linear_epilogue(
    y: &mut [f32],
    activation: Option<Activation>,
    residual: Option<&[f32]>,
) -> Result<()> {
    if let Some(r) = residual {
        if r.len() != y.len() {
            return Err(Error::shape(
                "linear",
                format!("residual of {} elements (as y)", y.len()),
                format!("residual of {} elements", r.len()),
            ));
        }
    }
    if let Some(act) = activation {
        for v in y.iter_mut() {
            *v = act.eval(*v);
        }
    }
    if let Some(r) = residual {
        for (v, r) in y.iter_mut().zip(r) {
            *v += r;
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
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU supports AVX (checked just above), which is
            // the only requirement of the target_feature function; the
            // slices were checked by the caller as in the portable path.
            unsafe { gemm_block_avx(x, w, b, k, ldo, j0, j1, out) };
            return;
        }
    }
    gemm_block_generic(x, w, b, k, ldo, j0, j1, out);
}

/// [`gemm_block_generic`] compiled with 8-wide AVX vectors. AVX adds and
/// multiplies are the same IEEE operations per lane as SSE (Rust never fuses
/// them into FMA), so results are bit-identical to the portable path.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_block_avx(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    k: usize,
    ldo: usize,
    j0: usize,
    j1: usize,
    out: &mut [f32],
) {
    gemm_block_generic(x, w, b, k, ldo, j0, j1, out);
}

/// Input rows per register tile.
const TILE_ROWS: usize = 4;
/// Weight rows (output columns) per register tile.
const TILE_COLS: usize = 2;

/// Loops over blocks of weight rows (which stay in cache) and, inside, over
/// every input row in register tiles of `TILE_ROWS x TILE_COLS` dot
/// products: the weights are read from memory once per call whatever `m`
/// is (decoding has m = a few rows), and each loaded vector is reused
/// across the tile.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gemm_block_generic(
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
    let m = x.len() / k;
    let bias = |j: usize| b.map_or(0.0, |b| b[j]);
    let mut jb = j0;
    while jb < j1 {
        let je = (jb + COLS).min(j1);
        let mut i = 0;
        while i < m {
            let ie = (i + TILE_ROWS).min(m);
            let mut j = jb;
            if ie - i == TILE_ROWS {
                while j + TILE_COLS <= je {
                    let xs: [&[f32]; TILE_ROWS] = std::array::from_fn(|r| &x[(i + r) * k..][..k]);
                    let ws: [&[f32]; TILE_COLS] = std::array::from_fn(|c| &w[(j + c) * k..][..k]);
                    let t = dot_tile(xs, ws);
                    for (r, tr) in t.iter().enumerate() {
                        for (c, v) in tr.iter().enumerate() {
                            out[(i + r) * ldo + j + c - j0] = v + bias(j + c);
                        }
                    }
                    j += TILE_COLS;
                }
            }
            // Edges (and short row groups) with the scalar-tile `dot`: same rounding.
            for jj in j..je {
                for ii in i..ie {
                    out[ii * ldo + jj - j0] = dot(&x[ii * k..][..k], &w[jj * k..][..k]) + bias(jj);
                }
            }
            i = ie;
        }
        jb = je;
    }
}

/// Lanes of each partial-sum vector.
const LANES: usize = 8;

/// `TILE_ROWS x TILE_COLS` dot products at once; element `(r, c)` is
/// computed exactly as `dot(xs[r], ws[c])` (same lanes, same order). Written
/// with zipped `chunks_exact` and one named accumulator per pair so that the
/// compiler keeps them in vector registers without bounds checks.
#[inline(always)]
fn dot_tile(xs: [&[f32]; TILE_ROWS], ws: [&[f32]; TILE_COLS]) -> [[f32; TILE_COLS]; TILE_ROWS] {
    let k = xs[0].len();
    let full = k - k % LANES;
    let z = [0.0f32; LANES];
    let (mut a00, mut a01, mut a10, mut a11, mut a20, mut a21, mut a30, mut a31) =
        (z, z, z, z, z, z, z, z);
    let it = chunks(xs[0], full)
        .zip(chunks(xs[1], full))
        .zip(chunks(xs[2], full))
        .zip(chunks(xs[3], full))
        .zip(chunks(ws[0], full))
        .zip(chunks(ws[1], full));
    for (((((x0, x1), x2), x3), w0), w1) in it {
        let (x0, x1, x2, x3, w0, w1) = (
            lanes(x0),
            lanes(x1),
            lanes(x2),
            lanes(x3),
            lanes(w0),
            lanes(w1),
        );
        for l in 0..LANES {
            a00[l] += x0[l] * w0[l];
            a01[l] += x0[l] * w1[l];
            a10[l] += x1[l] * w0[l];
            a11[l] += x1[l] * w1[l];
            a20[l] += x2[l] * w0[l];
            a21[l] += x2[l] * w1[l];
            a30[l] += x3[l] * w0[l];
            a31[l] += x3[l] * w1[l];
        }
    }
    let acc = [[a00, a01], [a10, a11], [a20, a21], [a30, a31]];
    std::array::from_fn(|r| {
        std::array::from_fn(|c| {
            let mut tail = 0.0f32;
            for q in full..k {
                tail += xs[r][q] * ws[c][q];
            }
            reduce(&acc[r][c]) + tail
        })
    })
}

/// A `chunks_exact(LANES)` item as an array, so that indexing needs no bounds check.
#[inline(always)]
fn lanes(c: &[f32]) -> [f32; LANES] {
    std::array::from_fn(|l| c[l])
}

/// The first `full` elements of `v` in vectors of `LANES`.
#[inline(always)]
fn chunks(v: &[f32], full: usize) -> std::slice::ChunksExact<'_, f32> {
    v[..full].chunks_exact(LANES)
}

/// The fixed reduction order of the 8 partial sums.
#[inline(always)]
fn reduce(a: &[f32; LANES]) -> f32 {
    ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
}

/// `Σ a_i·b_i` in f32 with 8 independent partial sums (lane `l` takes the
/// indices `≡ l mod 8` of the full 8-blocks), reduced in a fixed order, plus
/// the tail summed in index order: vectorisable, and the same rounding for
/// a given pair of rows wherever it is computed. `a` and `b` must have the
/// same length (extra elements of the longer one are ignored).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let full = n - n % LANES;
    let mut acc = [0.0f32; LANES];
    for (x, y) in a[..full]
        .chunks_exact(LANES)
        .zip(b[..full].chunks_exact(LANES))
    {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0.0f32;
    for q in full..n {
        tail += a[q] * b[q];
    }
    reduce(&acc) + tail
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
