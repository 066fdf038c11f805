//! The logits step (final_logits_bias, pad mask, log-softmax, top-k):
//! check against `cpu::logits::logits_step` (f64 sums) and workload
//! (logits + bias read, top-k and optionally log-probs written).

use std::sync::Arc;

use super::model_shapes::VOCAB;
use super::{Case, CheckRow, Op, Run, Workload};
use crate::cpu::logits::logits_step as reference;
use crate::cuda::logits::{self as kernel, logits_step, logits_step_into, TopKBuffers};
use crate::cuda::numerics::{random_storage, SplitMix64};
use crate::cuda::{Device, DeviceElement, DeviceTensor};
use crate::{DType, Result};

/// The registry entry.
pub const OP: Op = Op {
    name: "logits",
    dims: &["ROWS", "VOCAB", "K"],
    kernels: kernel::kernels,
    verify_cases,
    check: check_case,
    bench_cases,
    workload,
    prepare,
};

/// `[rows, vocab, k]` with the bias and pad = the last id: greedy (k 1),
/// beam 4 (k 8) and the widest kernel (k 32).
fn verify_cases() -> Vec<Case> {
    [(32, 1), (32, 8), (4, 32)]
        .iter()
        .map(|&(r, k)| Case::new(&[r, VOCAB, k], ""))
        .collect()
}

fn check_case(dev: &Arc<Device>, dtype: DType, case: &Case, seed: u64) -> Result<Vec<CheckRow>> {
    let (rows, vocab, k) = (case.dim(0), case.dim(1), case.dim(2));
    let pad = vocab.checked_sub(1);
    with_dtype!(dtype, check(dev, rows, vocab, k, true, pad, seed))
}

/// The kernel against the reference on random logits in [-10, 10] and a
/// bias in [-2, 2] from `seed`: two rows, the log-probabilities and the
/// top-k (values under [`kernel::tolerance`], ids exactly).
///
/// # Errors
/// Whatever the kernel or the reference reports.
pub fn check<T: DeviceElement>(
    dev: &Arc<Device>,
    rows: usize,
    vocab: usize,
    k: usize,
    with_bias: bool,
    pad: Option<usize>,
    seed: u64,
) -> Result<Vec<CheckRow>> {
    let mut rng = SplitMix64::new(seed);
    let (ls, lw) = random_storage::<T>(&mut rng, rows * vocab, -10.0, 10.0);
    let (bs, bw) = random_storage::<T>(&mut rng, vocab, -2.0, 2.0);
    let bias = with_bias.then_some((&bs[..], &bw[..]));
    check_values::<T>(dev, &ls, &lw, bias, rows, vocab, pad, k)
}

