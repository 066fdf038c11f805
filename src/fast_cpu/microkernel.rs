//! The GEMM micro-kernels: an `mr x (np·16)` tile of `x · Wᵀ` from `mr`
//! input rows and `np` packed panels ([`super::pack`]), accumulated in
//! registers over the whole `k`.
//!
//! Every output element is the same fixed-order reduction on every path and
//! for every tile shape: `k` is cut into blocks of [`KC`]; within a block,
//! `acc = 0; for kk in block { acc = fma(x[kk], w[kk], acc) }` (one
//! rounding per step, IEEE fused multiply-add), and the block sums are
//! added in block order, `((b0 + b1) + b2) + ...`. The value of an element
//! depends only on its input row and its weight row, never on `m`, on the
//! tile it fell in or on the instruction set, so a sentence decoded in a
//! batch gets bit-identical states to the same sentence alone. The blocks
//! bound the rounding error by about `(KC + k/KC)·ε·Σ|x·w|` instead of the
//! `k·ε·Σ|x·w|` of one running sum (at k = 2048, a single running sum
//! measured twice the error the GPU GEMM rule allows; `tests/fast_cpu_ops.rs`).

use super::isa::Isa;
use super::pack::NR;

/// Input rows per tile.
pub const MR: usize = 4;

/// Steps of `k` per block of the reduction (see the module docs).
pub const KC: usize = 64;

/// Panels per tile on `isa`: 4 (64 columns, 16 zmm accumulators) with
/// AVX-512, 1 (16 columns, 8 ymm accumulators) otherwise.
pub fn panels_per_tile(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 4,
        Isa::Avx2 | Isa::Portable => 1,
    }
}

/// Largest tile, in floats: `MR` rows of 4 panels.
pub const TILE_MAX: usize = MR * 4 * NR;

/// `out[r·np·16 + c] = Σ_kk x[r·k + kk] · panel[c / 16][kk][c % 16]` for
/// `r < mr`, `c < np·16`, with the accumulation order of the module docs.
///
/// - `x`: at least `mr` rows of `k` (row stride `k`);
/// - `w`: `np` consecutive panels (`[np, k, 16]`);
/// - `out`: at least `mr · np · 16` floats (overwritten).
///
/// `mr` must be in `1..=MR` and `np` in `1..=panels_per_tile(isa)`, and
/// `isa` must be one of [`Isa::supported`]; anything else panics (a bug in
/// the caller, not user input).
pub fn tile(isa: Isa, mr: usize, np: usize, x: &[f32], k: usize, w: &[f32], out: &mut [f32]) {
    assert!((1..=MR).contains(&mr) && (1..=panels_per_tile(isa)).contains(&np));
    assert!(x.len() >= mr * k && w.len() >= np * k * NR && out.len() >= mr * np * NR);
    assert!(isa.is_supported(), "{isa:?} not supported here");
    let (x, w, o) = (x.as_ptr(), w.as_ptr(), out.as_mut_ptr());
    // SAFETY: the lengths were checked just above, the instruction set is
    // one this CPU supports, and each kernel reads `x[..mr·k]`,
    // `w[..np·k·16]` and writes `out[..mr·np·16]` only.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => match (mr, np) {
                (1, 1) => avx512::<1, 1>(x, k, w, o),
                (1, 2) => avx512::<1, 2>(x, k, w, o),
                (1, 3) => avx512::<1, 3>(x, k, w, o),
                (1, _) => avx512::<1, 4>(x, k, w, o),
                (2, 1) => avx512::<2, 1>(x, k, w, o),
                (2, 2) => avx512::<2, 2>(x, k, w, o),
                (2, 3) => avx512::<2, 3>(x, k, w, o),
                (2, _) => avx512::<2, 4>(x, k, w, o),
                (3, 1) => avx512::<3, 1>(x, k, w, o),
                (3, 2) => avx512::<3, 2>(x, k, w, o),
                (3, 3) => avx512::<3, 3>(x, k, w, o),
                (3, _) => avx512::<3, 4>(x, k, w, o),
                (_, 1) => avx512::<4, 1>(x, k, w, o),
                (_, 2) => avx512::<4, 2>(x, k, w, o),
                (_, 3) => avx512::<4, 3>(x, k, w, o),
                (_, _) => avx512::<4, 4>(x, k, w, o),
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => match mr {
                1 => avx2::<1>(x, k, w, o),
                2 => avx2::<2>(x, k, w, o),
                3 => avx2::<3>(x, k, w, o),
                _ => avx2::<4>(x, k, w, o),
            },
            _ => match mr {
                1 => portable::<1>(x, k, w, o),
                2 => portable::<2>(x, k, w, o),
                3 => portable::<3>(x, k, w, o),
                _ => portable::<4>(x, k, w, o),
            },
        }
    }
}

