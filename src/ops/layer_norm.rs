//! Residual + LayerNorm: check against `cpu::layer_norm::layer_norm`
//! (f64 statistics) and workload (bytes of x, residual, gamma, beta, out).

use std::sync::Arc;

use super::model_shapes::{D_MODEL, LAYER_NORM_EPS};
use super::{Case, CheckRow, Op, Run, Workload};
use crate::cpu::layer_norm::layer_norm as reference;
use crate::cuda::layer_norm::{self as kernel, layer_norm, layer_norm_into};
use crate::cuda::numerics::{random_storage, widen, SplitMix64};
use crate::cuda::{Device, DeviceElement, DeviceTensor};
use crate::{DType, Result};

/// The registry entry.
pub const OP: Op = Op {
    name: "layer_norm",
    dims: &["ROWS", "HIDDEN"],
    kernels: kernel::kernels,
    verify_cases,
    check: check_case,
    bench_cases,
    workload,
    prepare,
};

/// `[rows, hidden]`, variant `residual` (x + residual) or `plain`.
fn verify_cases() -> Vec<Case> {
    [(16384, 512), (1, 512), (77, 1024), (5, 513), (3, 8192)]
        .iter()
        .map(|&(t, h)| Case::new(&[t, h], "residual"))
        .collect()
}

fn check_case(dev: &Arc<Device>, dtype: DType, case: &Case, seed: u64) -> Result<Vec<CheckRow>> {
    let residual = case.variant != "plain";
    let row = with_dtype!(dtype, check(dev, case.dim(0), case.dim(1), residual, seed))?;
    Ok(vec![row])
}

/// The kernel against the reference on random `[rows, hidden]` inputs
/// (x, residual, gamma in [-2, 2], beta in [-1, 1]) drawn from `seed`,
/// with or without the residual, under [`kernel::tolerance`].
///
/// # Errors
/// Whatever the kernel or the reference reports (bad shapes, device errors).
pub fn check<T: DeviceElement>(
    dev: &Arc<Device>,
    rows: usize,
    hidden: usize,
    with_residual: bool,
    seed: u64,
) -> Result<CheckRow> {
    let mut rng = SplitMix64::new(seed);
    let (xs, xw) = random_storage::<T>(&mut rng, rows * hidden, -2.0, 2.0);
    let (rs, rw) = random_storage::<T>(&mut rng, rows * hidden, -2.0, 2.0);
    let (gs, gw) = random_storage::<T>(&mut rng, hidden, -2.0, 2.0);
    let (bs, bw) = random_storage::<T>(&mut rng, hidden, -1.0, 1.0);
    let expected = reference(
        &xw,
        with_residual.then_some(&rw[..]),
        &gw,
        &bw,
        hidden,
        LAYER_NORM_EPS,
    )?;
    let x = DeviceTensor::from_host(dev, &xs, &[rows, hidden])?;
    let r = DeviceTensor::from_host(dev, &rs, &[rows, hidden])?;
    let g = DeviceTensor::from_host(dev, &gs, &[hidden])?;
    let b = DeviceTensor::from_host(dev, &bs, &[hidden])?;
    let out = layer_norm(&x, with_residual.then_some(&r), &g, &b, LAYER_NORM_EPS)?;
    let got = widen(&out.to_host()?);
    let label = if with_residual {
        "layer_norm(x+residual)"
    } else {
        "layer_norm(x)"
    };
    Ok(CheckRow::compare(
        label,
        T::DTYPE,
        format!("{rows}x{hidden}"),
        &got,
        &expected,
        kernel::tolerance(T::DTYPE),
    ))
}

/// Tokens x d_model 512 (one decoder step to a large batch), and 16384 x 1024.
fn bench_cases(quick: bool) -> Vec<Case> {
    let tokens: &[usize] = if quick {
        &[16384]
    } else {
        &[1, 16, 128, 1024, 4096, 16384]
    };
    let mut v: Vec<Case> = tokens
        .iter()
        .map(|&n| Case::new(&[n, D_MODEL], "residual"))
        .collect();
    v.push(Case::new(&[16384, 1024], "residual"));
    v
}

/// Read x, residual, gamma, beta; write out.
fn workload(case: &Case, dtype: DType) -> Workload {
    let (n, h) = (case.dim(0), case.dim(1));
    Workload {
        label: "layer_norm_residual".into(),
        shape: format!("{n}x{h}"),
        bytes: (3 * n * h + 2 * h) as u64 * dtype.size_in_bytes() as u64,
        flops: 0,
    }
}

fn prepare(dev: &Arc<Device>, dtype: DType, case: &Case) -> Result<Run> {
    with_dtype!(dtype, prepare_typed(dev, case))
}

fn prepare_typed<T: DeviceElement>(dev: &Arc<Device>, case: &Case) -> Result<Run> {
    let (n, h) = (case.dim(0), case.dim(1));
    let mut rng = SplitMix64::new(0xbe4c ^ (n * h) as u64);
    let (gs, _) = random_storage::<T>(&mut rng, h, 0.5, 1.5);
    let (xs, _) = random_storage::<T>(&mut rng, n * h, -2.0, 2.0);
    let gamma = DeviceTensor::from_host(dev, &gs, &[h])?;
    let beta = DeviceTensor::from_host(dev, &gs, &[h])?;
    let x = DeviceTensor::from_host(dev, &xs, &[n, h])?;
    let r = DeviceTensor::from_host(dev, &xs, &[n, h])?;
    let mut out = DeviceTensor::<T>::zeros(dev, &[n, h])?;
    Ok(Box::new(move || {
        layer_norm_into(&x, Some(&r), &gamma, &beta, LAYER_NORM_EPS, &mut out)
    }))
}
