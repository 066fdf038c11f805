//! Token embedding and sinusoidal positions, as Marian (Hugging Face
//! `MarianSinusoidalPositionalEmbedding`) computes them:
//! `h[s] = E[id_s] · embed_scale + P[start + s]`, where `embed_scale` is
//! `sqrt(d_model)` when the config says `scale_embedding` and 1 otherwise.
//!
//! The position table is not interleaved: for position `p` and `i < ⌈d/2⌉`,
//! `angle = p / 10000^(2i/d)`; entry `i` is `sin(angle)` and entry
//! `⌈d/2⌉ + i` is `cos(angle)` (first half sin, second half cos; "Attention
//! Is All You Need" §3.5 with the Marian layout). Angles are computed in f64
//! (as the reference's numpy table is) and rounded to f32.

use crate::cpu::linear::check_len;
use crate::error::{Error, Result};

/// The sinusoidal table for positions `start .. start + len`, `[len, d_model]` f32.
pub fn sinusoidal_positions(start: usize, len: usize, d_model: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; len * d_model];
    if d_model == 0 {
        return out;
    }
    let n_sin = d_model.div_ceil(2);
    for (row, p) in out.chunks_exact_mut(d_model).zip(start..) {
        let p = p as f64;
        for (j, out_j) in row.iter_mut().enumerate() {
            // Entry j of the reference table uses exponent 2*(j/2)/d; sin of
            // the even j fill the first half, cos of the odd j the second.
            let (i, is_sin) = if j < n_sin {
                (2 * j, true)
            } else {
                (2 * (j - n_sin) + 1, false)
            };
            let angle = p / 10000f64.powf((2 * (i / 2)) as f64 / d_model as f64);
            *out_j = if is_sin { angle.sin() } else { angle.cos() } as f32;
        }
    }
    out
}

/// Gathers token rows of `table` (`[vocab, d_model]`) scaled by `scale`:
/// returns `[ids.len(), d_model]`.
///
/// Errors: [`Error::Shape`] if `table` is not `[vocab, d_model]`;
/// [`Error::InvalidArgument`] for an id `>= vocab`.
pub fn embed_tokens(
    ids: &[u32],
    table: &[f32],
    vocab: usize,
    d_model: usize,
    scale: f32,
) -> Result<Vec<f32>> {
    check_len("embedding", "table", table.len(), &[vocab, d_model])?;
    let mut out = Vec::with_capacity(ids.len() * d_model);
    for &id in ids {
        let i = id as usize;
        if i >= vocab {
            return Err(Error::invalid(
                "embedding",
                format!("token id {id} >= vocab_size {vocab}"),
            ));
        }
        out.extend(
            table[i * d_model..(i + 1) * d_model]
                .iter()
                .map(|&v| v * scale),
        );
    }
    Ok(out)
}

/// Token embedding plus positions for a `[batch, seq]` block of ids:
/// `out[b, s] = table[ids[b, s]] · scale + P[start + s]`. Returns
/// `[batch, seq, d_model]`. Every row of the batch starts at position `start`
/// (the KV-cache length when decoding incrementally).
///
/// Errors: as [`embed_tokens`], plus [`Error::Shape`] if `ids.len() != batch * seq`.
#[allow(clippy::too_many_arguments)] // slices + explicit dims, the oracle's calling convention
pub fn embedding(
    ids: &[u32],
    batch: usize,
    seq: usize,
    table: &[f32],
    vocab: usize,
    d_model: usize,
    scale: f32,
    start: usize,
) -> Result<Vec<f32>> {
    check_len("embedding", "ids", ids.len(), &[batch, seq])?;
    let mut out = embed_tokens(ids, table, vocab, d_model, scale)?;
    let pos = sinusoidal_positions(start, seq, d_model);
    if d_model > 0 && seq > 0 {
        for block in out.chunks_exact_mut(seq * d_model) {
            for (o, p) in block.iter_mut().zip(&pos) {
                *o += p;
            }
        }
    }
    Ok(out)
}