/// AVX-512: per `kk`, `NP` panel loads, `R` broadcasts, `R·NP` FMAs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512<const R: usize, const NP: usize>(
    x: *const f32,
    k: usize,
    w: *const f32,
    out: *mut f32,
) {
    use std::arch::x86_64::*;
    let mut k0 = 0;
    while k0 < k.max(1) {
        let k1 = (k0 + KC).min(k);
        let mut acc = [[_mm512_setzero_ps(); NP]; R];
        for kk in k0..k1 {
            let mut b = [_mm512_setzero_ps(); NP];
            for (p, b) in b.iter_mut().enumerate() {
                *b = _mm512_loadu_ps(w.add((p * k + kk) * NR));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let a = _mm512_set1_ps(*x.add(r * k + kk));
                for (acc, &b) in acc.iter_mut().zip(&b) {
                    *acc = _mm512_fmadd_ps(a, b, *acc);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (p, &v) in acc.iter().enumerate() {
                let o = out.add((r * NP + p) * NR);
                let v = if k0 == 0 {
                    v
                } else {
                    _mm512_add_ps(_mm512_loadu_ps(o), v)
                };
                _mm512_storeu_ps(o, v);
            }
        }
        k0 = k1.max(k0 + 1);
    }
}

/// AVX2 + FMA: one panel as two 8-lane halves, `R` rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2<const R: usize>(x: *const f32, k: usize, w: *const f32, out: *mut f32) {
    use std::arch::x86_64::*;
    let mut k0 = 0;
    while k0 < k.max(1) {
        let k1 = (k0 + KC).min(k);
        let mut lo = [_mm256_setzero_ps(); R];
        let mut hi = [_mm256_setzero_ps(); R];
        for kk in k0..k1 {
            let b0 = _mm256_loadu_ps(w.add(kk * NR));
            let b1 = _mm256_loadu_ps(w.add(kk * NR + 8));
            for r in 0..R {
                let a = _mm256_set1_ps(*x.add(r * k + kk));
                lo[r] = _mm256_fmadd_ps(a, b0, lo[r]);
                hi[r] = _mm256_fmadd_ps(a, b1, hi[r]);
            }
        }
        for r in 0..R {
            let (o0, o1) = (out.add(r * NR), out.add(r * NR + 8));
            if k0 == 0 {
                _mm256_storeu_ps(o0, lo[r]);
                _mm256_storeu_ps(o1, hi[r]);
            } else {
                _mm256_storeu_ps(o0, _mm256_add_ps(_mm256_loadu_ps(o0), lo[r]));
                _mm256_storeu_ps(o1, _mm256_add_ps(_mm256_loadu_ps(o1), hi[r]));
            }
        }
        k0 = k1.max(k0 + 1);
    }
}

/// Any CPU: the same FMA sequence with `f32::mul_add`, one panel.
unsafe fn portable<const R: usize>(x: *const f32, k: usize, w: *const f32, out: *mut f32) {
    let mut k0 = 0;
    while k0 < k.max(1) {
        let k1 = (k0 + KC).min(k);
        let mut acc = [[0.0f32; NR]; R];
        for kk in k0..k1 {
            let b = std::slice::from_raw_parts(w.add(kk * NR), NR);
            for (r, acc) in acc.iter_mut().enumerate() {
                let a = *x.add(r * k + kk);
                for (acc, &b) in acc.iter_mut().zip(b) {
                    *acc = a.mul_add(b, *acc);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let o = std::slice::from_raw_parts_mut(out.add(r * NR), NR);
            for (o, &a) in o.iter_mut().zip(acc) {
                *o = if k0 == 0 { a } else { *o + a };
            }
        }
        k0 = k1.max(k0 + 1);
    }
}
