//! Multi-head attention of the fast CPU backend, reading q, k and v in
//! place from their tensors (the fused QKV output, the KV cache, the
//! cross-attention K/V) through strides: no copy of any operand.
//!
//! Per batch row, head and query: `s_j = (q · k_j) · scale` for the visible
//! keys (vectorised dot products, FMA), `p_j = exp(s_j - max)`
//! ([`super::vmath::exp`]), then `out = (Σ p_j · v_j) / Σ p_j` accumulated
//! in one `head_dim` vector that stays in L1 (registers for the usual
//! `head_dim` 64). A query whose keys are all masked gets exactly 0.
//! Masks: right-padding key lengths and causal, as
//! [`crate::model::backend::Backend::attention`] specifies them; the plain
//! reference is [`crate::cpu::attention`].

use super::isa::{multiversion, Isa};
use super::threads::{SharedOut, Threads};
use super::vmath::{dot_inline, exp, reduce, LANES};

/// Below this many multiply-adds (`rows·heads·q_len·k_len·head_dim`) the
/// call runs on one thread.
const PARALLEL_MIN_MACS: usize = 1 << 17;

/// A `[rows, positions, width]` operand inside a larger row-major tensor:
/// element `(r, p, c)` is `data[offset + r·row_stride + p·pos_stride + c]`.
#[derive(Clone, Copy, Debug)]
pub struct Strided<'a> {
    /// The tensor's elements.
    pub data: &'a [f32],
    /// First element of the operand (its first column).
    pub offset: usize,
    /// Elements between rows.
    pub row_stride: usize,
    /// Elements between positions.
    pub pos_stride: usize,
}

impl Strided<'_> {
    /// The `len` elements of row `r`, position `p`, from column `c`.
    #[inline(always)]
    pub fn at(&self, r: usize, p: usize, c: usize, len: usize) -> &[f32] {
        &self.data[self.offset + r * self.row_stride + p * self.pos_stride + c..][..len]
    }
}

/// Sizes and masks of one call.
#[derive(Clone, Copy, Debug)]
pub struct Shape<'a> {
    /// Batch rows.
    pub rows: usize,
    /// Query positions.
    pub q_len: usize,
    /// Key positions used (the first `k_len` of the k / v operands).
    pub k_len: usize,
    /// Heads.
    pub heads: usize,
    /// `d_model / heads`.
    pub head_dim: usize,
    /// `[rows]` real keys per row, or every key real.
    pub key_lengths: Option<&'a [usize]>,
    /// Query `i` sits at position `k_len - q_len + i` and sees keys up to it.
    pub causal: bool,
}

/// `out[r, i, h·hd ..] = softmax(q·kᵀ·scale)·v` for every row, query and
/// head; `out` is `[rows, q_len, heads·head_dim]`, overwritten. Operands
/// must lie inside their tensors (the backend checks the views; an
/// out-of-range access panics rather than reading past them).
pub fn attention(
    threads: &Threads,
    q: Strided<'_>,
    k: Strided<'_>,
    v: Strided<'_>,
    s: Shape<'_>,
    scale: f32,
    out: &mut [f32],
) {
    let d = s.heads * s.head_dim;
    let per_row = s.q_len * d;
    assert_eq!(out.len(), s.rows * per_row, "attention output size");
    let macs = s.rows * s.heads * s.q_len * s.k_len * s.head_dim;
    let shared = SharedOut::new(out);
    threads.run(s.rows, macs >= PARALLEL_MIN_MACS, |r| {
        // SAFETY: row r's outputs are elements r·per_row .. (r+1)·per_row,
        // disjoint between tasks, of `out`, which outlives `run`.
        let o = unsafe { shared.slice(r * per_row, per_row) };
        attend_row(q, k, v, s, scale, r, o);
    });
}

