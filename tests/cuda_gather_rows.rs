//! Row gather (the KV cache's device copies) against a host copy: the ops
//! check cases (beam reorder of an opus-mt cache, a step's write), random
//! shapes, row maps and position ranges in every dtype (each alignment
//! unit: 16, 4 and 2 bytes), and the errors. On a GPU when there is one,
//! else executed on the SIMT emulator.

#[macro_use]
mod common_kernels;

use std::sync::Arc;

use common_kernels::{assert_rows, device_or_skip};
use proptest::prelude::*;
use transformer_kernels::cuda::gather_rows::{
    gather_columns_into, gather_rows, gather_rows_into, ColumnRange, PositionRange,
};
use transformer_kernels::cuda::numerics::SplitMix64;
use transformer_kernels::cuda::{Device, DeviceElement, DeviceTensor};
use transformer_kernels::ops::{self, gather_rows as op};

fn ops_cases<T: DeviceElement>(test: &str) {
    let Some(dev) = device_or_skip(test) else {
        return;
    };
    for case in (op::OP.verify_cases)() {
        let rows = (op::OP.check)(&dev, T::DTYPE, &case, 7);
        assert_rows(rows, &format!("{test} {case:?}"));
    }
    assert!(ops::find("gather_rows").is_some());
}

per_dtype! {
    ops_cases_f32 => ops_cases::<f32>;
    ops_cases_f16 => ops_cases::<half::f16>;
    ops_cases_bf16 => ops_cases::<half::bf16>;
}