/// The kernel against the reference on given logits (storage values and
/// their f32 widening) and optional bias: rows `logits log_softmax` and
/// `logits top-k`. The scores are the same f32 sums on both sides, so the
/// selection (ties to the lower id) must agree exactly: the top-k row
/// fails on any differing id.
///
/// # Errors
/// Whatever the kernel or the reference reports.
#[allow(clippy::too_many_arguments)] // inputs, their widening, and the step's parameters
pub fn check_values<T: DeviceElement>(
    dev: &Arc<Device>,
    logits_s: &[T],
    logits_w: &[f32],
    bias: Option<(&[T], &[f32])>,
    rows: usize,
    vocab: usize,
    pad: Option<usize>,
    k: usize,
) -> Result<Vec<CheckRow>> {
    let expected = reference(logits_w, rows, vocab, bias.map(|b| b.1), pad, k)?;
    let logits = DeviceTensor::from_host(dev, logits_s, &[rows, vocab])?;
    let bias_dev = match bias {
        Some(b) => Some(DeviceTensor::from_host(dev, b.0, &[vocab])?),
        None => None,
    };
    let mut lp = DeviceTensor::<f32>::zeros(dev, &[rows, vocab])?;
    let top = logits_step(&logits, bias_dev.as_ref(), pad, k, Some(&mut lp))?;
    let tol = kernel::tolerance(vocab);
    let shape = format!("{rows}x{vocab} k={k}");
    let mut lp_row = CheckRow::compare(
        "logits log_softmax",
        T::DTYPE,
        shape.clone(),
        &lp.to_host()?,
        &expected.log_probs,
        tol,
    );
    let mut top_row = CheckRow::compare(
        "logits top-k",
        T::DTYPE,
        shape,
        &top.log_probs,
        &expected.topk_log_probs,
        tol,
    );
    let differ: Vec<usize> = (0..top.ids.len().max(expected.topk_ids.len()))
        .filter(|&i| top.ids.get(i) != expected.topk_ids.get(i))
        .collect();
    if let Some(&i) = differ.first() {
        top_row.passed = false;
        top_row.note = format!(
            "{} top-k ids differ; first at row {} rank {}: got {:?}, expected {:?}; {}",
            differ.len(),
            i / k.max(1),
            i % k.max(1),
            top.ids.get(i),
            expected.topk_ids.get(i),
            top_row.note
        );
    } else {
        top_row.note = format!("ids equal; {}", top_row.note);
    }
    lp_row.note = match pad {
        Some(p) => format!("pad {p} masked; {}", lp_row.note),
        None => format!("no pad; {}", lp_row.note),
    };
    Ok(vec![lp_row, top_row])
}

/// Rows (batch · beams) x 58101: k = 1 and 8 with the top-k kept on the
/// device, and k = 8 also writing every log-probability (variant `lp`).
fn bench_cases(quick: bool) -> Vec<Case> {
    let rows: &[usize] = if quick { &[128] } else { &[1, 8, 32, 128] };
    rows.iter()
        .flat_map(|&n| {
            [
                Case::new(&[n, VOCAB, 1], ""),
                Case::new(&[n, VOCAB, 8], ""),
                Case::new(&[n, VOCAB, 8], "lp"),
            ]
        })
        .collect()
}

/// Read the logits and the bias; write the top-k (id + f32) and, for `lp`,
/// the f32 log-probabilities.
fn workload(case: &Case, dtype: DType) -> Workload {
    let (n, v, k) = (case.dim(0), case.dim(1), case.dim(2));
    let write_lp = case.variant == "lp";
    Workload {
        label: if write_lp {
            "logits_topk+logprobs"
        } else {
            "logits_topk"
        }
        .into(),
        shape: format!("{n}x{v} k={k}"),
        bytes: (n * v + v) as u64 * dtype.size_in_bytes() as u64
            + (n * k * 8) as u64
            + if write_lp { (n * v * 4) as u64 } else { 0 },
        flops: 0,
    }
}

fn prepare(dev: &Arc<Device>, dtype: DType, case: &Case) -> Result<Run> {
    with_dtype!(dtype, prepare_typed(dev, case))
}

fn prepare_typed<T: DeviceElement>(dev: &Arc<Device>, case: &Case) -> Result<Run> {
    let (n, v, k) = (case.dim(0), case.dim(1), case.dim(2));
    let write_lp = case.variant == "lp";
    let mut rng = SplitMix64::new(0xbe4c ^ (n * k) as u64);
    let (bs, _) = random_storage::<T>(&mut rng, v, -1.0, 1.0);
    let (ls, _) = random_storage::<T>(&mut rng, n * v, -10.0, 10.0);
    let bias = DeviceTensor::from_host(dev, &bs, &[v])?;
    let logits = DeviceTensor::from_host(dev, &ls, &[n, v])?;
    let mut top = TopKBuffers::new(dev, n, k)?;
    let mut lp = if write_lp {
        Some(DeviceTensor::<f32>::zeros(dev, &[n, v])?)
    } else {
        None
    };
    let pad = v.checked_sub(1);
    Ok(Box::new(move || {
        logits_step_into(&logits, Some(&bias), pad, lp.as_mut(), &mut top)
    }))
}
