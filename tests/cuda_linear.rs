//! The linear layer (`act(x · wᵀ + bias) + residual`, tensor cores for f16 /
//! bf16, SIMT for f32, split-K) against the f64 reference under the
//! FlashAttention-style error rule of `ops::linear`, for f32, f16 and bf16
//! storage: ../shared/CASES.md B3 (1000 × 999 × 1001; K = 1, below the
//! k-step, k-step ± 1; N = 58101), every epilogue combination, every tile
//! and split count forced on awkward shapes, random shapes by proptest
//! (m, n, k in 1..300 and tile ± 1), a misaligned operand through the raw
//! API, k = 0, and the errors of bad shapes and plans. On the emulator in
//! CI (a GPU when there is one); every test prints one "skipped" line
//! without either.
//!
//! Emulator cost, for scale (2-core machine, with the f64 reference): B3
//! takes ~10 s per 16-bit dtype and ~20 s in f32; the other cases keep
//! m · n · k small (< 30M) where the shape itself is not the point.

#[macro_use]
mod common_kernels;

use std::sync::Arc;

use half::{bf16, f16};
use proptest::prelude::*;
use transformer_kernels::cuda::linear::{
    self, linear, linear_accumulate, Epilogue, LinearPlan, Tile, MAX_SPLITS,
};
use transformer_kernels::cuda::numerics::{random_storage, widen, SplitMix64};
use transformer_kernels::cuda::{Device, DeviceElement, DeviceTensor};
use transformer_kernels::ops::linear::{check as op_check, Spec};
use transformer_kernels::{Activation, DType, Error};

const ACTS: [Option<Activation>; 5] = [
    None,
    Some(Activation::Relu),
    Some(Activation::Gelu),
    Some(Activation::GeluTanh),
    Some(Activation::Swish),
];

/// The op's one check (`ops::linear::check`), asserted.
fn check<T: DeviceElement>(dev: &Arc<Device>, spec: &Spec, seed: u64) {
    let ctx = format!(
        "linear {} {}x{}x{} {} seed {seed:#x}",
        T::DTYPE,
        spec.m,
        spec.n,
        spec.k,
        spec.variant()
    );
    let row = op_check::<T>(dev, spec, seed);
    common_kernels::assert_rows(row.map(|r| vec![r]), &ctx);
}

fn full(m: usize, n: usize, k: usize) -> Spec {
    Spec {
        bias: true,
        activation: Some(Activation::Gelu),
        residual: true,
        ..Spec::new(m, n, k)
    }
}

/// The tiles with a kernel for `T`.
fn tiles<T: DeviceElement>() -> Vec<Tile> {
    match T::DTYPE {
        DType::F32 => vec![Tile::Simt64x64],
        DType::F16 | DType::BF16 => Tile::TENSOR_CORE.to_vec(),
    }
}

/// CASES.md B3: 1000 × 999 × 1001 with the full epilogue (the heuristic's
/// plan), then k = 1, k below the k-step, k-step ± 1 of every tile of the
/// dtype (forced), and n = 58101 (an opus-mt vocabulary) at decode rows.
fn cases_b3<T: DeviceElement>(test: &str) {
    let Some(dev) = common_kernels::device_or_skip(test) else {
        return;
    };
    check::<T>(&dev, &full(1000, 999, 1001), 0xb3);
    for tile in tiles::<T>() {
        let bk = tile.bk();
        for k in [1, bk / 2 - 1, bk - 1, bk, bk + 1, 2 * bk + 8] {
            let spec = Spec {
                plan: Some(LinearPlan { tile, splits: 1 }),
                ..full(70, 99, k)
            };
            check::<T>(&dev, &spec, 0xb3 ^ k as u64);
        }
    }
    let logits = Spec {
        bias: true,
        ..Spec::new(3, 58101, 512)
    };
    check::<T>(&dev, &logits, 0x58101);
}

