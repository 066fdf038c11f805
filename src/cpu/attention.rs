//! Scaled dot-product attention (Vaswani et al., 2017, eq. 1):
//! `softmax(Q·Kᵀ·scale + mask)·V` per batch row and head, in f32.
//!
//! Masks: key padding (per-row valid lengths for right padding), a boolean
//! mask per query and key, causal (a query at absolute position `p` sees keys `0..=p`,
//! where the `q_len` queries are the *last* `q_len` positions of the `k_len`
//! keys, so that decoding with a KV cache of `k_len - q_len` tokens works),
//! and an optional additive mask as Hugging Face builds it. A masked score is
//! `-inf`; a query row whose keys are all masked yields exactly 0, never NaN.

use crate::cpu::linear::check_len;
use crate::cpu::softmax::softmax_in_place;
use crate::error::{Error, Result};

/// Sizes of one attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionDims {
    /// Batch rows (sentences, or sentences × beams).
    pub batch: usize,
    /// Attention heads.
    pub heads: usize,
    /// Query positions.
    pub q_len: usize,
    /// Key / value positions (for causal masking, the queries are the last
    /// `q_len` of these).
    pub k_len: usize,
    /// Size of one head (`d_model / heads`).
    pub head_dim: usize,
}

/// Which keys each query may see. `Default` masks nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttentionMask<'a> {
    /// `[batch, q_len, k_len]`: `true` where query `i` may attend key `j`
    /// (a boolean mask, broadcast over heads).
    pub allowed: Option<&'a [bool]>,
    /// `[batch]`: number of real keys of each row (right padding); keys at
    /// `>= key_lengths[b]` are masked.
    pub key_lengths: Option<&'a [usize]>,
    /// `[batch, q_len, k_len]` additive mask (Hugging Face style), broadcast
    /// over heads. An entry `<= f32::MIN` (the value Hugging Face writes for
    /// a masked key, or `-inf`, or the sum of two such masks) masks the key;
    /// other entries are added to the score.
    pub additive: Option<&'a [f32]>,
    /// Query `i` (absolute position `k_len - q_len + i`) sees keys `0..=` that position.
    pub causal: bool,
}

/// Attention over `[batch, heads, seq, head_dim]` tensors (row-major).
///
/// - `q`: `[batch, heads, q_len, head_dim]`; `k`, `v`: `[batch, heads, k_len, head_dim]`.
/// - `scale`: multiplies `Q·Kᵀ` (`head_dim^-0.5` in Marian).
///
/// Returns `[batch, heads, q_len, head_dim]`. Errors: [`Error::Shape`] on any
/// length that disagrees with `dims`.
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    dims: AttentionDims,
    scale: f32,
    mask: &AttentionMask<'_>,
) -> Result<Vec<f32>> {
    let AttentionDims {
        batch,
        heads,
        q_len,
        k_len,
        head_dim,
    } = dims;
    check_len("attention", "q", q.len(), &[batch, heads, q_len, head_dim])?;
    check_len("attention", "k", k.len(), &[batch, heads, k_len, head_dim])?;
    check_len("attention", "v", v.len(), &[batch, heads, k_len, head_dim])?;
    let q_layout = Layout {
        batch: heads * q_len * head_dim,
        head: q_len * head_dim,
        pos: head_dim,
    };
    let kv_layout = Layout {
        batch: heads * k_len * head_dim,
        head: k_len * head_dim,
        pos: head_dim,
    };
    let mut out = vec![0.0f32; q.len()];
    attend(q, k, v, &mut out, dims, scale, mask, q_layout, kv_layout)?;
    Ok(out)
}

