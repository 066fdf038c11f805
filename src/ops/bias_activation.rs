//! Bias + activation: check against `cpu::bias_activation::bias_activation`
//! (activations in f64) and workload (x, bias read; out written).

use std::sync::Arc;

use super::model_shapes::FFN;
use super::{Case, CheckRow, Op, Run, Workload};
use crate::activation::Activation;
use crate::cpu::bias_activation::bias_activation as reference;
use crate::cuda::bias_activation::{
    self as kernel, bias_activation, bias_activation_in_place, ACTIVATIONS,
};
use crate::cuda::numerics::{random_storage, widen, SplitMix64};
use crate::cuda::{Device, DeviceElement, DeviceTensor};
use crate::{DType, Error, Result};

/// The registry entry.
pub const OP: Op = Op {
    name: "bias_activation",
    dims: &["ROWS", "COLS"],
    kernels: kernel::kernels,
    verify_cases,
    check: check_case,
    bench_cases,
    workload,
    prepare,
};

/// The lower-case name of `act` as the variant of a case (`relu`, `gelu`,
/// `gelutanh`, `swish`).
fn variant(act: Activation) -> String {
    format!("{act:?}").to_lowercase()
}

/// The activation a case's variant names.
fn activation(case: &Case) -> Result<Activation> {
    ACTIVATIONS
        .iter()
        .copied()
        .find(|&a| variant(a) == case.variant)
        .ok_or_else(|| {
            Error::invalid(
                "bias_activation",
                format!("unknown activation {:?}", case.variant),
            )
        })
}

/// `[tokens, cols]` = the FFN's `[4096, 2048]`, every activation.
fn verify_cases() -> Vec<Case> {
    ACTIVATIONS
        .iter()
        .map(|&a| Case::new(&[4096, FFN], variant(a)))
        .collect()
}

fn check_case(dev: &Arc<Device>, dtype: DType, case: &Case, seed: u64) -> Result<Vec<CheckRow>> {
    let act = activation(case)?;
    let row = with_dtype!(dtype, check(dev, case.dim(0), case.dim(1), act, true, seed))?;
    Ok(vec![row])
}

/// The kernel against the reference on random x in [-6, 6] and bias in
/// [-2, 2] (|x + bias| <= 8, the range [`kernel::TOL_SMOOTH_F32`] is derived
/// for) from `seed`; also checks that the in-place form writes the same
/// bits as the out-of-place one.
///
/// # Errors
/// Whatever the kernel or the reference reports.
pub fn check<T: DeviceElement>(
    dev: &Arc<Device>,
    rows: usize,
    cols: usize,
    act: Activation,
    with_bias: bool,
    seed: u64,
) -> Result<CheckRow> {
    let mut rng = SplitMix64::new(seed);
    let (xs, xw) = random_storage::<T>(&mut rng, rows * cols, -6.0, 6.0);
    let (bs, bw) = random_storage::<T>(&mut rng, cols, -2.0, 2.0);
    let expected = reference(&xw, with_bias.then_some(&bw[..]), cols, act)?;
    let mut x = DeviceTensor::from_host(dev, &xs, &[rows, cols])?;
    let b = DeviceTensor::from_host(dev, &bs, &[cols])?;
    let bias = with_bias.then_some(&b);
    let out = bias_activation(&x, bias, act)?;
    let got_raw = out.to_host()?;
    let mut row = CheckRow::compare(
        format!("bias+{}", variant(act)),
        T::DTYPE,
        format!("{rows}x{cols}"),
        &widen(&got_raw),
        &expected,
        kernel::tolerance(act, T::DTYPE),
    );
    bias_activation_in_place(&mut x, bias, act)?;
    let in_place = x.to_host()?;
    if bytemuck::cast_slice::<T, u8>(&in_place) != bytemuck::cast_slice::<T, u8>(&got_raw) {
        row.passed = false;
        row.note = format!("in place differs from out of place; {}", row.note);
    }
    Ok(row)
}

/// The FFN's `[tokens, 2048]` (128 and 16384 tokens): relu, gelu, swish.
fn bench_cases(quick: bool) -> Vec<Case> {
    let tokens: &[usize] = if quick { &[16384] } else { &[128, 16384] };
    tokens
        .iter()
        .flat_map(|&n| {
            [Activation::Relu, Activation::Gelu, Activation::Swish]
                .map(|a| Case::new(&[n, FFN], variant(a)))
        })
        .collect()
}

/// Read x and the bias; write out (in place).
fn workload(case: &Case, dtype: DType) -> Workload {
    let (n, c) = (case.dim(0), case.dim(1));
    Workload {
        label: format!("bias_{}", case.variant),
        shape: format!("{n}x{c}"),
        bytes: (2 * n * c + c) as u64 * dtype.size_in_bytes() as u64,
        flops: 0,
    }
}

fn prepare(dev: &Arc<Device>, dtype: DType, case: &Case) -> Result<Run> {
    with_dtype!(dtype, prepare_typed(dev, case))
}

fn prepare_typed<T: DeviceElement>(dev: &Arc<Device>, case: &Case) -> Result<Run> {
    let (n, c) = (case.dim(0), case.dim(1));
    let act = activation(case)?;
    let mut rng = SplitMix64::new(0xbe4c ^ (n * c) as u64);
    let (fb, _) = random_storage::<T>(&mut rng, c, -1.0, 1.0);
    let (xs, _) = random_storage::<T>(&mut rng, n * c, -4.0, 4.0);
    let bias = DeviceTensor::from_host(dev, &fb, &[c])?;
    let mut x = DeviceTensor::from_host(dev, &xs, &[n, c])?;
    Ok(Box::new(move || {
        bias_activation_in_place(&mut x, Some(&bias), act)
    }))
}