/// Every epilogue: bias or not × no activation / relu / gelu / gelu_tanh /
/// swish × residual or not, on an aligned shape (16-byte epilogue path)
/// and an unaligned one (k and n odd); the residual cases also check that
/// the in-place form (residual = out) writes the same bits.
fn every_epilogue<T: DeviceElement>(test: &str) {
    let Some(dev) = common_kernels::device_or_skip(test) else {
        return;
    };
    for (m, n, k) in [(40, 72, 64), (37, 45, 67)] {
        for bias in [false, true] {
            for activation in ACTS {
                for residual in [false, true] {
                    let spec = Spec {
                        bias,
                        activation,
                        residual,
                        check_in_place: residual,
                        ..Spec::new(m, n, k)
                    };
                    check::<T>(&dev, &spec, (m * 1000 + n) as u64);
                }
            }
        }
    }
}

/// Every tile of the dtype, 1 and 3 k-slices, on shapes one past a tile
/// (every edge partial) and one short of it.
fn every_tile_and_split<T: DeviceElement>(test: &str) {
    let Some(dev) = common_kernels::device_or_skip(test) else {
        return;
    };
    for tile in tiles::<T>() {
        for splits in [1, 3] {
            let (bm, bn) = (tile.bm(), tile.bn());
            for (m, n, k) in [(bm + 1, bn + 1, 200), (bm - 1, bn + 8, 136)] {
                let spec = Spec {
                    plan: Some(LinearPlan { tile, splits }),
                    check_in_place: true,
                    ..full(m, n, k)
                };
                check::<T>(&dev, &spec, (m + n + k) as u64);
            }
        }
    }
}

/// Random shapes (m, n, k in 1..300, or a tile size ± 1), random epilogues
/// and either the heuristic's plan or a random forced one.
fn random_shapes<T: DeviceElement>(test: &str) {
    let Some(dev) = common_kernels::device_or_skip(test) else {
        return;
    };
    let ts = tiles::<T>();
    let dim = || {
        prop_oneof![
            1usize..300,
            prop::sample::select(vec![
                15usize, 16, 17, 63, 64, 65, 127, 128, 129, 255, 256, 257
            ])
        ]
    };
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(20));
    runner
        .run(
            &(
                dim(),
                dim(),
                dim(),
                any::<bool>(),
                0usize..ACTS.len(),
                any::<bool>(),
                0usize..=ts.len(),
                1u32..=4,
                any::<u64>(),
            ),
            |(m, n, k, bias, a, residual, t, splits, seed)| {
                let plan = ts.get(t).map(|&tile| LinearPlan { tile, splits });
                let spec = Spec {
                    bias,
                    activation: ACTS[a],
                    residual,
                    plan,
                    ..Spec::new(m, n, k)
                };
                check::<T>(&dev, &spec, seed);
                Ok(())
            },
        )
        .unwrap();
}

per_dtype! {
    cases_b3_f32 => cases_b3::<f32>;
    cases_b3_f16 => cases_b3::<f16>;
    cases_b3_bf16 => cases_b3::<bf16>;
    every_epilogue_f32 => every_epilogue::<f32>;
    every_epilogue_f16 => every_epilogue::<f16>;
    every_epilogue_bf16 => every_epilogue::<bf16>;
    every_tile_and_split_f32 => every_tile_and_split::<f32>;
    every_tile_and_split_f16 => every_tile_and_split::<f16>;
    every_tile_and_split_bf16 => every_tile_and_split::<bf16>;
    random_shapes_f32 => random_shapes::<f32>;
    random_shapes_f16 => random_shapes::<f16>;
    random_shapes_bf16 => random_shapes::<bf16>;
}

fn upload<T: DeviceElement>(
    dev: &Arc<Device>,
    rng: &mut SplitMix64,
    shape: &[usize],
) -> (DeviceTensor<T>, Vec<f32>) {
    let n = shape.iter().product();
    let (s, w) = random_storage::<T>(rng, n, -1.0, 1.0);
    (DeviceTensor::from_host(dev, &s, shape).unwrap(), w)
}

