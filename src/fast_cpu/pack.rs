//! A linear layer's weight packed for the GEMM micro-kernels.
//!
//! `W` is `[n, k]` (`out_features, in_features`, as PyTorch stores it). The
//! packed form cuts the `n` output columns into panels of [`NR`] = 16 and
//! stores each panel k-major: `panels[p][kk][j] = W[p·16 + j][kk]`, zero for
//! `p·16 + j >= n`. At step `kk` a micro-kernel then loads the 16 weights
//! of its panel as one contiguous vector (one 512-bit or two 256-bit
//! loads) and multiplies them by one broadcast input value: an outer
//! product, with no reduction across vector lanes.

use crate::error::{Error, Result};

/// Output columns per packed panel.
pub const NR: usize = 16;

/// `[n, k]` f32 weights in panels of [`NR`] columns (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct PackedWeight {
    n: usize,
    k: usize,
    /// `[n.div_ceil(NR), k, NR]`.
    panels: Vec<f32>,
}

impl PackedWeight {
    /// Packs `w` (`[n, k]`, row-major).
    ///
    /// Errors: [`Error::Shape`] if `w.len() != n · k` (or the product overflows).
    pub fn pack(w: &[f32], n: usize, k: usize) -> Result<Self> {
        crate::cpu::linear::check_len("pack", "w", w.len(), &[n, k])?;
        let np = n.div_ceil(NR);
        let size = np
            .checked_mul(k)
            .and_then(|s| s.checked_mul(NR))
            .ok_or_else(|| Error::invalid("pack", format!("[{n}, {k}] overflows")))?;
        let mut panels = vec![0.0f32; size];
        for (p, panel) in panels
            .chunks_exact_mut((k * NR).max(1))
            .enumerate()
            .take(np)
        {
            for j in 0..NR.min(n - p * NR) {
                let row = &w[(p * NR + j) * k..][..k];
                for (kk, &v) in row.iter().enumerate() {
                    panel[kk * NR + j] = v;
                }
            }
        }
        Ok(PackedWeight { n, k, panels })
    }

    /// Output columns (`out_features`).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input columns (`in_features`).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of panels, `n.div_ceil(NR)`.
    pub fn panel_count(&self) -> usize {
        self.n.div_ceil(NR)
    }

    /// Panels `p0..p1`, contiguous (`[p1 - p0, k, NR]`).
    pub(crate) fn panels(&self, p0: usize, p1: usize) -> &[f32] {
        &self.panels[p0 * self.k * NR..p1 * self.k * NR]
    }

    /// Row `j` of the unpacked `W` (`[k]`) into `out`.
    ///
    /// Errors: [`Error::InvalidArgument`] for `j >= n`; [`Error::Shape`] if
    /// `out.len() != k`.
    pub fn row_into(&self, j: usize, out: &mut [f32]) -> Result<()> {
        if j >= self.n {
            return Err(Error::invalid("pack", format!("row {j} >= {}", self.n)));
        }
        crate::cpu::linear::check_len("pack", "out", out.len(), &[self.k])?;
        let panel = &self.panels[(j / NR) * self.k * NR..][..self.k * NR];
        for (kk, o) in out.iter_mut().enumerate() {
            *o = panel[kk * NR + j % NR];
        }
        Ok(())
    }

    /// The unpacked `W`, `[n, k]` row-major.
    pub fn unpack(&self) -> Vec<f32> {
        let mut w = vec![0.0f32; self.n * self.k];
        for (j, row) in w.chunks_exact_mut(self.k.max(1)).enumerate().take(self.n) {
            // In range by construction.
            let _ = self.row_into(j, row);
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_unpack_round_trips_with_partial_panels() {
        for (n, k) in [(1, 1), (15, 3), (16, 4), (17, 5), (33, 1), (40, 0), (0, 7)] {
            let w: Vec<f32> = (0..n * k).map(|i| i as f32 - 3.5).collect();
            let p = PackedWeight::pack(&w, n, k).unwrap();
            assert_eq!(p.unpack(), w, "n {n} k {k}");
            assert_eq!(p.panel_count(), n.div_ceil(NR));
        }
        assert!(PackedWeight::pack(&[0.0; 5], 2, 3).is_err());
        let p = PackedWeight::pack(&[1.0; 6], 2, 3).unwrap();
        assert!(p.row_into(2, &mut [0.0; 3]).is_err());
        assert!(p.row_into(1, &mut [0.0; 2]).is_err());
    }
}
