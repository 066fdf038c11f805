//! [`FastCpu`]: the model's [`Backend`] on the host, built for speed. The
//! same functions as the reference backend ([`crate::cpu::Cpu`]), computed
//! with packed FMA GEMMs ([`super::gemm`]), strided vectorised attention
//! ([`super::attention`]), one-pass scoring ([`super::scoring`]), f32
//! vectorised LayerNorm and activations ([`super::vmath`]), a persistent
//! worker pool ([`super::threads`]) and an in-place KV-cache reorder that
//! copies only the rows that move.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, OnceLock};

use super::attention::{self, Shape, Strided};
use super::gemm::gemm_new;
use super::isa::Isa;
use super::pack::PackedWeight;
use super::scoring;
use super::threads::{SharedOut, Threads};
use super::vmath::layer_norm_row;
use crate::activation::Activation;
use crate::cpu::backend::{
    check_attention, check_gather, check_kv_write, check_residual, check_view, dims3, linear_shape,
    logits_vocab,
};
use crate::cpu::embedding;
use crate::cpu::linear::check_len;
use crate::dtype::DType;
use crate::error::{fmt_shape, Error, Result};
use crate::model::backend::{AttnMask, Backend, Cols, TokenMask, TopK};

/// The fast CPU backend (f32, host memory). Cheap to clone: clones share
/// the worker pool and the spare KV buffer.
#[derive(Clone, Debug)]
pub struct FastCpu {
    isa: Isa,
    threads: Arc<Threads>,
    /// The spare buffer of [`Backend::kv_reorder`] (staged source rows, or
    /// the next swapped-in cache), reused across calls.
    spare: Arc<Mutex<Vec<f32>>>,
}