/// k = 0: an empty sum, so out = act(bias) + residual exactly.
#[test]
fn k_zero_gives_the_epilogue_of_zero() {
    let Some(dev) = common_kernels::device_or_skip("k_zero_gives_the_epilogue_of_zero") else {
        return;
    };
    let mut rng = SplitMix64::new(7);
    let x = DeviceTensor::<f32>::zeros(&dev, &[5, 0]).unwrap();
    let w = DeviceTensor::<f32>::zeros(&dev, &[6, 0]).unwrap();
    let (b, bw) = upload::<f32>(&dev, &mut rng, &[6]);
    let (r, rw) = upload::<f32>(&dev, &mut rng, &[5, 6]);
    let epi = Epilogue {
        bias: Some(&b),
        activation: Some(Activation::Relu),
        residual: Some(&r),
    };
    let got = linear(&x, &w, epi).unwrap().to_host().unwrap();
    for i in 0..5 {
        for j in 0..6 {
            assert_eq!(got[i * 6 + j], bw[j].max(0.0) + rw[i * 6 + j], "({i}, {j})");
        }
    }
}

/// A batched input `[batch, seq, k]` is m = batch · seq rows; the output
/// keeps the leading dimensions.
#[test]
fn leading_dimensions_are_rows() {
    let Some(dev) = common_kernels::device_or_skip("leading_dimensions_are_rows") else {
        return;
    };
    let mut rng = SplitMix64::new(8);
    let (x, _) = upload::<bf16>(&dev, &mut rng, &[2, 3, 16]);
    let (w, _) = upload::<bf16>(&dev, &mut rng, &[24, 16]);
    let y3 = linear(&x, &w, Epilogue::default()).unwrap();
    assert_eq!(y3.shape(), &[2, 3, 24]);
    let x2 = DeviceTensor::from_host(&dev, &x.to_host().unwrap(), &[6, 16]).unwrap();
    let y2 = linear(&x2, &w, Epilogue::default()).unwrap();
    assert_eq!(y3.to_host().unwrap(), y2.to_host().unwrap());
}

/// The same call twice gives the same bits (split-K sums its slices in a
/// fixed order; no atomics).
#[test]
fn split_k_is_deterministic() {
    let Some(dev) = common_kernels::device_or_skip("split_k_is_deterministic") else {
        return;
    };
    let mut rng = SplitMix64::new(9);
    let (x, _) = upload::<f16>(&dev, &mut rng, &[3, 512]);
    let (w, _) = upload::<f16>(&dev, &mut rng, &[96, 512]);
    let plan = LinearPlan {
        tile: Tile::T16x64,
        splits: 4,
    };
    let a = linear::linear_with_plan(&x, &w, Epilogue::default(), plan).unwrap();
    let b = linear::linear_with_plan(&x, &w, Epilogue::default(), plan).unwrap();
    assert_eq!(a.to_host().unwrap(), b.to_host().unwrap());
}

