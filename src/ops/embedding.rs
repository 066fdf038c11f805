//! Embedding + sinusoidal positions: check against
//! `cpu::embedding::embedding` (f64 angles) and workload (ids, gathered
//! rows, output).

use std::sync::Arc;

use super::model_shapes::{D_MODEL, VOCAB};
use super::{Case, CheckRow, Op, Run, Workload};
use crate::cpu::embedding::embedding as reference;
use crate::cuda::embedding::{self as kernel, embedding, embedding_from_device_ids};
use crate::cuda::numerics::{random_storage, widen, SplitMix64};
use crate::cuda::{Device, DeviceElement, DeviceTensor};
use crate::{DType, Result};

/// The registry entry.
pub const OP: Op = Op {
    name: "embedding",
    dims: &["BATCH", "SEQ", "D_MODEL", "VOCAB", "OFFSET"],
    kernels: kernel::kernels,
    verify_cases,
    check: check_case,
    bench_cases,
    workload,
    prepare,
};

/// `[batch, seq, d_model, vocab, position_offset]`: an encoder batch, and
/// a decoder step at position 37.
fn verify_cases() -> Vec<Case> {
    [(32, 128, 0), (64, 1, 37)]
        .iter()
        .map(|&(b, s, o)| Case::new(&[b, s, D_MODEL, VOCAB, o], ""))
        .collect()
}

fn check_case(dev: &Arc<Device>, dtype: DType, case: &Case, seed: u64) -> Result<Vec<CheckRow>> {
    let d = |i| case.dim(i);
    let row = with_dtype!(dtype, check(dev, d(0), d(1), d(2), d(3), d(4), seed))?;
    Ok(vec![row])
}

/// The kernel against the reference: a random `[vocab, d_model]` table in
/// [-1, 1] and random ids from `seed`, scale `sqrt(d_model)`, positions
/// from `offset`, under [`kernel::tolerance`].
///
/// # Errors
/// Whatever the kernel or the reference reports.
pub fn check<T: DeviceElement>(
    dev: &Arc<Device>,
    batch: usize,
    seq: usize,
    d_model: usize,
    vocab: usize,
    offset: usize,
    seed: u64,
) -> Result<CheckRow> {
    let mut rng = SplitMix64::new(seed);
    let (ts, tw) = random_storage::<T>(&mut rng, vocab * d_model, -1.0, 1.0);
    let ids: Vec<u32> = (0..batch * seq)
        .map(|_| rng.below(vocab as u64) as u32)
        .collect();
    let scale = (d_model as f32).sqrt();
    let expected = reference(&ids, batch, seq, &tw, vocab, d_model, scale, offset)?;
    let table = DeviceTensor::from_host(dev, &ts, &[vocab, d_model])?;
    let out = embedding(&ids, batch, seq, &table, scale, offset)?;
    let mut row = CheckRow::compare(
        "embedding+positions",
        T::DTYPE,
        format!("{batch}x{seq}x{d_model} @{offset}"),
        &widen(&out.to_host()?),
        &expected,
        kernel::tolerance(T::DTYPE),
    );
    if out.shape() != [batch, seq, d_model] {
        row.passed = false;
        row.note = format!("output shape {:?}; {}", out.shape(), row.note);
    }
    Ok(row)
}

/// Tokens x d_model 512 gathered from the 58101-row table, ids on the device.
fn bench_cases(quick: bool) -> Vec<Case> {
    let tokens: &[usize] = if quick {
        &[16384]
    } else {
        &[1, 16, 128, 1024, 4096, 16384]
    };
    tokens
        .iter()
        .map(|&n| Case::new(&[n, D_MODEL, VOCAB], ""))
        .collect()
}

/// Read the ids and the gathered rows; write the output.
fn workload(case: &Case, dtype: DType) -> Workload {
    let (n, d) = (case.dim(0), case.dim(1));
    Workload {
        label: "embedding_positions".into(),
        shape: format!("{n}x{d}"),
        bytes: (2 * n * d) as u64 * dtype.size_in_bytes() as u64 + 4 * n as u64,
        flops: 0,
    }
}

fn prepare(dev: &Arc<Device>, dtype: DType, case: &Case) -> Result<Run> {
    with_dtype!(dtype, prepare_typed(dev, case))
}

fn prepare_typed<T: DeviceElement>(dev: &Arc<Device>, case: &Case) -> Result<Run> {
    let (n, d, vocab) = (case.dim(0), case.dim(1), case.dim(2));
    let mut rng = SplitMix64::new(0xbe4c ^ n as u64);
    let (ts, _) = random_storage::<T>(&mut rng, vocab * d, -0.1, 0.1);
    let table = DeviceTensor::from_host(dev, &ts, &[vocab, d])?;
    let ids: Vec<i32> = (0..n).map(|_| rng.below(vocab as u64) as i32).collect();
    let ids = DeviceTensor::from_host(dev, &ids, &[1, n])?;
    let mut out = DeviceTensor::<T>::zeros(dev, &[1, n, d])?;
    let scale = (d as f32).sqrt();
    Ok(Box::new(move || {
        embedding_from_device_ids(&ids, 1, n, &table, scale, 0, &mut out)
    }))
}