multiversion! {
    /// Every head and query of batch row `r` into `o` (`[q_len, d]`);
    /// the usual head sizes get a register-resident accumulator.
    fn attend_row(q: Strided<'_>, k: Strided<'_>, v: Strided<'_>, s: Shape<'_>, scale: f32, r: usize, o: &mut [f32]) {
        match s.head_dim {
            32 => attend_row_impl::<32>(q, k, v, s, scale, r, o),
            64 => attend_row_impl::<64>(q, k, v, s, scale, r, o),
            128 => attend_row_impl::<128>(q, k, v, s, scale, r, o),
            _ => attend_row_impl::<0>(q, k, v, s, scale, r, o),
        }
    }
}

/// `scores[j] = (q · k_j) · scale` for the keys `j < scores.len()` of row
/// `r` (head columns from `col`), returning their maximum. On AVX-512 and
/// AVX2 an explicit FMA loop and one horizontal sum per key (the
/// compiler's own vectorisation of [`dot_inline`] used 2-lane vectors
/// here); elsewhere [`dot_inline`].
#[inline(always)]
fn scores_of(
    q: &[f32],
    k: Strided<'_>,
    r: usize,
    col: usize,
    scores: &mut [f32],
    scale: f32,
) -> f32 {
    let hd = q.len();
    #[cfg(target_arch = "x86_64")]
    {
        let base = r
            .checked_mul(k.row_stride)
            .and_then(|b| b.checked_add(k.offset + col));
        let last = base.and_then(|b| {
            scores
                .len()
                .saturating_sub(1)
                .checked_mul(k.pos_stride)
                .and_then(|e| e.checked_add(b + hd))
        });
        if let (Some(base), true) = (
            base,
            !scores.is_empty() && last.is_some_and(|l| l <= k.data.len()),
        ) {
            match Isa::detected() {
                // SAFETY: the CPU has the instruction set; every key row
                // read, `base + j·pos_stride .. + hd` for j < len, lies
                // within `k.data` (checked just above).
                Isa::Avx512 if hd.is_multiple_of(16) => unsafe {
                    return scores_avx512(
                        q,
                        k.data.as_ptr().add(base),
                        k.pos_stride,
                        scores,
                        scale,
                    );
                },
                Isa::Avx2 | Isa::Avx512 if hd.is_multiple_of(8) => unsafe {
                    return scores_avx2(q, k.data.as_ptr().add(base), k.pos_stride, scores, scale);
                },
                _ => {}
            }
        }
    }
    let mut max = f32::NEG_INFINITY;
    for (j, sc) in scores.iter_mut().enumerate() {
        *sc = dot_inline(q, k.at(r, j, col, hd)) * scale;
        max = if *sc > max { *sc } else { max };
    }
    max
}

/// [`scores_of`] with 16-lane FMAs; `q.len()` a multiple of 16, key `j` at
/// `k + j·stride`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn scores_avx512(
    q: &[f32],
    k: *const f32,
    stride: usize,
    scores: &mut [f32],
    scale: f32,
) -> f32 {
    use std::arch::x86_64::*;
    let mut max = f32::NEG_INFINITY;
    for (j, sc) in scores.iter_mut().enumerate() {
        let kp = k.add(j * stride);
        let mut acc = _mm512_setzero_ps();
        for c in (0..q.len()).step_by(16) {
            acc = _mm512_fmadd_ps(
                _mm512_loadu_ps(q.as_ptr().add(c)),
                _mm512_loadu_ps(kp.add(c)),
                acc,
            );
        }
        *sc = _mm512_reduce_add_ps(acc) * scale;
        max = if *sc > max { *sc } else { max };
    }
    max
}