/// One random copy: `src` `[sr, sp, w]` into `dst` `[dr, dp, w]` (pre-filled),
/// with a row map or not, compared element for element with the host copy.
#[allow(clippy::too_many_arguments)] // the copy's natural parameters
fn one_copy<T: DeviceElement>(
    dev: &Arc<Device>,
    (sr, sp, dr, dp, w): (usize, usize, usize, usize, usize),
    range: PositionRange,
    map: Option<Vec<usize>>,
    seed: u64,
) {
    let mut rng = SplitMix64::new(seed);
    let src: Vec<T> = (0..sr * sp * w)
        .map(|_| T::from_f32(rng.uniform(-8.0, 8.0)))
        .collect();
    let dst0: Vec<T> = (0..dr * dp * w)
        .map(|_| T::from_f32(rng.uniform(-8.0, 8.0)))
        .collect();
    let s = DeviceTensor::from_host(dev, &src, &[sr, sp, w]).unwrap();
    let mut d = DeviceTensor::from_host(dev, &dst0, &[dr, dp, w]).unwrap();
    gather_rows_into(&s, map.as_deref(), range, &mut d).unwrap();
    let mut want = dst0;
    for r in 0..dr {
        let m = map.as_ref().map_or(r, |m| m[r]);
        let from = &src[(m * sp + range.src_at) * w..][..range.len * w];
        want[(r * dp + range.dst_at) * w..][..range.len * w].copy_from_slice(from);
    }
    let got = d.to_host().unwrap();
    for (i, (g, e)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            bytemuck::bytes_of(g),
            bytemuck::bytes_of(e),
            "{} index {i}: src [{sr},{sp},{w}] dst [{dr},{dp},{w}] {range:?} map {map:?}",
            T::DTYPE
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_copies_equal_the_host_copy(
        sr in 1usize..9,
        dr in 1usize..9,
        sp in 1usize..20,
        dp in 1usize..20,
        w in 1usize..70,
        seed in any::<u64>(),
        use_map in any::<bool>(),
    ) {
        let Some(dev) = device_or_skip("random_copies") else { return Ok(()) };
        let mut rng = SplitMix64::new(seed);
        let len = rng.below(sp.min(dp) as u64 + 1) as usize;
        let src_at = rng.below((sp - len) as u64 + 1) as usize;
        let dst_at = rng.below((dp - len) as u64 + 1) as usize;
        let range = PositionRange { src_at, dst_at, len };
        let (dr, map) = if use_map {
            (dr, Some((0..dr).map(|_| rng.below(sr as u64) as usize).collect()))
        } else {
            (sr, None)
        };
        let dims = (sr, sp, dr, dp, w);
        one_copy::<f32>(&dev, dims, range, map.clone(), seed);
        one_copy::<half::f16>(&dev, dims, range, map.clone(), seed);
        one_copy::<half::bf16>(&dev, dims, range, map, seed);
    }
}

#[test]
fn widths_take_every_unit_and_a_grown_cache_keeps_zeros() {
    let Some(dev) = device_or_skip("units") else {
        return;
    };
    // f16 width 8 (16 B rows: 16-byte units), 6 (12 B: 4-byte), 3 (6 B: 2-byte).
    for w in [8, 6, 3] {
        let r = PositionRange {
            src_at: 1,
            dst_at: 2,
            len: 3,
        };
        one_copy::<half::f16>(&dev, (3, 5, 2, 6, w), r, Some(vec![2, 0]), w as u64);
    }
    // Growing: positions past len stay zero in the new buffer.
    let src = DeviceTensor::from_host(&dev, &[1.0f32; 2 * 3 * 4], &[2, 3, 4]).unwrap();
    let grown = gather_rows(&src, &[1, 0], 2, 5).unwrap();
    assert_eq!(grown.shape(), &[2, 5, 4]);
    let h = grown.to_host().unwrap();
    for r in 0..2 {
        assert!(h[r * 20..][..8].iter().all(|&x| x == 1.0));
        assert!(h[r * 20 + 8..][..12].iter().all(|&x| x == 0.0));
    }
}

#[test]
fn bad_arguments_are_errors() {
    let Some(dev) = device_or_skip("errors") else {
        return;
    };
    let src = DeviceTensor::<f32>::zeros(&dev, &[2, 3, 4]).unwrap();
    let r = |src_at, dst_at, len| PositionRange {
        src_at,
        dst_at,
        len,
    };
    let mut dst = DeviceTensor::<f32>::zeros(&dev, &[2, 3, 4]).unwrap();
    let e = gather_rows_into(&src, None, r(0, 1, 3), &mut dst).unwrap_err();
    assert!(e.to_string().contains("gather_rows"), "{e}");
    assert!(gather_rows_into(&src, None, r(1, 0, 3), &mut dst).is_err());
    assert!(gather_rows_into(&src, Some(&[0, 2]), r(0, 0, 1), &mut dst).is_err());
    assert!(gather_rows_into(&src, Some(&[0]), r(0, 0, 1), &mut dst).is_err());
    let mut narrow = DeviceTensor::<f32>::zeros(&dev, &[2, 3, 5]).unwrap();
    assert!(gather_rows_into(&src, None, r(0, 0, 1), &mut narrow).is_err());
    let mut fewer = DeviceTensor::<f32>::zeros(&dev, &[1, 3, 4]).unwrap();
    assert!(gather_rows_into(&src, None, r(0, 0, 1), &mut fewer).is_err());
    let flat = DeviceTensor::<f32>::zeros(&dev, &[24]).unwrap();
    assert!(gather_rows(&flat, &[0], 1, 1).is_err());
    // Overflowing ranges are shape errors, not panics.
    assert!(gather_rows_into(&src, None, r(usize::MAX, 0, 2), &mut dst).is_err());
}

/// One random column-block copy: columns `cols` of `src` `[sr, sp, sw]`
/// into `dst` `[dr, dp, dw]` (pre-filled), compared with the host copy.
#[allow(clippy::too_many_arguments)] // the copy's natural parameters
fn one_column_copy<T: DeviceElement>(
    dev: &Arc<Device>,
    (sr, sp, sw, dp, dw): (usize, usize, usize, usize, usize),
    range: PositionRange,
    cols: ColumnRange,
    map: Option<Vec<usize>>,
    seed: u64,
) {
    let dr = map.as_ref().map_or(sr, Vec::len);
    let mut rng = SplitMix64::new(seed);
    let src: Vec<T> = (0..sr * sp * sw)
        .map(|_| T::from_f32(rng.uniform(-8.0, 8.0)))
        .collect();
    let dst0: Vec<T> = (0..dr * dp * dw)
        .map(|_| T::from_f32(rng.uniform(-8.0, 8.0)))
        .collect();
    let s = DeviceTensor::from_host(dev, &src, &[sr, sp, sw]).unwrap();
    let mut d = DeviceTensor::from_host(dev, &dst0, &[dr, dp, dw]).unwrap();
    gather_columns_into(&s, map.as_deref(), range, cols, &mut d).unwrap();
    let mut want = dst0;
    for r in 0..dr {
        let m = map.as_ref().map_or(r, |m| m[r]);
        for p in 0..range.len {
            let from = &src[(m * sp + range.src_at + p) * sw + cols.src..][..cols.width];
            want[(r * dp + range.dst_at + p) * dw + cols.dst..][..cols.width].copy_from_slice(from);
        }
    }
    let got = d.to_host().unwrap();
    for (i, (g, e)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            bytemuck::bytes_of(g),
            bytemuck::bytes_of(e),
            "{} index {i}: src [{sr},{sp},{sw}] dst [{dr},{dp},{dw}] {range:?} {cols:?} map {map:?}",
            T::DTYPE
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_column_blocks_equal_the_host_copy(
        sr in 1usize..6,
        sp in 1usize..9,
        dp in 1usize..9,
        sw in 1usize..40,
        dw in 1usize..40,
        seed in any::<u64>(),
        use_map in any::<bool>(),
    ) {
        let Some(dev) = device_or_skip("random_column_blocks") else { return Ok(()) };
        let mut rng = SplitMix64::new(seed);
        let len = rng.below(sp.min(dp) as u64 + 1) as usize;
        let range = PositionRange {
            src_at: rng.below((sp - len) as u64 + 1) as usize,
            dst_at: rng.below((dp - len) as u64 + 1) as usize,
            len,
        };
        let width = rng.below(sw.min(dw) as u64 + 1) as usize;
        let cols = ColumnRange {
            src: rng.below((sw - width) as u64 + 1) as usize,
            dst: rng.below((dw - width) as u64 + 1) as usize,
            width,
        };
        let map = use_map.then(|| (0..1 + rng.below(6) as usize).map(|_| rng.below(sr as u64) as usize).collect());
        let dims = (sr, sp, sw, dp, dw);
        one_column_copy::<f32>(&dev, dims, range, cols, map.clone(), seed);
        one_column_copy::<half::f16>(&dev, dims, range, cols, map.clone(), seed);
        one_column_copy::<half::bf16>(&dev, dims, range, cols, map, seed);
    }
}

#[test]
fn the_k_columns_of_a_fused_qkv_step_go_to_the_cache() {
    let Some(dev) = device_or_skip("qkv_columns") else {
        return;
    };
    // d = 64 in bf16: 128-byte column blocks, 16-byte units.
    let r = PositionRange {
        src_at: 0,
        dst_at: 5,
        len: 1,
    };
    let c = ColumnRange {
        src: 64,
        dst: 0,
        width: 64,
    };
    one_column_copy::<half::bf16>(&dev, (4, 1, 192, 9, 64), r, c, None, 3);
    // A teacher-forced pass: 7 positions at once.
    let r = PositionRange {
        src_at: 0,
        dst_at: 0,
        len: 7,
    };
    one_column_copy::<half::bf16>(&dev, (4, 7, 192, 9, 64), r, c, None, 4);
    let bad = ColumnRange {
        src: 150,
        dst: 0,
        width: 64,
    };
    let src = DeviceTensor::<f32>::zeros(&dev, &[1, 1, 192]).unwrap();
    let mut dst = DeviceTensor::<f32>::zeros(&dev, &[1, 2, 64]).unwrap();
    assert!(gather_columns_into(&src, None, r, bad, &mut dst).is_err());
}

#[test]
fn one_uploaded_row_map_serves_every_tensor_and_is_checked_each_time() {
    use transformer_kernels::cuda::gather_rows::{gather_rows_map, RowMap};
    let Some(dev) = device_or_skip("row_map") else {
        return;
    };
    let map = RowMap::new(&dev, &[2, 0, 2]).unwrap();
    assert_eq!(map.rows(), &[2, 0, 2]);
    for seed in 0..2u64 {
        let host: Vec<f32> = (0..3 * 4 * 5).map(|i| (i as f32) + seed as f32).collect();
        let src = DeviceTensor::from_host(&dev, &host, &[3, 4, 5]).unwrap();
        let got = gather_rows_map(&src, &map, 3, 6)
            .unwrap()
            .to_host()
            .unwrap();
        let via_host = gather_rows(&src, &[2, 0, 2], 3, 6)
            .unwrap()
            .to_host()
            .unwrap();
        assert_eq!(got, via_host, "seed {seed}");
        assert_eq!(&got[..15], &host[2 * 20..][..15]);
    }
    // The map's rows are checked against every source.
    let small = DeviceTensor::<f32>::zeros(&dev, &[2, 4, 5]).unwrap();
    let e = gather_rows_map(&small, &map, 1, 4).unwrap_err();
    assert!(e.to_string().contains("row 2 >= src rows 2"), "{e}");
}
