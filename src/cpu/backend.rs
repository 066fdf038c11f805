//! [`Cpu`]: the reference backend. Tensors are host `Vec<f32>` with a shape;
//! every op is the plain reference function of its file in `cpu/`.
//!
//! The storage dtype passed to [`Backend::upload`] is ignored: the reference
//! keeps every tensor in f32, and widening f16 / bf16 weights (as
//! `model::weights::read_safetensors` does) to f32 is exact, so the
//! reference computes with exactly the stored values.

use crate::activation::Activation;
use crate::cpu::activation::apply_in_place;
use crate::cpu::attention::{attention_bshd, AttentionDims, AttentionMask};
use crate::cpu::linear::{check_len, linear_into};
use crate::cpu::{embedding, layer_norm, log_softmax_topk};
use crate::dtype::DType;
use crate::error::{fmt_shape, Error, Result};
use crate::model::backend::{AttnMask, Backend, Cols, TokenMask, TopK};

/// The CPU reference backend (f32, host memory).
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu;

/// A host tensor: row-major f32 data and its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuTensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl CpuTensor {
    /// Wraps `data` as a tensor of `shape`. Errors: [`Error::Shape`] if the
    /// element count differs from the product of `shape`.
    pub fn new(data: Vec<f32>, shape: &[usize]) -> Result<Self> {
        check_len("tensor", "data", data.len(), shape)?;
        Ok(CpuTensor {
            shape: shape.to_vec(),
            data,
        })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements, row-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Consumes the tensor, returning its elements.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Size of the last dimension (1 for a scalar).
    fn last_dim(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }

    /// `(rows, seq, width)` of a 3-D tensor.
    fn dims3(&self, op: &'static str) -> Result<(usize, usize, usize)> {
        dims3(op, &self.shape)
    }
}

/// `(rows, seq, width)` of a 3-D shape.
///
/// Errors: [`Error::Shape`] naming `op` for any other rank.
pub(crate) fn dims3(op: &'static str, shape: &[usize]) -> Result<(usize, usize, usize)> {
    match shape[..] {
        [r, s, w] => Ok((r, s, w)),
        _ => Err(Error::shape(op, "[rows, seq, width]", fmt_shape(shape))),
    }
}

/// `(rows, positions, total)` of a column view of a `[rows, positions,
/// total]` tensor of `shape`: columns `column .. column + width`.
///
/// Errors: [`Error::Shape`] for a non-3-D tensor or a view past its columns.
pub(crate) fn check_view(
    op: &'static str,
    shape: &[usize],
    column: usize,
    width: usize,
) -> Result<(usize, usize, usize)> {
    let (rows, pos, total) = dims3(op, shape)?;
    if column.checked_add(width).is_none_or(|end| end > total) {
        return Err(Error::shape(
            op,
            format!("columns {column}..+{width} within {total}"),
            fmt_shape(shape),
        ));
    }
    Ok((rows, pos, total))
}

/// Checks a `kv_gather` of `rows` (`len` valid positions into a new
/// capacity `cap`) from a cache of `n` rows and `old_cap` positions.
///
/// Errors: as [`Backend::kv_gather`].
pub(crate) fn check_gather(
    n: usize,
    old_cap: usize,
    rows: &[usize],
    len: usize,
    cap: usize,
) -> Result<()> {
    if len > old_cap || len > cap {
        return Err(Error::shape(
            "kv_gather",
            format!("len <= {}", old_cap.min(cap)),
            format!("len {len}"),
        ));
    }
    if let Some(&bad) = rows.iter().find(|&&r| r >= n) {
        return Err(Error::invalid(
            "kv_gather",
            format!("row {bad} >= rows {n}"),
        ));
    }
    Ok(())
}

/// The output shape of [`Backend::linear`] for x of `x_shape` and a weight
/// of `[n, k]`: x's shape with its last dimension `n`.
///
/// Errors: [`Error::Shape`] if x is a scalar or its last dimension is not `k`.
pub(crate) fn linear_shape(x_shape: &[usize], n: usize, k: usize) -> Result<Vec<usize>> {
    match x_shape.split_last() {
        Some((&last, lead)) if last == k => Ok([lead, &[n]].concat()),
        _ => Err(Error::shape(
            "linear",
            format!("x [.., {k}]"),
            fmt_shape(x_shape),
        )),
    }
}