/// [`scores_of`] with 8-lane FMAs; `q.len()` a multiple of 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn scores_avx2(
    q: &[f32],
    k: *const f32,
    stride: usize,
    scores: &mut [f32],
    scale: f32,
) -> f32 {
    use std::arch::x86_64::*;
    let mut max = f32::NEG_INFINITY;
    for (j, sc) in scores.iter_mut().enumerate() {
        let kp = k.add(j * stride);
        let mut acc = _mm256_setzero_ps();
        for c in (0..q.len()).step_by(8) {
            acc = _mm256_fmadd_ps(
                _mm256_loadu_ps(q.as_ptr().add(c)),
                _mm256_loadu_ps(kp.add(c)),
                acc,
            );
        }
        let hi = _mm256_extractf128_ps(acc, 1);
        let s4 = _mm_add_ps(_mm256_castps256_ps128(acc), hi);
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        let s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
        *sc = _mm_cvtss_f32(s1) * scale;
        max = if *sc > max { *sc } else { max };
    }
    max
}

/// Keys visible to query `i` of row `r` (causal and key-length masks).
#[inline(always)]
fn visible(s: &Shape<'_>, r: usize, i: usize) -> usize {
    let len_r = s.key_lengths.map_or(s.k_len, |l| l[r].min(s.k_len));
    if s.causal {
        (s.k_len + i + 1).saturating_sub(s.q_len).min(len_r)
    } else {
        len_r
    }
}

/// `scores[j] = exp(scores[j] - max)` over `scores`, returning the sum
/// (vectorised; [`LANES`] partial sums in a fixed order).
#[inline(always)]
fn exp_in_place(scores: &mut [f32], max: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (chunks, rest) = scores.as_chunks_mut::<LANES>();
    for c in chunks {
        for l in 0..LANES {
            c[l] = exp(c[l] - max);
            acc[l] += c[l];
        }
    }
    for (l, v) in rest.iter_mut().enumerate() {
        *v = exp(*v - max);
        acc[l] += *v;
    }
    reduce(acc)
}

/// [`attend_row`] for head size `HD` known at compile time (then `q`, the
/// accumulator and each value row have a constant length and the
/// accumulator stays in registers), or any head size for `HD = 0`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend_row_impl<const HD: usize>(
    q: Strided<'_>,
    k: Strided<'_>,
    v: Strided<'_>,
    s: Shape<'_>,
    scale: f32,
    r: usize,
    o: &mut [f32],
) {
    let hd = if HD > 0 { HD } else { s.head_dim };
    let d = s.heads * hd;
    let mut scores = vec![0.0f32; s.k_len];
    let mut any = vec![0.0f32; if HD > 0 { 0 } else { hd }];
    for i in 0..s.q_len {
        let vis = visible(&s, r, i);
        for h in 0..s.heads {
            let out = &mut o[i * d + h * hd..][..hd];
            if vis == 0 {
                out.fill(0.0);
                continue;
            }
            let qv = q.at(r, i, h * hd, hd);
            let max = scores_of(qv, k, r, h * hd, &mut scores[..vis], scale);
            let inv = 1.0 / exp_in_place(&mut scores[..vis], max);
            if HD > 0 {
                let mut acc = [0.0f32; HD];
                weighted_sum(&mut acc, &scores[..vis], v, r, h * hd, inv, out);
            } else {
                any.fill(0.0);
                weighted_sum(&mut any, &scores[..vis], v, r, h * hd, inv, out);
            }
        }
    }
}

/// `out = inv · Σ_j p_j · v_j` (values of row `r` from column `col`) with
/// the accumulator `acc` (zeroed, `head_dim` long; an array of constant
/// length in [`attend_row_impl`]'s fixed sizes, so it stays in registers).
#[inline(always)]
fn weighted_sum(
    acc: &mut [f32],
    p: &[f32],
    v: Strided<'_>,
    r: usize,
    col: usize,
    inv: f32,
    out: &mut [f32],
) {
    let hd = acc.len();
    for (j, &pj) in p.iter().enumerate() {
        let vv = v.at(r, j, col, hd);
        for c in 0..hd {
            acc[c] = pj.mul_add(vv[c], acc[c]);
        }
    }
    for c in 0..hd {
        out[c] = acc[c] * inv;
    }
}
