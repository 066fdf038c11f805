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

use super::isa::multiversion;
use super::threads::{SharedOut, Threads};
use super::vmath::{dot_inline, exp};

/// Below this many multiply-adds (`rows·heads·q_len·k_len·head_dim`) the
/// call runs on one thread.
const PARALLEL_MIN_MACS: usize = 1 << 20;

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
    /// Every head and query of batch row `r` into `o` (`[q_len, d]`).
    fn attend_row(q: Strided<'_>, k: Strided<'_>, v: Strided<'_>, s: Shape<'_>, scale: f32, r: usize, o: &mut [f32]) {
        let hd = s.head_dim;
        let d = s.heads * hd;
        let len_r = s.key_lengths.map_or(s.k_len, |l| l[r].min(s.k_len));
        let mut scores = vec![0.0f32; s.k_len];
        let mut acc = vec![0.0f32; hd];
        for i in 0..s.q_len {
            let visible = if s.causal {
                (s.k_len + i + 1).saturating_sub(s.q_len).min(len_r)
            } else {
                len_r
            };
            for h in 0..s.heads {
                let out = &mut o[i * d + h * hd..][..hd];
                if visible == 0 {
                    out.fill(0.0);
                    continue;
                }
                let qv = q.at(r, i, h * hd, hd);
                let mut max = f32::NEG_INFINITY;
                for (j, sc) in scores[..visible].iter_mut().enumerate() {
                    *sc = dot_inline(qv, k.at(r, j, h * hd, hd)) * scale;
                    max = max.max(*sc);
                }
                acc.fill(0.0);
                let mut sum = 0.0f32;
                for (j, &sc) in scores[..visible].iter().enumerate() {
                    let p = exp(sc - max);
                    sum += p;
                    for (a, &x) in acc.iter_mut().zip(v.at(r, j, h * hd, hd)) {
                        *a = p.mul_add(x, *a);
                    }
                }
                let inv = 1.0 / sum;
                for (o, &a) in out.iter_mut().zip(&acc) {
                    *o = a * inv;
                }
            }
        }
    }
}
