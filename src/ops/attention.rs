//! Fused attention: check against an f64 reference under the
//! FlashAttention-style error rule, and workload (4·b·h·s_q·s_k·d FLOPs,
//! halved for causal; the bytes of q, k, v and out).
//!
//! **The error rule**, as for [`super::linear`]: `max |y_kernel − y64| <=
//! ERROR_RATIO · max |y_cpu − y64| + floor`, where y64 is computed in f64
//! from the same storage-rounded inputs and y_cpu is the same maths on the
//! CPU in the storage precision, as a PyTorch attention in that dtype does
//! it: f32 scores and softmax, the probabilities rounded to the storage
//! type, P·V accumulated in f32, the output rounded. The kernels round P
//! too (the tensor-core path feeds it to `mma` in f16 / bf16), so the CPU
//! yardstick must. `floor = ERROR_FLOOR_ULPS · ε_f32 · max(|y64|, 1)`.
//!
//! The inputs put NaN in every key and value position a row must not read
//! (past its key length, past `k_len` in a longer cache): a kernel that
//! reads one, even to multiply it by 0, fails the check with NaN.

use std::sync::Arc;

use super::{flash_rule_row, Case, CheckRow, Op, Run, Workload};
use crate::cuda::attention::{
    self as kernel, attention_into, AttentionDims, AttentionKernel, AttentionMask, AttentionPlan,
    HeadView,
};
use crate::cuda::numerics::{random_storage, widen, SplitMix64};
use crate::cuda::workspace::Workspace;
use crate::cuda::{Device, DeviceElement, DeviceTensor};
use crate::{DType, Element, Error, Result};

/// The registry entry.
pub const OP: Op = Op {
    name: "attention",
    dims: &["BATCH", "HEADS", "Q_LEN", "K_LEN", "HEAD_DIM"],
    kernels: kernel::kernels,
    verify_cases,
    check: check_case,
    bench_cases,
    workload,
    prepare,
};

/// The kernel's error may be this many times the CPU's (see the module docs).
pub const ERROR_RATIO: f32 = 2.0;
/// The floor of the rule, in f32 ulps of max(|y|, 1): the kernels' expf
/// (<= 2 ulp) against the CPU's, and the f64 → f32 rounding of the
/// reference in the comparison.
pub const ERROR_FLOOR_ULPS: f32 = 4.0;
const RULE: &str = "FlashAttention rule: kernel error vs f64 <= 2 x the CPU's in storage \
                    precision (P rounded) + 4 f32 ulps";

/// One attention problem.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spec {
    /// Batch rows.
    pub batch: usize,
    /// Heads.
    pub heads: usize,
    /// Queries.
    pub q_len: usize,
    /// Keys used.
    pub k_len: usize,
    /// Elements per head.
    pub head_dim: usize,
    /// Causal mask (queries are the last q_len positions).
    pub causal: bool,
    /// Random key lengths per row in 0..=k_len (row 0 gets 0: a fully
    /// masked row; row 1, when there is one, k_len).
    pub padding: bool,
    /// K and V in a cache of k_len + 5 positions (the rest NaN).
    pub cache: bool,
    /// Q, K, V read from one fused `[rows, seq, 3·d]` buffer (needs
    /// q_len == k_len; not with `cache`).
    pub fused: bool,
    /// A forced plan (`None`: the heuristic's).
    pub plan: Option<AttentionPlan>,
}

impl Spec {
    /// No mask, separate tensors, the heuristic's plan.
    pub fn new(batch: usize, heads: usize, q_len: usize, k_len: usize, head_dim: usize) -> Self {
        Spec {
            batch,
            heads,
            q_len,
            k_len,
            head_dim,
            causal: false,
            padding: false,
            cache: false,
            fused: false,
            plan: None,
        }
    }

    /// `plain`, or the parts joined by `+`: `causal`, `padding`, `cache`,
    /// `fused`, `tc` / `simt`, `splits=N`.
    pub fn variant(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for (on, name) in [
            (self.causal, "causal"),
            (self.padding, "padding"),
            (self.cache, "cache"),
            (self.fused, "fused"),
        ] {
            if on {
                parts.push(name.into());
            }
        }
        if let Some(p) = self.plan {
            parts.push(
                match p.kernel {
                    AttentionKernel::TensorCore => "tc",
                    AttentionKernel::Simt => "simt",
                }
                .into(),
            );
            if p.splits != 1 {
                parts.push(format!("splits={}", p.splits));
            }
        }
        if parts.is_empty() {
            "plain".into()
        } else {
            parts.join("+")
        }
    }