impl FastCpu {
    /// A backend with `threads` worker threads (`0`: the machine's available
    /// parallelism, read once) and the best instruction set of this CPU.
    ///
    /// Errors: [`Error::InvalidArgument`] if the threads cannot be started.
    pub fn new(threads: usize) -> Result<Self> {
        Ok(FastCpu {
            isa: Isa::detected(),
            threads: Arc::new(Threads::new(threads)?),
            spare: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Threads doing the work.
    pub fn threads(&self) -> usize {
        self.threads.count()
    }

    /// The instruction set the kernels run with.
    pub fn isa(&self) -> Isa {
        self.isa
    }
}

/// A host tensor of [`FastCpu`]: f32 elements and a shape. A linear
/// layer's weight is held packed ([`PackedWeight`]); any 2-D tensor used as
/// a weight is packed once, on first use, and kept (the tied output
/// projection is the embedding table).
#[derive(Debug)]
pub struct FastTensor {
    shape: Vec<usize>,
    /// Row-major elements; empty for a weight uploaded packed.
    data: Vec<f32>,
    packed: OnceLock<PackedWeight>,
}

impl FastTensor {
    /// Wraps `data` as a tensor of `shape`. Errors: [`Error::Shape`] if the
    /// element count differs from the product of `shape`.
    pub fn new(data: Vec<f32>, shape: &[usize]) -> Result<Self> {
        check_len("tensor", "data", data.len(), shape)?;
        Ok(FastTensor {
            shape: shape.to_vec(),
            data,
            packed: OnceLock::new(),
        })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements, row-major (unpacked if the tensor is held packed).
    pub fn data(&self) -> Cow<'_, [f32]> {
        match self.packed.get() {
            Some(p) if self.data.is_empty() && !self.shape.contains(&0) => Cow::Owned(p.unpack()),
            _ => Cow::Borrowed(&self.data),
        }
    }

    /// The tensor as a packed `[n, k]` weight (packed now if it is not yet).
    ///
    /// Errors: [`Error::Shape`] if the tensor is not 2-D.
    fn packed(&self) -> Result<&PackedWeight> {
        if let Some(p) = self.packed.get() {
            return Ok(p);
        }
        let [n, k] = self.shape[..] else {
            return Err(Error::shape("linear", "w [n, k]", fmt_shape(&self.shape)));
        };
        let p = PackedWeight::pack(&self.data, n, k)?;
        Ok(self.packed.get_or_init(|| p))
    }

    fn last_dim(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }
}

/// The strided operand of a column view (checked against its tensor).
fn strided<'t>(op: &'static str, v: Cols<'t, FastTensor>) -> Result<(Strided<'t>, usize, usize)> {
    let (rows, pos, total) = check_view(op, &v.tensor.shape, v.column, v.width)?;
    Ok((
        Strided {
            data: &v.tensor.data,
            offset: v.column,
            row_stride: pos * total,
            pos_stride: total,
        },
        rows,
        pos,
    ))
}

impl Backend for FastCpu {
    type Tensor = FastTensor;
    /// Host key lengths, `[rows]`.
    type Lengths = Vec<usize>;

    fn name(&self) -> &'static str {
        "fast-cpu"
    }

    /// Keeps f32 whatever `dtype` says (widening f16 / bf16 is exact).
    fn upload(&self, data: Vec<f32>, shape: &[usize], _dtype: DType) -> Result<FastTensor> {
        FastTensor::new(data, shape)
    }

    /// Packs a 2-D weight at load and keeps only the packed form.
    fn upload_weight(&self, data: Vec<f32>, shape: &[usize], dtype: DType) -> Result<FastTensor> {
        let t = self.upload(data, shape, dtype)?;
        let [n, k] = shape[..] else {
            return Ok(t);
        };
        let p = PackedWeight::pack(&t.data, n, k)?;
        let packed = OnceLock::new();
        let _ = packed.set(p);
        Ok(FastTensor {
            shape: t.shape,
            data: Vec::new(),
            packed,
        })
    }

    fn download(&self, t: &FastTensor) -> Result<Vec<f32>> {
        Ok(t.data().into_owned())
    }

    fn shape<'t>(&self, t: &'t FastTensor) -> &'t [usize] {
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
        table: &FastTensor,
        scale: f32,
        start: usize,
    ) -> Result<FastTensor> {
        let [vocab, d] = table.shape[..] else {
            return Err(Error::shape(
                "embedding",
                "table [vocab, d_model]",
                fmt_shape(&table.shape),
            ));
        };
        let data = embedding::embedding(ids, rows, seq, &table.data(), vocab, d, scale, start)?;
        FastTensor::new(data, &[rows, seq, d])
    }

    fn linear(
        &self,
        x: &FastTensor,
        w: &FastTensor,
        b: Option<&FastTensor>,
        act: Option<Activation>,
    ) -> Result<FastTensor> {
        let p = w.packed()?;
        let k = p.k();
        let shape = linear_shape(&x.shape, p.n(), k)?;
        let m = x.data.len().checked_div(k).unwrap_or(0);
        let bias = b.map(|b| b.data());
        let y = gemm_new(self.isa, &self.threads, &x.data, m, p, bias.as_deref(), act)?;
        FastTensor::new(y, &shape)
    }

    fn attention(
        &self,
        q: Cols<'_, FastTensor>,
        k: Cols<'_, FastTensor>,
        v: Cols<'_, FastTensor>,
        k_len: usize,
        heads: usize,
        scale: f32,
        mask: AttnMask<'_, Vec<usize>>,
    ) -> Result<FastTensor> {
        let d = q.width;
        let (qs, rows, q_len) = strided("attention", q)?;
        let (ks, k_rows, k_cap) = strided("attention", k)?;
        let (vs, v_rows, v_cap) = strided("attention", v)?;
        check_attention(
            (rows, q_len, d),
            (k_rows, k_cap, k.width),
            (v_rows, v_cap, v.width),
            k_len,
            heads,
        )?;
        if let Some(l) = mask.key_lengths {
            check_len("attention", "key_lengths", l.len(), &[rows])?;
        }
        let mut out = vec![0.0f32; rows * q_len * d];
        let shape = Shape {
            rows,
            q_len,
            k_len,
            heads,
            head_dim: d / heads,
            key_lengths: mask.key_lengths.map(Vec::as_slice),
            causal: mask.causal,
        };
        attention::attention(&self.threads, qs, ks, vs, shape, scale, &mut out);
        FastTensor::new(out, &[rows, q_len, d])
    }

    fn layer_norm(
        &self,
        x: &FastTensor,
        residual: Option<&FastTensor>,
        gamma: &FastTensor,
        beta: &FastTensor,
        eps: f32,
    ) -> Result<FastTensor> {
        check_residual(&x.shape, residual.map(|r| r.shape.as_slice()))?;
        let n = x.last_dim();
        if n == 0 {
            return Err(Error::shape("layer_norm", "hidden > 0", "hidden 0"));
        }
        let (gamma, beta) = (gamma.data(), beta.data());
        check_len("layer_norm", "gamma", gamma.len(), &[n])?;
        check_len("layer_norm", "beta", beta.len(), &[n])?;
        let mut y = x.data.clone();
        let residual = residual.map(|r| r.data.as_slice());
        for (i, row) in y.chunks_exact_mut(n).enumerate() {
            let r = residual.map(|r| &r[i * n..][..n]);
            layer_norm_row(row, r, &gamma, &beta, eps);
        }
        FastTensor::new(y, &x.shape)
    }

    fn log_softmax_topk(&self, logits: &FastTensor, mask: &TokenMask, k: usize) -> Result<TopK> {
        let vocab = logits_vocab(&logits.shape)?;
        let rows = logits.data.len().checked_div(vocab).unwrap_or(0);
        scoring::log_softmax_topk(&self.threads, &logits.data, rows, vocab, mask, k)
    }

    fn kv_alloc(&self, rows: usize, cap: usize, width: usize) -> Result<FastTensor> {
        FastTensor::new(vec![0.0; rows * cap * width], &[rows, cap, width])
    }

    fn kv_write(&self, cache: &mut FastTensor, new: Cols<'_, FastTensor>, at: usize) -> Result<()> {
        let (rows, cap, w) = dims3("kv_write", &cache.shape)?;
        let (src, n_rows, t) = strided("kv_write", new)?;
        check_kv_write((rows, cap, w), (n_rows, t, new.width), at)?;
        for r in 0..rows {
            for p in 0..t {
                let dst = &mut cache.data[(r * cap + at + p) * w..][..w];
                dst.copy_from_slice(src.at(r, p, 0, w));
            }
        }
        Ok(())
    }

    fn kv_gather(
        &self,
        cache: &FastTensor,
        rows: &[usize],
        len: usize,
        cap: usize,
    ) -> Result<FastTensor> {
        let (n, old_cap, w) = dims3("kv_gather", &cache.shape)?;
        check_gather(n, old_cap, rows, len, cap)?;
        let mut out = vec![0.0f32; rows.len() * cap * w];
        copy_rows(
            &self.threads,
            &cache.data,
            old_cap * w,
            rows,
            len * w,
            &mut out,
            cap * w,
        );
        FastTensor::new(out, &[rows.len(), cap, w])
    }

    /// Copies only the `len` valid positions, with no allocation in a beam
    /// step, whichever of two ways copies less: in place, where rows that
    /// keep their place (`rows[i] == i`, common in a beam step) are not
    /// touched and a source row that is itself overwritten is first staged
    /// in the backend's spare buffer; or every row once into the spare
    /// buffer, which is then swapped in (the old buffer becomes the spare).
    /// Fewer rows (finished sentences dropped) shrink the buffer.
    fn kv_reorder(&self, cache: &mut FastTensor, rows: &[usize], len: usize) -> Result<()> {
        let (n, cap, w) = dims3("kv_reorder", &cache.shape)?;
        check_gather(n, cap, rows, len, cap)?;
        let m = rows.len();
        let (stride, valid) = (cap * w, len * w);
        if m > n {
            // More rows than before: a gather into a new buffer.
            *cache = self.kv_gather(cache, rows, len, cap)?;
            return Ok(());
        }
        // A source is staged if it is read by another row and overwritten.
        let rewritten = |r: usize| r < m && rows[r] != r;
        let mut staged: Vec<usize> = rows
            .iter()
            .enumerate()
            .filter(|&(i, &src)| src != i && rewritten(src))
            .map(|(_, &src)| src)
            .collect();
        staged.sort_unstable();
        staged.dedup();
        let mut spare = self
            .spare
            .lock()
            .map_err(|_| Error::invalid("kv_reorder", "spare buffer poisoned by a panic"))?;
        let moved = rows
            .iter()
            .enumerate()
            .filter(|&(i, &src)| src != i)
            .count();
        if moved + staged.len() >= m {
            // Cheaper to write every row once into the spare and swap it in.
            if spare.len() != m * stride {
                spare.resize(m * stride, 0.0);
            }
            copy_rows(
                &self.threads,
                &cache.data,
                stride,
                rows,
                valid,
                &mut spare,
                stride,
            );
            std::mem::swap(&mut cache.data, &mut spare);
            cache.shape = vec![m, cap, w];
            return Ok(());
        }
        let need = staged.len() * valid;
        if spare.len() < need {
            spare.resize(need, 0.0);
        }
        for (slot, &src) in staged.iter().enumerate() {
            spare[slot * valid..][..valid].copy_from_slice(&cache.data[src * stride..][..valid]);
        }
        for (i, &src) in rows.iter().enumerate() {
            if src == i || valid == 0 {
                continue;
            }
            match staged.binary_search(&src) {
                Ok(slot) => cache.data[i * stride..][..valid]
                    .copy_from_slice(&spare[slot * valid..][..valid]),
                Err(_) => cache
                    .data
                    .copy_within(src * stride..src * stride + valid, i * stride),
            }
        }
        cache.data.truncate(m * stride);
        cache.shape = vec![m, cap, w];
        Ok(())
    }
}

/// Below this many copied elements a row gather runs on one thread.
const PARALLEL_MIN_COPY: usize = 1 << 16;

/// `dst` row `i` (stride `dst_stride`) gets the first `valid` elements of
/// `src` row `rows[i]` (stride `src_stride`); large gathers split the rows
/// over `threads`. The caller checked every index.
fn copy_rows(
    threads: &Threads,
    src: &[f32],
    src_stride: usize,
    rows: &[usize],
    valid: usize,
    dst: &mut [f32],
    dst_stride: usize,
) {
    if valid == 0 || rows.is_empty() {
        return;
    }
    assert!(dst.len() >= (rows.len() - 1) * dst_stride + valid);
    let out = SharedOut::new(dst);
    threads.run(rows.len(), rows.len() * valid >= PARALLEL_MIN_COPY, |i| {
        // SAFETY: row i's destination `i·dst_stride .. + valid` is in
        // range (asserted) and disjoint from every other row's (valid <=
        // dst_stride); `dst` outlives `run`.
        let d = unsafe { out.slice(i * dst_stride, valid) };
        d.copy_from_slice(&src[rows[i] * src_stride..][..valid]);
    });
}
