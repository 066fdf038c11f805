//! Row gather (the KV cache's copies): check against a host copy
//! (bit-exact: the kernel moves bits) and workload (bytes read + written).
//!
//! Cases are `rows x positions x len x width`: a cache of `rows` rows and
//! `positions` capacity, `len` valid positions of `width` elements.
//! Variants: `reorder` (beam search's surviving rows, repeats allowed, into
//! a new buffer), `write` (one step's `[rows, 1, width]` into the cache at
//! position `len - 1`).

use std::sync::Arc;

use super::model_shapes::D_MODEL;
use super::{Case, CheckRow, Op, Run, Workload};
use crate::cuda::gather_rows::{self as kernel, gather_rows_into, PositionRange};
use crate::cuda::numerics::{random_storage, widen, SplitMix64, Tolerance};
use crate::cuda::{Device, DeviceElement, DeviceTensor};
use crate::{DType, Error, Result};

/// The registry entry.
pub const OP: Op = Op {
    name: "gather_rows",
    dims: &["rows", "positions", "len", "width"],
    kernels: kernel::kernels,
    verify_cases,
    check: check_case,
    bench_cases,
    workload,
    prepare,
};

/// A copy of bits: the results must be identical.
pub const TOL_EXACT: Tolerance = Tolerance {
    abs: 0.0,
    rel: 0.0,
    reason: "a copy: bit-exact",
};

/// Beam 4 × 32 sentences of opus-mt at position 37 of 64, and an awkward
/// small shape (width 20: 2- or 4-byte units only, not 16).
fn verify_cases() -> Vec<Case> {
    let mut v = Vec::new();
    for variant in ["reorder", "write"] {
        v.push(Case::new(&[128, 64, 37, D_MODEL], variant));
        v.push(Case::new(&[7, 13, 5, 20], variant));
    }
    v
}

/// The rows a `reorder` case keeps: a permutation with repeats (row r takes
/// row `(r * 7 + 3) % rows`, and every fourth row its neighbour's source).
fn reorder_map(rows: usize) -> Vec<usize> {
    (0..rows)
        .map(|r| {
            let s = (r * 7 + 3) % rows.max(1);
            if r % 4 == 3 && r > 0 {
                (((r - 1) * 7) + 3) % rows
            } else {
                s
            }
        })
        .collect()
}

fn check_case(dev: &Arc<Device>, dtype: DType, case: &Case, seed: u64) -> Result<Vec<CheckRow>> {
    Ok(vec![with_dtype!(dtype, check(dev, case, seed))?])
}

/// Runs the case on random data (destination pre-filled with other random
/// data, so untouched positions are checked too) and compares every
/// element of the destination with the host copy.
///
/// # Errors
/// [`Error::InvalidArgument`] for an unknown variant; the kernel's errors.
pub fn check<T: DeviceElement>(dev: &Arc<Device>, case: &Case, seed: u64) -> Result<CheckRow> {
    let (rows, cap, len, width) = (case.dim(0), case.dim(1), case.dim(2), case.dim(3));
    let mut rng = SplitMix64::new(seed);
    let (dst0, _) = random_storage::<T>(&mut rng, rows * cap * width, -4.0, 4.0);
    let mut dst = DeviceTensor::from_host(dev, &dst0, &[rows, cap, width])?;
    let mut expected = dst0.clone();
    match case.variant.as_str() {
        "reorder" => {
            let (src, _) = random_storage::<T>(&mut rng, rows * cap * width, -4.0, 4.0);
            let map = reorder_map(rows);
            let s = DeviceTensor::from_host(dev, &src, &[rows, cap, width])?;
            let range = PositionRange {
                src_at: 0,
                dst_at: 0,
                len,
            };
            gather_rows_into(&s, Some(&map), range, &mut dst)?;
            for (r, &m) in map.iter().enumerate() {
                expected[r * cap * width..][..len * width]
                    .copy_from_slice(&src[m * cap * width..][..len * width]);
            }
        }
        "write" => {
            let (src, _) = random_storage::<T>(&mut rng, rows * width, -4.0, 4.0);
            let s = DeviceTensor::from_host(dev, &src, &[rows, 1, width])?;
            let at = len.saturating_sub(1);
            let range = PositionRange {
                src_at: 0,
                dst_at: at,
                len: 1,
            };
            gather_rows_into(&s, None, range, &mut dst)?;
            for r in 0..rows {
                expected[(r * cap + at) * width..][..width]
                    .copy_from_slice(&src[r * width..][..width]);
            }
        }
        other => {
            return Err(Error::invalid(
                "gather_rows",
                format!("unknown variant {other:?} (reorder, write)"),
            ))
        }
    }
    let got = widen(&dst.to_host()?);
    Ok(CheckRow::compare(
        format!("gather_rows {}", case.variant),
        T::DTYPE,
        format!("{rows}x{cap}x{len}x{width}"),
        &got,
        &widen(&expected),
        TOL_EXACT,
    ))
}

/// Beam reorder of the opus-mt KV cache (one layer's K) at batch 32 × 4
/// beams, at short and long lengths.
fn bench_cases(quick: bool) -> Vec<Case> {
    let lens: &[usize] = if quick { &[64] } else { &[16, 64] };
    lens.iter()
        .map(|&l| Case::new(&[128, 128, l, D_MODEL], "reorder"))
        .collect()
}

/// The valid positions read once and written once.
fn workload(case: &Case, dtype: DType) -> Workload {
    let (rows, cap, len, width) = (case.dim(0), case.dim(1), case.dim(2), case.dim(3));
    let moved = if case.variant == "write" { 1 } else { len };
    Workload {
        label: format!("gather_rows_{}", case.variant),
        shape: format!("{rows}x{cap}x{len}x{width}"),
        bytes: 2 * (rows * moved * width * dtype.size_in_bytes()) as u64,
        flops: 0,
    }
}

fn prepare(dev: &Arc<Device>, dtype: DType, case: &Case) -> Result<Run> {
    with_dtype!(dtype, prepare_typed(dev, case))
}

/// The reorder into a preallocated buffer, so that only the kernel (and
/// the row map's upload) is timed.
fn prepare_typed<T: DeviceElement>(dev: &Arc<Device>, case: &Case) -> Result<Run> {
    let (rows, cap, len, width) = (case.dim(0), case.dim(1), case.dim(2), case.dim(3));
    let src = DeviceTensor::<T>::zeros(dev, &[rows, cap, width])?;
    let mut dst = DeviceTensor::<T>::zeros(dev, &[rows, cap, width])?;
    let map = reorder_map(rows);
    let range = PositionRange {
        src_at: 0,
        dst_at: 0,
        len,
    };
    Ok(Box::new(move || {
        gather_rows_into(&src, Some(&map), range, &mut dst)
    }))
}
