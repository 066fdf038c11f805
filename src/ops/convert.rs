//! Storage dtype conversion: check against `cpu::convert::convert` (one
//! correctly rounded step on both sides: bit-exact) and workload (f32 ->
//! dtype at the weight shapes, the upload direction).

use std::sync::Arc;

use super::model_shapes::{D_MODEL, FFN, VOCAB};
use super::{Case, CheckRow, Op, Run, Workload};
use crate::cpu::convert::convert as reference;
use crate::cuda::convert::{self as kernel, convert, convert_into};
use crate::cuda::numerics::{random_storage, widen, SplitMix64, Tolerance};
use crate::cuda::{Device, DeviceElement, DeviceTensor};
use crate::{DType, Result};

/// The registry entry.
pub const OP: Op = Op {
    name: "convert",
    dims: &["N"],
    kernels: kernel::kernels,
    verify_cases,
    check: check_case,
    bench_cases,
    workload,
    prepare,
};

/// Both sides round once to nearest even: the results must be identical.
pub const TOL_EXACT: Tolerance = Tolerance {
    abs: 0.0,
    rel: 0.0,
    reason: "one round-to-nearest-even on both sides: bit-exact",
};

/// `[n]` elements, variant = the destination dtype (the case's dtype is the source).
fn verify_cases() -> Vec<Case> {
    DType::ALL
        .iter()
        .map(|d| Case::new(&[16384 * 512], d.name()))
        .collect()
}

fn check_case(dev: &Arc<Device>, dtype: DType, case: &Case, seed: u64) -> Result<Vec<CheckRow>> {
    let dst: DType = case.variant.parse()?;
    let n = case.dim(0);
    let row = match dst {
        DType::F32 => with_dtype!(dtype, check_to_f32(dev, n, seed)),
        DType::F16 => with_dtype!(dtype, check_to_f16(dev, n, seed)),
        DType::BF16 => with_dtype!(dtype, check_to_bf16(dev, n, seed)),
    }?;
    Ok(vec![row])
}

fn check_to_f32<S: DeviceElement>(dev: &Arc<Device>, n: usize, seed: u64) -> Result<CheckRow> {
    check::<S, f32>(dev, n, seed)
}
fn check_to_f16<S: DeviceElement>(dev: &Arc<Device>, n: usize, seed: u64) -> Result<CheckRow> {
    check::<S, half::f16>(dev, n, seed)
}
fn check_to_bf16<S: DeviceElement>(dev: &Arc<Device>, n: usize, seed: u64) -> Result<CheckRow> {
    check::<S, half::bf16>(dev, n, seed)
}

/// `S -> D` on `n` random values in f16's range (±60000) from `seed`,
/// compared bit for bit ([`TOL_EXACT`]) with the reference.
///
/// # Errors
/// Whatever the kernel reports (device errors).
pub fn check<S: DeviceElement, D: DeviceElement>(
    dev: &Arc<Device>,
    n: usize,
    seed: u64,
) -> Result<CheckRow> {
    let mut rng = SplitMix64::new(seed);
    let (src, _) = random_storage::<S>(&mut rng, n, -60000.0, 60000.0);
    let expected = widen(&reference::<S, D>(&src));
    let out = convert::<S, D>(&DeviceTensor::from_host(dev, &src, &[n])?)?;
    let got = widen(&out.to_host()?);
    Ok(CheckRow::compare(
        format!("convert to {}", D::DTYPE),
        S::DTYPE,
        format!("{n}"),
        &got,
        &expected,
        TOL_EXACT,
    ))
}

/// The weight shapes: 512x512 (attention projections), 2048x512 (FFN),
/// 58101x512 (the shared embedding); the case's dtype is the destination.
fn bench_cases(quick: bool) -> Vec<Case> {
    let shapes: &[(usize, usize)] = if quick {
        &[(VOCAB, D_MODEL)]
    } else {
        &[(D_MODEL, D_MODEL), (FFN, D_MODEL), (VOCAB, D_MODEL)]
    };
    shapes
        .iter()
        .map(|&(r, c)| Case::new(&[r, c], ""))
        .collect()
}

/// Read 4 bytes (f32), write the destination's size, per element; f32 ->
/// f32 is the device-to-device copy itself.
fn workload(case: &Case, dtype: DType) -> Workload {
    let (r, c) = (case.dim(0), case.dim(1));
    Workload {
        label: "convert_from_f32".into(),
        shape: format!("{r}x{c}"),
        bytes: (r * c) as u64 * (4 + dtype.size_in_bytes() as u64),
        flops: 0,
    }
}

fn prepare(dev: &Arc<Device>, dtype: DType, case: &Case) -> Result<Run> {
    with_dtype!(dtype, prepare_typed(dev, case))
}

/// f32 -> `T` into a preallocated output, so that only the kernel is timed.
fn prepare_typed<T: DeviceElement>(dev: &Arc<Device>, case: &Case) -> Result<Run> {
    let (r, c) = (case.dim(0), case.dim(1));
    let mut rng = SplitMix64::new(0xbe4c ^ (r * c) as u64);
    let (ws, _) = random_storage::<f32>(&mut rng, r * c, -1.0, 1.0);
    let w = DeviceTensor::from_host(dev, &ws, &[r, c])?;
    let mut out = DeviceTensor::<T>::zeros(dev, &[r, c])?;
    Ok(Box::new(move || convert_into(&w, &mut out)))
}
