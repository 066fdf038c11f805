//! `y = act(x · Wᵀ + b)` with a packed `W` ([`PackedWeight`]): the fast CPU
//! backend's linear layer.
//!
//! The output is cut into blocks of [`ROW_BLOCK`] rows by one tile width of
//! columns; each block walks its rows in tiles of [`MR`], the weight panels
//! of the block staying in cache while its rows stream past. Blocks are
//! independent (disjoint outputs), so large products run them on the
//! worker pool; every element is the fixed FMA sequence of
//! [`super::microkernel`] plus the bias, whichever block, thread or tile
//! shape computes it (bit-identical batch vs alone). The activation is
//! applied to each finished row segment while it is in L1
//! ([`super::vmath::activation_in_place`]).

use std::mem::MaybeUninit;

use super::isa::Isa;
use super::microkernel::{panels_per_tile, tile, MR, TILE_MAX};
use super::pack::{PackedWeight, NR};
use super::threads::{SharedOut, Threads};
use super::vmath::activation_in_place;
use crate::activation::Activation;
use crate::cpu::linear::check_len;
use crate::error::Result;

/// Rows per output block.
pub const ROW_BLOCK: usize = 64;

/// Below this many multiply-adds one thread does the whole product (the
/// pool's hand-off costs a few microseconds).
pub const PARALLEL_MIN_MACS: usize = 1 << 21;

/// `y[m, n] = act(x[m, k] · Wᵀ + b)`, all f32 row-major, on `isa` (one of
/// [`Isa::supported`]; the backend passes [`Isa::detected`]).
///
/// - `x`: `[m, k]`; `w`: packed `[n, k]`; `b`: optional `[n]`;
/// - `y`: `[m, n]`, overwritten.
///
/// Each element is `fma`-accumulated over `k` in order, then `+ b`, then
/// the activation (f32, [`super::vmath`]).
///
/// Errors: [`crate::Error::Shape`] when a slice length disagrees with the
/// dimensions.
#[allow(clippy::too_many_arguments)] // the GEMM's natural operands
pub fn gemm(
    isa: Isa,
    threads: &Threads,
    x: &[f32],
    m: usize,
    w: &PackedWeight,
    b: Option<&[f32]>,
    act: Option<Activation>,
    y: &mut [f32],
) -> Result<()> {
    check_len("linear", "y", y.len(), &[m, w.n()])?;
    // SAFETY: MaybeUninit<f32> has f32's layout, and `gemm_into` only
    // writes initialised values into it.
    let y = unsafe { &mut *(y as *mut [f32] as *mut [MaybeUninit<f32>]) };
    gemm_into(isa, threads, x, m, w, b, act, y)
}

/// As [`gemm`], into a new `[m, n]` vector that is written once and never
/// zero-filled first (the vocabulary projection's output is megabytes per
/// decode step).
///
/// Errors: as [`gemm`].
pub fn gemm_new(
    isa: Isa,
    threads: &Threads,
    x: &[f32],
    m: usize,
    w: &PackedWeight,
    b: Option<&[f32]>,
    act: Option<Activation>,
) -> Result<Vec<f32>> {
    let len = m
        .checked_mul(w.n())
        .ok_or_else(|| crate::Error::invalid("linear", format!("[{m}, {}] overflows", w.n())))?;
    let mut y: Vec<f32> = Vec::with_capacity(len);
    gemm_into(
        isa,
        threads,
        x,
        m,
        w,
        b,
        act,
        &mut y.spare_capacity_mut()[..len],
    )?;
    // SAFETY: `gemm_into` returned Ok, so it wrote every one of the `m·n`
    // elements (each task writes its whole rectangle; a panic would not
    // reach here).
    unsafe { y.set_len(len) };
    Ok(y)
}

/// The body of [`gemm`]: writes every element of `y` (`[m, n]`).
#[allow(clippy::too_many_arguments)]
fn gemm_into(
    isa: Isa,
    threads: &Threads,
    x: &[f32],
    m: usize,
    w: &PackedWeight,
    b: Option<&[f32]>,
    act: Option<Activation>,
    y: &mut [MaybeUninit<f32>],
) -> Result<()> {
    let (n, k) = (w.n(), w.k());
    check_len("linear", "x", x.len(), &[m, k])?;
    check_len("linear", "y", y.len(), &[m, n])?;
    if let Some(b) = b {
        check_len("linear", "b", b.len(), &[n])?;
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let npt = panels_per_tile(isa);
    let col_blocks = w.panel_count().div_ceil(npt);
    let row_blocks = m.div_ceil(ROW_BLOCK);
    let out = SharedOut::new(y);
    let parallel = m * n * k >= PARALLEL_MIN_MACS;
    threads.run(row_blocks * col_blocks, parallel, |task| {
        let (rb, cb) = (task / col_blocks, task % col_blocks);
        let p0 = cb * npt;
        let p1 = (p0 + npt).min(w.panel_count());
        let (c0, c1) = (p0 * NR, (p1 * NR).min(n));
        let panels = w.panels(p0, p1);
        let np = p1 - p0;
        let mut buf = [0.0f32; TILE_MAX];
        let rows = rb * ROW_BLOCK..((rb + 1) * ROW_BLOCK).min(m);
        let mut i = rows.start;
        while i < rows.end {
            let mr = MR.min(rows.end - i);
            tile(isa, mr, np, &x[i * k..], k, panels, &mut buf);
            for r in 0..mr {
                // SAFETY: row i + r < m and columns c0..c1 <= n lie in `y`
                // (checked above); tasks own disjoint (row block, column
                // block) rectangles, so no two threads write one element.
                let seg = unsafe { out.slice((i + r) * n + c0, c1 - c0) };
                let t = &buf[r * np * NR..][..c1 - c0];
                match b {
                    Some(b) => {
                        for ((s, &t), &b) in seg.iter_mut().zip(t).zip(&b[c0..c1]) {
                            s.write(t + b);
                        }
                    }
                    None => {
                        for (s, &t) in seg.iter_mut().zip(t) {
                            s.write(t);
                        }
                    }
                }
                // SAFETY: every element of `seg` was written just above.
                let seg = unsafe { &mut *(seg as *mut [MaybeUninit<f32>] as *mut [f32]) };
                if let Some(act) = act {
                    activation_in_place(act, seg);
                }
            }
            i += mr;
        }
    });
    Ok(())
}