/// Attention over the model's layout `[batch, seq, heads · head_dim]`, with
/// keys and values stored in a buffer of `k_cap >= k_len` positions per row
/// (the KV cache); positions `k_len..k_cap` are ignored.
///
/// - `q`: `[batch, q_len, heads·head_dim]`; `k`, `v`: `[batch, k_cap, heads·head_dim]`.
///
/// Returns `[batch, q_len, heads·head_dim]`. Errors: [`Error::Shape`] on a
/// length mismatch or `k_len > k_cap`.
pub fn attention_bshd(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    dims: AttentionDims,
    k_cap: usize,
    scale: f32,
    mask: &AttentionMask<'_>,
) -> Result<Vec<f32>> {
    let AttentionDims {
        batch,
        heads,
        q_len,
        k_len,
        head_dim,
    } = dims;
    let d = heads * head_dim;
    if k_len > k_cap {
        return Err(Error::shape(
            "attention",
            format!("k_len <= k_cap {k_cap}"),
            format!("k_len {k_len}"),
        ));
    }
    check_len("attention", "q", q.len(), &[batch, q_len, d])?;
    check_len("attention", "k", k.len(), &[batch, k_cap, d])?;
    check_len("attention", "v", v.len(), &[batch, k_cap, d])?;
    let q_layout = Layout {
        batch: q_len * d,
        head: head_dim,
        pos: d,
    };
    let kv_layout = Layout {
        batch: k_cap * d,
        head: head_dim,
        pos: d,
    };
    let mut out = vec![0.0f32; q.len()];
    attend(q, k, v, &mut out, dims, scale, mask, q_layout, kv_layout)?;
    Ok(out)
}

/// Element strides of a `(batch, head, position)` index; the head_dim stride is 1.
#[derive(Clone, Copy)]
struct Layout {
    batch: usize,
    head: usize,
    pos: usize,
}

impl Layout {
    fn at(self, b: usize, h: usize, p: usize) -> usize {
        b * self.batch + h * self.head + p * self.pos
    }
}

#[allow(clippy::too_many_arguments)] // private core shared by the two public layouts
fn attend(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    dims: AttentionDims,
    scale: f32,
    mask: &AttentionMask<'_>,
    ql: Layout,
    kvl: Layout,
) -> Result<()> {
    let AttentionDims {
        batch,
        heads,
        q_len,
        k_len,
        head_dim,
    } = dims;
    if let Some(m) = mask.allowed {
        check_len("attention", "allowed mask", m.len(), &[batch, q_len, k_len])?;
    }
    if let Some(l) = mask.key_lengths {
        check_len("attention", "key_lengths", l.len(), &[batch])?;
    }
    if let Some(a) = mask.additive {
        check_len(
            "attention",
            "additive mask",
            a.len(),
            &[batch, q_len, k_len],
        )?;
    }
    let mut scores = vec![0.0f32; k_len];
    for b in 0..batch {
        let len_b = mask.key_lengths.map_or(k_len, |l| l[b].min(k_len));
        for i in 0..q_len {
            // Absolute position of query i: the queries are the last q_len keys.
            let visible = if mask.causal {
                (k_len + i + 1).saturating_sub(q_len).min(len_b)
            } else {
                len_b
            };
            for h in 0..heads {
                let qi = &q[ql.at(b, h, i)..][..head_dim];
                let mut any = false;
                for (j, s) in scores.iter_mut().enumerate() {
                    let mut keep = j < visible;
                    if let Some(m) = mask.allowed {
                        keep &= m[(b * q_len + i) * k_len + j];
                    }
                    let mut add = 0.0f32;
                    if let Some(a) = mask.additive {
                        add = a[(b * q_len + i) * k_len + j];
                        keep &= add > f32::MIN;
                    }
                    *s = if keep {
                        any = true;
                        let kj = &k[kvl.at(b, h, j)..][..head_dim];
                        qi.iter().zip(kj).map(|(x, y)| x * y).sum::<f32>() * scale + add
                    } else {
                        f32::NEG_INFINITY
                    };
                }
                let o = &mut out[ql.at(b, h, i)..][..head_dim];
                o.fill(0.0);
                if !any {
                    continue; // every key masked: the output row is exactly 0
                }
                softmax_in_place(&mut scores);
                for (j, &p) in scores.iter().enumerate() {
                    if p == 0.0 {
                        continue;
                    }
                    let vj = &v[kvl.at(b, h, j)..][..head_dim];
                    for (oo, vv) in o.iter_mut().zip(vj) {
                        *oo += p * vv;
                    }
                }
            }
        }
    }
    Ok(())
}