/// Checks the operands of [`Backend::attention`]: q `[rows, q_len, d]`,
/// k and v `[rows, cap, d]` views (`(rows, positions, width)` each),
/// `k_len <= cap`, `d` divisible by `heads`.
///
/// Errors: as [`Backend::attention`].
pub(crate) fn check_attention(
    q: (usize, usize, usize),
    k: (usize, usize, usize),
    v: (usize, usize, usize),
    k_len: usize,
    heads: usize,
) -> Result<()> {
    let (rows, _, d) = q;
    if k.2 != d || v.2 != d || k.0 != rows || v.0 != rows || v.1 != k.1 {
        return Err(Error::shape(
            "attention",
            format!("k and v [{rows}, cap, {d}] (as q)"),
            format!(
                "k [{}, {}, {}], v [{}, {}, {}]",
                k.0, k.1, k.2, v.0, v.1, v.2
            ),
        ));
    }
    if k_len > k.1 {
        return Err(Error::shape(
            "attention",
            format!("k_len <= k_cap {}", k.1),
            format!("k_len {k_len}"),
        ));
    }
    if heads == 0 || !d.is_multiple_of(heads) {
        return Err(Error::invalid(
            "attention",
            format!("d_model {d} not divisible by heads {heads}"),
        ));
    }
    Ok(())
}

/// Checks a [`Backend::kv_write`] of a `[n_rows, t, width]` view into a
/// cache of `(rows, cap, w)` at position `at`.
///
/// Errors: as [`Backend::kv_write`].
pub(crate) fn check_kv_write(
    cache: (usize, usize, usize),
    new: (usize, usize, usize),
    at: usize,
) -> Result<()> {
    let ((rows, cap, w), (n_rows, t, width)) = (cache, new);
    if n_rows != rows || width != w || at.checked_add(t).is_none_or(|end| end > cap) {
        return Err(Error::shape(
            "kv_write",
            format!("new [{rows}, <= {}, {w}]", cap.saturating_sub(at)),
            format!("new [{n_rows}, {t}, {width}]"),
        ));
    }
    Ok(())
}

/// Checks that a LayerNorm residual has x's shape.
///
/// Errors: [`Error::Shape`] naming both shapes.
pub(crate) fn check_residual(x: &[usize], residual: Option<&[usize]>) -> Result<()> {
    match residual {
        Some(r) if r != x => Err(Error::shape(
            "layer_norm",
            format!("residual {}", fmt_shape(x)),
            format!("residual {}", fmt_shape(r)),
        )),
        _ => Ok(()),
    }
}

/// The vocabulary (last dimension) of a logits shape.
///
/// Errors: [`Error::Shape`] for a scalar.
pub(crate) fn logits_vocab(shape: &[usize]) -> Result<usize> {
    shape
        .last()
        .copied()
        .ok_or_else(|| Error::shape("log_softmax_topk", "logits [.., vocab]", fmt_shape(shape)))
}

/// The `[rows, positions, width]` elements of a column view: the tensor's
/// own data when the view is the whole width, else a copy (the reference
/// keeps its attention plain, over contiguous operands).
///
/// Errors: [`Error::Shape`] for a non-3-D tensor or a view past its columns.
fn view_data<'t>(
    op: &'static str,
    v: Cols<'t, CpuTensor>,
) -> Result<(std::borrow::Cow<'t, [f32]>, usize, usize)> {
    let (rows, pos, total) = check_view(op, &v.tensor.shape, v.column, v.width)?;
    if v.column == 0 && v.width == total {
        return Ok((std::borrow::Cow::Borrowed(&v.tensor.data), rows, pos));
    }
    let mut out = Vec::with_capacity(rows * pos * v.width);
    for p in v.tensor.data.chunks_exact(total.max(1)).take(rows * pos) {
        out.extend_from_slice(&p[v.column..v.column + v.width]);
    }
    Ok((std::borrow::Cow::Owned(out), rows, pos))
}

impl Backend for Cpu {
    type Tensor = CpuTensor;
    /// Host key lengths, `[rows]`.
    type Lengths = Vec<usize>;