    /// The spec of a case (dims `[batch, heads, q_len, k_len, head_dim]`,
    /// variant as [`Spec::variant`] writes it).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown part.
    pub fn from_case(case: &Case) -> Result<Spec> {
        let mut s = Spec::new(
            case.dim(0),
            case.dim(1),
            case.dim(2),
            case.dim(3),
            case.dim(4),
        );
        let mut kernel_choice = None;
        let mut splits = 1;
        for part in case.variant.split('+').filter(|p| !p.is_empty()) {
            match part {
                "plain" => {}
                "causal" => s.causal = true,
                "padding" => s.padding = true,
                "cache" => s.cache = true,
                "fused" => s.fused = true,
                "tc" | "simt" => {
                    let k = if part == "tc" {
                        AttentionKernel::TensorCore
                    } else {
                        AttentionKernel::Simt
                    };
                    if kernel_choice.is_some_and(|c| c != k) {
                        return Err(Error::invalid(
                            "attention",
                            format!("{:?} names two kernels (tc and simt)", case.variant),
                        ));
                    }
                    kernel_choice = Some(k);
                }
                _ => {
                    let n = part.strip_prefix("splits=").ok_or_else(|| {
                        Error::invalid(
                            "attention",
                            format!(
                                "unknown variant part {part:?}; parts: plain, causal, padding, \
                                 cache, fused, tc, simt, splits=N (joined by +)"
                            ),
                        )
                    })?;
                    splits = n.parse().map_err(|_| {
                        Error::invalid("attention", format!("splits={n:?} is not a count"))
                    })?;
                    kernel_choice.get_or_insert(AttentionKernel::Simt);
                }
            }
        }
        if kernel_choice == Some(AttentionKernel::TensorCore) && splits != 1 {
            return Err(Error::invalid(
                "attention",
                format!(
                    "{:?}: the tensor-core kernel does not split keys",
                    case.variant
                ),
            ));
        }
        s.plan = kernel_choice.map(|kernel| AttentionPlan { kernel, splits });
        Ok(s)
    }
}

/// CASES.md B1 (q = kv = 192, lengths 1, 127, 129, head_dim 16, 32, 48)
/// for self, causal, cross with padding and decode over a cache; the
/// model's shapes (8 heads of 64): a batch's encoder self-attention with
/// padding, decoder causal self-attention over a cache, cross-attention,
/// and decode steps.
fn verify_cases() -> Vec<Case> {
    let mut v = Vec::new();
    for hd in [16, 32, 48] {
        v.push(Case::new(&[2, 2, 192, 192, hd], "plain"));
        v.push(Case::new(&[2, 2, 192, 192, hd], "causal"));
        v.push(Case::new(&[3, 2, 127, 129, hd], "padding"));
        v.push(Case::new(&[2, 2, 1, 129, hd], "causal+cache"));
    }
    v.push(Case::new(&[4, 8, 30, 30, 64], "padding+fused"));
    v.push(Case::new(&[4, 8, 2, 34, 64], "causal+cache"));
    v.push(Case::new(&[4, 8, 25, 30, 64], "padding"));
    v.push(Case::new(&[2, 8, 1, 300, 64], "padding+cache"));
    v
}

fn check_case(dev: &Arc<Device>, dtype: DType, case: &Case, seed: u64) -> Result<Vec<CheckRow>> {
    let spec = Spec::from_case(case)?;
    let row = with_dtype!(dtype, check(dev, &spec, seed))?;
    Ok(vec![row])
}

/// The inputs of a check: storage values to upload and their f32 widening.
struct Inputs<T> {
    q: (Vec<T>, Vec<f32>),
    k: (Vec<T>, Vec<f32>),
    v: (Vec<T>, Vec<f32>),
    lengths: Vec<usize>,
    cap: usize,
}

fn inputs<T: DeviceElement>(spec: &Spec, seed: u64) -> Inputs<T> {
    let Spec {
        batch,
        heads,
        q_len,
        k_len,
        head_dim,
        ..
    } = *spec;
    let d = heads * head_dim;
    let cap = if spec.cache { k_len + 5 } else { k_len };
    let mut rng = SplitMix64::new(seed);
    let lengths: Vec<usize> = (0..batch)
        .map(|b| match (spec.padding, b) {
            (false, _) => k_len,
            (true, 0) => 0,
            (true, 1) => k_len,
            (true, _) => rng.below(k_len as u64 + 1) as usize,
        })
        .collect();
    let q = random_storage::<T>(&mut rng, batch * q_len * d, -1.0, 1.0);
    let mut k = random_storage::<T>(&mut rng, batch * cap * d, -1.0, 1.0);
    let mut v = random_storage::<T>(&mut rng, batch * cap * d, -1.0, 1.0);
    // Positions a row must never read: NaN in the uploaded storage, 0 in
    // the reference's copy.
    for (b, &len) in lengths.iter().enumerate() {
        for pos in len..cap {
            for c in 0..d {
                let i = (b * cap + pos) * d + c;
                k.0[i] = T::from_f32(f32::NAN);
                v.0[i] = T::from_f32(f32::NAN);
                k.1[i] = 0.0;
                v.1[i] = 0.0;
            }
        }
    }
    Inputs {
        q,
        k,
        v,
        lengths,
        cap,
    }
}

