//! The decoder's self-attention KV cache: per layer, keys and values of every
//! decoded position, `[rows, capacity, d_model]` on the backend.
//!
//! Appending writes only the new positions in place (the buffer is allocated
//! with room for the whole generation up front, and grows by doubling when a
//! caller decodes further). Beam search reorders rows by each step's
//! surviving beam indices, copying only the valid positions.

use crate::error::Result;
use crate::model::backend::{Backend, Cols};

/// Self-attention keys and values of every decoder layer.
pub struct KvCache<T> {
    /// Per layer, keys `[rows, cap, d_model]`.
    pub(crate) k: Vec<T>,
    /// Per layer, values `[rows, cap, d_model]`.
    pub(crate) v: Vec<T>,
    /// Valid positions (the number of tokens decoded so far).
    pub(crate) len: usize,
    /// Allocated positions.
    pub(crate) cap: usize,
    /// Batch rows (sentences × beams).
    pub(crate) rows: usize,
    /// Width of one position (d_model).
    pub(crate) width: usize,
}

impl<T> KvCache<T> {
    /// An empty cache for `layers` layers of `rows` rows with room for `cap` positions.
    pub fn new<B: Backend<Tensor = T>>(
        backend: &B,
        layers: usize,
        rows: usize,
        cap: usize,
        width: usize,
    ) -> Result<Self> {
        let cap = cap.max(1);
        let mut k = Vec::with_capacity(layers);
        let mut v = Vec::with_capacity(layers);
        for _ in 0..layers {
            k.push(backend.kv_alloc(rows, cap, width)?);
            v.push(backend.kv_alloc(rows, cap, width)?);
        }
        Ok(KvCache {
            k,
            v,
            len: 0,
            cap,
            rows,
            width,
        })
    }

    /// Number of decoded positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Width of one cached position (d_model).
    pub fn width(&self) -> usize {
        self.width
    }

    /// True before the first token.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Batch rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Makes room for `extra` more positions (doubling), copying the valid ones.
    pub fn reserve<B: Backend<Tensor = T>>(&mut self, backend: &B, extra: usize) -> Result<()> {
        let need = self.len + extra;
        if need <= self.cap {
            return Ok(());
        }
        let cap = need.max(self.cap * 2);
        let identity: Vec<usize> = (0..self.rows).collect();
        for t in self.k.iter_mut().chain(self.v.iter_mut()) {
            *t = backend.kv_gather(t, &identity, self.len, cap)?;
        }
        self.cap = cap;
        Ok(())
    }

    /// Writes layer `layer`'s new keys and values (`[rows, t, d_model]`
    /// views: the k and v columns of the fused QKV output) at position
    /// `len`; [`KvCache::advance`] commits them after the last layer.
    pub fn write<B: Backend<Tensor = T>>(
        &mut self,
        backend: &B,
        layer: usize,
        k: Cols<'_, T>,
        v: Cols<'_, T>,
    ) -> Result<()> {
        let (kc, vc) = match (self.k.get_mut(layer), self.v.get_mut(layer)) {
            (Some(kc), Some(vc)) => (kc, vc),
            _ => {
                return Err(crate::Error::invalid(
                    "kv_cache",
                    format!("layer {layer} out of range"),
                ))
            }
        };
        backend.kv_write(kc, k, self.len)?;
        backend.kv_write(vc, v, self.len)
    }

    /// Commits `t` positions written by [`KvCache::write`] to every layer.
    pub fn advance(&mut self, t: usize) {
        self.len += t;
    }

    /// Keeps, in order, the rows `rows` of the cache (beam reorder, or
    /// dropping finished sentences). An identity permutation copies nothing.
    pub fn reorder<B: Backend<Tensor = T>>(&mut self, backend: &B, rows: &[usize]) -> Result<()> {
        if rows.len() == self.rows && rows.iter().enumerate().all(|(i, &r)| i == r) {
            return Ok(());
        }
        for t in self.k.iter_mut().chain(self.v.iter_mut()) {
            backend.kv_reorder(t, rows, self.len)?;
        }
        self.rows = rows.len();
        Ok(())
    }
}