    fn name(&self) -> &'static str {
        "cpu"
    }

    /// Keeps f32 whatever `dtype` says (see the module docs: widening the
    /// stored f16 / bf16 values to f32 is exact).
    fn upload(&self, data: Vec<f32>, shape: &[usize], _dtype: DType) -> Result<CpuTensor> {
        CpuTensor::new(data, shape)
    }

    fn download(&self, t: &CpuTensor) -> Result<Vec<f32>> {
        Ok(t.data.clone())
    }

    fn shape<'t>(&self, t: &'t CpuTensor) -> &'t [usize] {
        &t.shape
    }

    fn key_lengths(&self, lengths: &[usize]) -> Result<Vec<usize>> {
        Ok(lengths.to_vec())
    }

    fn embedding(
        &self,
        ids: &[u32],
        rows: usize,
        seq: usize,
        table: &CpuTensor,
        scale: f32,
        start: usize,
    ) -> Result<CpuTensor> {
        let [vocab, d] = table.shape[..] else {
            return Err(Error::shape(
                "embedding",
                "table [vocab, d_model]",
                fmt_shape(&table.shape),
            ));
        };
        let data = embedding::embedding(ids, rows, seq, &table.data, vocab, d, scale, start)?;
        CpuTensor::new(data, &[rows, seq, d])
    }

    fn linear(
        &self,
        x: &CpuTensor,
        w: &CpuTensor,
        b: Option<&CpuTensor>,
        act: Option<Activation>,
    ) -> Result<CpuTensor> {
        let [n, k] = w.shape[..] else {
            return Err(Error::shape("linear", "w [n, k]", fmt_shape(&w.shape)));
        };
        let shape = linear_shape(&x.shape, n, k)?;
        let m = x.data.len() / k.max(1);
        let mut y = vec![0.0f32; m * n];
        linear_into(
            &x.data,
            &w.data,
            b.map(|b| b.data.as_slice()),
            m,
            n,
            k,
            &mut y,
        )?;
        if let Some(act) = act {
            apply_in_place(act, &mut y);
        }
        CpuTensor::new(y, &shape)
    }

    fn attention(
        &self,
        q: Cols<'_, CpuTensor>,
        k: Cols<'_, CpuTensor>,
        v: Cols<'_, CpuTensor>,
        k_len: usize,
        heads: usize,
        scale: f32,
        mask: AttnMask<'_, Vec<usize>>,
    ) -> Result<CpuTensor> {
        let d = q.width;
        let (q_data, rows, q_len) = view_data("attention", q)?;
        let (k_data, k_rows, k_cap) = view_data("attention", k)?;
        let (v_data, v_rows, v_cap) = view_data("attention", v)?;
        check_attention(
            (rows, q_len, d),
            (k_rows, k_cap, k.width),
            (v_rows, v_cap, v.width),
            k_len,
            heads,
        )?;
        let dims = AttentionDims {
            batch: rows,
            heads,
            q_len,
            k_len,
            head_dim: d / heads,
        };
        let m = AttentionMask {
            key_lengths: mask.key_lengths.map(Vec::as_slice),
            causal: mask.causal,
            ..Default::default()
        };
        let out = attention_bshd(&q_data, &k_data, &v_data, dims, k_cap, scale, &m)?;
        CpuTensor::new(out, &[rows, q_len, d])
    }

    fn layer_norm(
        &self,
        x: &CpuTensor,
        residual: Option<&CpuTensor>,
        gamma: &CpuTensor,
        beta: &CpuTensor,
        eps: f32,
    ) -> Result<CpuTensor> {
        check_residual(&x.shape, residual.map(|r| r.shape.as_slice()))?;
        let y = layer_norm::layer_norm(
            &x.data,
            residual.map(|r| r.data.as_slice()),
            &gamma.data,
            &beta.data,
            x.last_dim(),
            eps,
        )?;
        CpuTensor::new(y, &x.shape)
    }

    fn log_softmax_topk(&self, logits: &CpuTensor, mask: &TokenMask, k: usize) -> Result<TopK> {
        let vocab = logits_vocab(&logits.shape)?;
        let rows = logits.data.len().checked_div(vocab).unwrap_or(0);
        log_softmax_topk::log_softmax_topk(&logits.data, rows, vocab, mask, k)
    }

    fn kv_alloc(&self, rows: usize, cap: usize, width: usize) -> Result<CpuTensor> {
        CpuTensor::new(vec![0.0; rows * cap * width], &[rows, cap, width])
    }

    fn kv_write(&self, cache: &mut CpuTensor, new: Cols<'_, CpuTensor>, at: usize) -> Result<()> {
        let (rows, cap, w) = cache.dims3("kv_write")?;
        let (data, n_rows, t) = view_data("kv_write", new)?;
        check_kv_write((rows, cap, w), (n_rows, t, new.width), at)?;
        for r in 0..rows {
            let dst = &mut cache.data[(r * cap + at) * w..][..t * w];
            dst.copy_from_slice(&data[r * t * w..][..t * w]);
        }
        Ok(())
    }

    fn kv_gather(
        &self,
        cache: &CpuTensor,
        rows: &[usize],
        len: usize,
        cap: usize,
    ) -> Result<CpuTensor> {
        let (n, old_cap, w) = cache.dims3("kv_gather")?;
        check_gather(n, old_cap, rows, len, cap)?;
        let mut out = vec![0.0f32; rows.len() * cap * w];
        if cap * w > 0 {
            for (dst, &r) in out.chunks_exact_mut(cap * w).zip(rows) {
                dst[..len * w].copy_from_slice(&cache.data[r * old_cap * w..][..len * w]);
            }
        }
        CpuTensor::new(out, &[rows.len(), cap, w])
    }
}