/// Whether query `i` of row `b` sees key `j`.
fn visible(spec: &Spec, lengths: &[usize], b: usize, i: usize, j: usize) -> bool {
    j < lengths[b].min(spec.k_len) && (!spec.causal || j + spec.q_len <= spec.k_len + i)
}

/// Attention in f64 (`[batch, q_len, heads·head_dim]`), 0 for a query
/// with no visible key. `k`, `v` are `[batch, cap, heads·head_dim]`.
fn reference_f64(spec: &Spec, x: &Inputs<impl Sized>, scale: f32) -> Vec<f64> {
    attend(spec, x, |s| s, |p| p, f64::from(scale))
}

/// The same maths in f32 with P rounded to `T` and the output rounded
/// (see the module docs).
fn storage_precision<T: Element>(spec: &Spec, x: &Inputs<T>, scale: f32) -> Vec<f32> {
    let y = attend(
        spec,
        x,
        |s| f64::from(s as f32),
        |p| f64::from(T::from_f32(p as f32).to_f32()),
        f64::from(scale),
    );
    y.iter().map(|&v| T::from_f32(v as f32).to_f32()).collect()
}

/// Shared loops of the two references; `round_s` and `round_p` model the
/// precision of the scores and of the probabilities fed to P·V (f64
/// identity, or f32 / storage rounding).
fn attend<X>(
    spec: &Spec,
    x: &Inputs<X>,
    round_s: impl Fn(f64) -> f64,
    round_p: impl Fn(f64) -> f64,
    scale: f64,
) -> Vec<f64> {
    let Spec {
        batch,
        heads,
        q_len,
        head_dim,
        ..
    } = *spec;
    let d = heads * head_dim;
    let (q, k, v) = (&x.q.1, &x.k.1, &x.v.1);
    let mut out = vec![0.0f64; batch * q_len * d];
    let mut s = Vec::new();
    for b in 0..batch {
        for h in 0..heads {
            for i in 0..q_len {
                let qi = &q[(b * q_len + i) * d + h * head_dim..][..head_dim];
                s.clear();
                for j in 0..spec.k_len {
                    if !visible(spec, &x.lengths, b, i, j) {
                        continue;
                    }
                    let kj = &k[(b * x.cap + j) * d + h * head_dim..][..head_dim];
                    let dot: f64 = qi
                        .iter()
                        .zip(kj)
                        .fold(0.0, |a, (&p, &q)| round_s(a + f64::from(p) * f64::from(q)));
                    s.push((j, round_s(dot * scale)));
                }
                if s.is_empty() {
                    continue;
                }
                let m = s.iter().fold(f64::NEG_INFINITY, |a, &(_, v)| a.max(v));
                let sum: f64 = s.iter().map(|&(_, v)| round_s((v - m).exp())).sum();
                let o = &mut out[(b * q_len + i) * d + h * head_dim..][..head_dim];
                for &(j, sv) in &s {
                    let p = round_p(round_s((sv - m).exp()) / sum);
                    let vj = &v[(b * x.cap + j) * d + h * head_dim..][..head_dim];
                    for (oe, &ve) in o.iter_mut().zip(vj) {
                        *oe = round_s(*oe + p * f64::from(ve));
                    }
                }
            }
        }
    }
    out
}