/// x at an address that is not 16-byte aligned (k % 8 == 0): the raw API
/// refuses the cp.async kernel for it, and the unaligned kernel computes
/// the right product.
#[test]
fn misaligned_operand_takes_the_element_path() {
    let Some(dev) = common_kernels::device_or_skip("misaligned_operand_takes_the_element_path")
    else {
        return;
    };
    let (m, n, k) = (5, 24, 32);
    let mut rng = SplitMix64::new(10);
    // One spare element in front: x starts 2 bytes into the allocation.
    let (xs, xw) = random_storage::<bf16>(&mut rng, m * k + 1, -1.0, 1.0);
    let (ws, ww) = random_storage::<bf16>(&mut rng, n * k, -1.0, 1.0);
    let xbuf = DeviceTensor::from_host(&dev, &xs, &[m * k + 1]).unwrap();
    let w = DeviceTensor::from_host(&dev, &ws, &[n, k]).unwrap();
    let mut out = DeviceTensor::<bf16>::zeros(&dev, &[m, n]).unwrap();
    let plan = LinearPlan {
        tile: Tile::T16x64,
        splits: 1,
    };
    let params = |out: &mut DeviceTensor<bf16>| transformer_kernels::cuda::params::LinearParams {
        x: (xbuf.device_ptr() + 2) as *const core::ffi::c_void,
        w: w.device_ptr() as *const core::ffi::c_void,
        bias: core::ptr::null(),
        residual: core::ptr::null(),
        out: out.device_ptr_mut() as *mut core::ffi::c_void,
        partials: core::ptr::null_mut(),
        m: m as i64,
        n: n as i64,
        k: k as i64,
        activation: -1,
        splits: 1,
        k_steps_per_split: 1,
    };
    let p = params(&mut out);
    // SAFETY: x (offset by one element) holds m·k bf16, w n·k, out m·n.
    let refused = unsafe { linear::launch(&dev, DType::BF16, plan, true, p) };
    assert!(
        matches!(refused, Err(Error::InvalidArgument { .. })),
        "{refused:?}"
    );
    let p = params(&mut out);
    // SAFETY: as above.
    unsafe { linear::launch(&dev, DType::BF16, plan, false, p) }.unwrap();
    let got = widen(&out.to_host().unwrap());
    let x = &xw[1..];
    for i in 0..m {
        for j in 0..n {
            let e: f64 = (0..k)
                .map(|c| f64::from(x[i * k + c]) * f64::from(ww[j * k + c]))
                .sum();
            // One bf16 rounding of the f32 sum (2^-9 relative) plus f32 sums of 32 terms.
            assert!(
                (f64::from(got[i * n + j]) - e).abs() <= e.abs() * 2f64.powi(-8) + 1e-4,
                "({i}, {j}): {} vs {e}",
                got[i * n + j]
            );
        }
    }
}

/// Bad shapes and plans are errors naming the problem, never a launch.
#[test]
fn bad_shapes_and_plans_are_errors() {
    let Some(dev) = common_kernels::device_or_skip("bad_shapes_and_plans_are_errors") else {
        return;
    };
    let x = DeviceTensor::<f16>::zeros(&dev, &[4, 8]).unwrap();
    let w = DeviceTensor::<f16>::zeros(&dev, &[6, 8]).unwrap();
    let w_bad = DeviceTensor::<f16>::zeros(&dev, &[6, 9]).unwrap();
    let b_bad = DeviceTensor::<f16>::zeros(&dev, &[5]).unwrap();
    let r_bad = DeviceTensor::<f16>::zeros(&dev, &[4, 5]).unwrap();
    let scalar = DeviceTensor::<f16>::zeros(&dev, &[]).unwrap();
    let shape_err = |r: transformer_kernels::Result<DeviceTensor<f16>>, what: &str| match r {
        Err(Error::Shape { .. }) => {}
        other => panic!("{what}: expected a shape error, got {other:?}"),
    };
    shape_err(linear(&x, &w_bad, Epilogue::default()), "w [6, 9] for k 8");
    shape_err(linear(&x, &w, Epilogue::bias(&b_bad)), "bias [5] for n 6");
    shape_err(
        linear(
            &x,
            &w,
            Epilogue {
                residual: Some(&r_bad),
                ..Epilogue::default()
            },
        ),
        "residual [4, 5]",
    );
    shape_err(linear(&scalar, &w, Epilogue::default()), "rank-0 x");
    for plan in [
        LinearPlan {
            tile: Tile::Simt64x64,
            splits: 1,
        },
        LinearPlan {
            tile: Tile::T64x64,
            splits: 0,
        },
        LinearPlan {
            tile: Tile::T64x64,
            splits: MAX_SPLITS + 1,
        },
    ] {
        let r = linear::linear_with_plan(&x, &w, Epilogue::default(), plan);
        assert!(
            matches!(r, Err(Error::InvalidArgument { .. })),
            "{plan:?}: {r:?}"
        );
    }
    let mut acc = DeviceTensor::<f16>::zeros(&dev, &[4, 6]).unwrap();
    let r_ok = DeviceTensor::<f16>::zeros(&dev, &[4, 6]).unwrap();
    let r = linear_accumulate(
        &x,
        &w,
        Epilogue {
            residual: Some(&r_ok),
            ..Epilogue::default()
        },
        &mut acc,
    );
    assert!(matches!(r, Err(Error::InvalidArgument { .. })), "{r:?}");
}