/// The kernel against the f64 reference under the rule of the module docs,
/// on random q, k, v in [-1, 1] from `seed`, scale `head_dim^-0.5`.
///
/// # Errors
/// Whatever the kernel reports; [`Error::InvalidArgument`] for `fused`
/// with q_len != k_len or with `cache`.
pub fn check<T: DeviceElement>(dev: &Arc<Device>, spec: &Spec, seed: u64) -> Result<CheckRow> {
    let Spec {
        batch,
        heads,
        q_len,
        k_len,
        head_dim,
        ..
    } = *spec;
    let too_big = || {
        Error::invalid(
            "attention",
            format!(
                "{batch}x{heads}x{q_len}x{k_len}x{head_dim}: past the {} elements per operand a \
                 check holds on the host",
                super::linear::MAX_CHECK_ELEMENTS
            ),
        )
    };
    let d = heads.checked_mul(head_dim).ok_or_else(too_big)?;
    for len in [Some(q_len), k_len.checked_add(5)] {
        if len
            .and_then(|len| batch.checked_mul(len))
            .and_then(|e| e.checked_mul(d))
            .is_none_or(|e| e > super::linear::MAX_CHECK_ELEMENTS)
        {
            return Err(too_big());
        }
    }
    let scale = 1.0 / (head_dim.max(1) as f32).sqrt();
    let x = inputs::<T>(spec, seed);
    let y64 = reference_f64(spec, &x, scale);
    let y_cpu = storage_precision::<T>(spec, &x, scale);

    let lengths: Vec<i32> = x.lengths.iter().map(|&l| l as i32).collect();
    let lens = DeviceTensor::from_host(dev, &lengths, &[batch])?;
    let mask = AttentionMask {
        key_lengths: spec.padding.then_some(&lens),
        causal: spec.causal,
    };
    let dims = AttentionDims {
        heads,
        head_dim,
        k_len,
    };
    let mut out = DeviceTensor::<T>::zeros(dev, &[batch, q_len, d])?;
    let mut ws = Workspace::new();
    if spec.fused {
        if q_len != k_len || spec.cache {
            return Err(Error::invalid(
                "attention",
                "a fused QKV case needs q_len == k_len and no cache",
            ));
        }
        let mut qkv = Vec::with_capacity(batch * q_len * 3 * d);
        for r in 0..batch * q_len {
            for t in [&x.q.0, &x.k.0, &x.v.0] {
                qkv.extend_from_slice(&t[r * d..][..d]);
            }
        }
        let fused = DeviceTensor::from_host(dev, &qkv, &[batch, q_len, 3 * d])?;
        attention_into(
            HeadView::at(&fused, 0),
            HeadView::at(&fused, d),
            HeadView::at(&fused, 2 * d),
            dims,
            scale,
            mask,
            &mut out,
            spec.plan,
            Some(&mut ws),
        )?;
    } else {
        let q = DeviceTensor::from_host(dev, &x.q.0, &[batch, q_len, d])?;
        let k = DeviceTensor::from_host(dev, &x.k.0, &[batch, x.cap, d])?;
        let v = DeviceTensor::from_host(dev, &x.v.0, &[batch, x.cap, d])?;
        attention_into(
            HeadView::whole(&q),
            HeadView::whole(&k),
            HeadView::whole(&v),
            dims,
            scale,
            mask,
            &mut out,
            spec.plan,
            Some(&mut ws),
        )?;
    }
    let got = widen(&out.to_host()?);

    let max_ref = y64.iter().fold(1.0f64, |a, v| a.max(v.abs())) as f32;
    let mut row = flash_rule_row(
        format!("attention {}", spec.variant()),
        T::DTYPE,
        format!("{batch}x{heads}x{q_len}x{k_len}x{head_dim}"),
        &got,
        &y_cpu,
        &y64,
        ERROR_RATIO,
        ERROR_FLOOR_ULPS * f32::EPSILON * max_ref,
        RULE,
    );
    // A fully masked query must be exactly 0 (CASES.md A1), not merely close.
    for b in 0..batch {
        for i in 0..q_len {
            if (0..k_len).any(|j| visible(spec, &x.lengths, b, i, j)) {
                continue;
            }
            if got[(b * q_len + i) * d..][..d].iter().any(|&v| v != 0.0) {
                row.passed = false;
                row.note = format!(
                    "row {b} query {i} sees no key but is not exactly 0; {}",
                    row.note
                );
            }
        }
    }
    Ok(row)
}

/// Translation shapes (batch 32 and 128, 8 heads of 64, lengths 16 … 256,
/// self and causal), long ones (1024 at batch 4, 4096 at batch 1), and
/// decode steps (batch 1, 32, 128 × cache 32, 128, 1024); `quick`: one of each.
fn bench_cases(quick: bool) -> Vec<Case> {
    let mut v = Vec::new();
    let lens: &[usize] = if quick {
        &[64]
    } else {
        &[16, 32, 64, 128, 256]
    };
    let batches: &[usize] = if quick { &[128] } else { &[32, 128] };
    for &b in batches {
        for &l in lens {
            v.push(Case::new(&[b, 8, l, l, 64], "plain"));
            v.push(Case::new(&[b, 8, l, l, 64], "causal"));
        }
    }
    if !quick {
        v.push(Case::new(&[4, 8, 1024, 1024, 64], "causal"));
        v.push(Case::new(&[1, 8, 4096, 4096, 64], "causal"));
    }
    let decode_b: &[usize] = if quick { &[32] } else { &[1, 32, 128] };
    let decode_k: &[usize] = if quick { &[1024] } else { &[32, 128, 1024] };
    for &b in decode_b {
        for &k in decode_k {
            v.push(Case::new(&[b, 8, 1, k, 64], "causal"));
        }
    }
    v
}

/// FLOPs 4·b·h·s_q·s_k·d (halved for causal prefill); bytes of q, k, v
/// (the k_len positions used) and out.
fn workload(case: &Case, dtype: DType) -> Workload {
    let spec = Spec::from_case(case).unwrap_or(Spec::new(
        case.dim(0),
        case.dim(1),
        case.dim(2),
        case.dim(3),
        case.dim(4),
    ));
    let (b, h, sq, sk, hd) = (
        spec.batch,
        spec.heads,
        spec.q_len,
        spec.k_len,
        spec.head_dim,
    );
    let mut flops = 4 * (b * h * sq * sk * hd) as u64;
    if spec.causal && sq > 1 {
        flops /= 2;
    }
    let label = if sq <= kernel::DECODE_MAX_Q {
        "attention_decode"
    } else if spec.causal {
        "attention_causal"
    } else {
        "attention"
    };
    Workload {
        label: label.into(),
        shape: format!("{b}x{h}x{sq}x{sk}x{hd}"),
        bytes: (2 * b * sq * h * hd + 2 * b * sk * h * hd) as u64 * dtype.size_in_bytes() as u64,
        flops,
    }
}

fn prepare(dev: &Arc<Device>, dtype: DType, case: &Case) -> Result<Run> {
    with_dtype!(dtype, prepare_typed(dev, case))
}

fn prepare_typed<T: DeviceElement>(dev: &Arc<Device>, case: &Case) -> Result<Run> {
    let spec = Spec::from_case(case)?;
    let Spec {
        batch,
        heads,
        q_len,
        k_len,
        head_dim,
        ..
    } = spec;
    let d = heads * head_dim;
    let mut rng = SplitMix64::new(0xa77e ^ (batch * q_len * k_len) as u64);
    let (qs, _) = random_storage::<T>(&mut rng, batch * q_len * d, -1.0, 1.0);
    let (ks, _) = random_storage::<T>(&mut rng, batch * k_len * d, -1.0, 1.0);
    let (vs, _) = random_storage::<T>(&mut rng, batch * k_len * d, -1.0, 1.0);
    let q = DeviceTensor::from_host(dev, &qs, &[batch, q_len, d])?;
    let k = DeviceTensor::from_host(dev, &ks, &[batch, k_len, d])?;
    let v = DeviceTensor::from_host(dev, &vs, &[batch, k_len, d])?;
    let mut out = DeviceTensor::<T>::zeros(dev, &[batch, q_len, d])?;
    let mut ws = Workspace::new();
    let scale = 1.0 / (head_dim as f32).sqrt();
    Ok(Box::new(move || {
        attention_into(
            HeadView::whole(&q),
            HeadView::whole(&k),
            HeadView::whole(&v),
            AttentionDims {
                heads,
                head_dim,
                k_len,
            },
            scale,
            AttentionMask {
                key_lengths: None,
                causal: spec.causal,
            },
            &mut out,
            spec.plan,
            Some(&mut ws),
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_round_trip() {
        for v in [
            "plain",
            "causal+padding",
            "cache+simt+splits=3",
            "padding+fused+tc",
        ] {
            let s = Spec::from_case(&Case::new(&[1, 1, 2, 2, 8], v)).unwrap();
            assert_eq!(s.variant(), v);
        }
        for bad in ["alibi", "tc+simt", "simt+tc", "splits=3+tc"] {
            assert!(
                Spec::from_case(&Case::new(&[1, 1, 2, 2, 8], bad)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_storage_precision_yardstick_is_a_real_error() {
        let spec = Spec {
            causal: true,
            ..Spec::new(2, 2, 9, 9, 16)
        };
        let x = inputs::<half::bf16>(&spec, 5);
        let y64 = reference_f64(&spec, &x, 0.25);
        let y = storage_precision::<half::bf16>(&spec, &x, 0.25);
        let e = y
            .iter()
            .zip(&y64)
            .fold(0.0f64, |a, (&p, &q)| a.max((f64::from(p) - q).abs()));
        assert!(e > 0.0 && e < 0.02, "bf16 yardstick error {e}");
    }
}
