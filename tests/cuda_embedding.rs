//! Token embedding + sinusoidal positions on the GPU against the CPU
//! reference (`cpu::embedding::embedding`, f64 angles), for f32, f16 and bf16
//! storage: random ids, odd widths, position offsets; CASES.md D4; the
//! offset used by incremental decoding; out-of-range ids rejected before
//! launch. Every test prints one "skipped" line without a GPU.

#[macro_use]
mod common_kernels;

use std::sync::Arc;

use half::{bf16, f16};
use proptest::prelude::*;
use transformer_kernels::cuda::embedding::{embedding, embedding_from_device_ids, tolerance};
use transformer_kernels::cuda::numerics::{compare, random_storage, widen, SplitMix64, Tolerance};
use transformer_kernels::cuda::{Device, DeviceElement, DeviceTensor};
use transformer_kernels::ops;
use transformer_kernels::Error;

/// The CASES.md D4 literals have 6 decimals: half a unit of the last one.
const LITERAL_DIGITS: f32 = 5e-7;

/// The op's one check (`ops::embedding::check`: random table and ids, the
/// reference, the named tolerance), asserted.
#[allow(clippy::too_many_arguments)]
fn check<T: DeviceElement>(
    dev: &Arc<Device>,
    batch: usize,
    seq: usize,
    d_model: usize,
    vocab: usize,
    offset: usize,
    seed: u64,
) {
    let ctx = format!(
        "embedding {} batch {batch} seq {seq} d_model {d_model} vocab {vocab} offset {offset} seed {seed:#x}",
        T::DTYPE
    );
    let row = ops::embedding::check::<T>(dev, batch, seq, d_model, vocab, offset, seed);
    common_kernels::assert_rows(row.map(|r| vec![r]), &ctx);
}

fn random_shapes<T: DeviceElement>(test: &str) {
    let Some(dev) = common_kernels::device_or_skip(test) else {
        return;
    };
    let d_model = prop_oneof![1usize..=40, Just(512usize), 500usize..=530, Just(1024usize)];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    runner
        .run(
            &(
                1usize..=4,
                1usize..=40,
                d_model,
                1usize..=300,
                0usize..=600,
                any::<u64>(),
            ),
            |(batch, seq, d, vocab, offset, seed)| {
                check::<T>(&dev, batch, seq, d, vocab, offset, seed);
                Ok(())
            },
        )
        .unwrap();
}

/// The model's shapes: opus-mt vocabulary, d_model 512, encoder-sized and
/// decoder-step-sized blocks.
fn model_shapes<T: DeviceElement>(test: &str) {
    let Some(dev) = common_kernels::device_or_skip(test) else {
        return;
    };
    check::<T>(&dev, 32, 512, 512, 58101, 0, 1);
    check::<T>(&dev, 64, 1, 512, 58101, 37, 2);
}

/// D4: d_model 8, positions 0 and 1 (a zero table isolates the positions).
fn case_d4<T: DeviceElement>(test: &str) {
    let Some(dev) = common_kernels::device_or_skip(test) else {
        return;
    };
    let table = DeviceTensor::<T>::zeros(&dev, &[1, 8]).unwrap();
    let out = embedding(&[0, 0], 1, 2, &table, 1.0, 0).expect("launch");
    let got = widen(&out.to_host().unwrap());
    let expected = [
        0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, //
        0.841471, 0.099833, 0.010000, 0.001000, 0.540302, 0.995004, 0.999950, 1.000000,
    ];
    let base = tolerance(T::DTYPE);
    let tol = Tolerance {
        abs: base.abs + LITERAL_DIGITS,
        ..base
    };
    let c = compare(&got, &expected, &tol);
    assert!(
        c.passed(),
        "{}",
        c.describe(&format!("CASES D4 {}", T::DTYPE), &tol)
    );
}

/// Decoding step by step: embedding positions 3..5 with offset 3 gives the
/// same rows as positions 3..5 of one full pass, bit for bit.
fn offset_continues_positions<T: DeviceElement>(test: &str) {
    let Some(dev) = common_kernels::device_or_skip(test) else {
        return;
    };
    let (vocab, d) = (50, 24);
    let mut rng = SplitMix64::new(7);
    let (ts, _) = random_storage::<T>(&mut rng, vocab * d, -1.0, 1.0);
    let table = DeviceTensor::from_host(&dev, &ts, &[vocab, d]).unwrap();
    let ids = [4u32, 9, 17, 23, 42];
    let full = embedding(&ids, 1, 5, &table, 2.0, 0)
        .unwrap()
        .to_host()
        .unwrap();
    let tail = embedding(&ids[3..], 1, 2, &table, 2.0, 3)
        .unwrap()
        .to_host()
        .unwrap();
    for (i, (a, b)) in full[3 * d..].iter().zip(&tail).enumerate() {
        assert!(
            bytemuck::bytes_of(a) == bytemuck::bytes_of(b),
            "{}: index {i}: step-by-step {:e} != full pass {:e}",
            T::DTYPE,
            b.to_f32(),
            a.to_f32()
        );
    }
}

per_dtype! {
    random_shapes_f32 => random_shapes::<f32>;
    random_shapes_f16 => random_shapes::<f16>;
    random_shapes_bf16 => random_shapes::<bf16>;
    model_shapes_f32 => model_shapes::<f32>;
    model_shapes_f16 => model_shapes::<f16>;
    model_shapes_bf16 => model_shapes::<bf16>;
    case_d4_f32 => case_d4::<f32>;
    case_d4_f16 => case_d4::<f16>;
    case_d4_bf16 => case_d4::<bf16>;
    offset_continues_positions_f32 => offset_continues_positions::<f32>;
    offset_continues_positions_f16 => offset_continues_positions::<f16>;
    offset_continues_positions_bf16 => offset_continues_positions::<bf16>;
}

#[test]
fn out_of_range_ids_are_rejected_before_launch() {
    let Some(dev) = common_kernels::device_or_skip("out_of_range_ids_are_rejected_before_launch")
    else {
        return;
    };
    let table = DeviceTensor::<f32>::zeros(&dev, &[10, 4]).unwrap();
    for bad in [10u32, u32::MAX, 1 << 31] {
        match embedding(&[0, bad, 1], 1, 3, &table, 1.0, 0) {
            Err(Error::InvalidArgument { msg, .. }) => {
                assert!(
                    msg.contains(&bad.to_string()),
                    "message names the id: {msg}"
                )
            }
            other => panic!("id {bad} with vocab 10: expected InvalidArgument, got {other:?}"),
        }
    }
    assert!(matches!(
        embedding(&[0, 1], 1, 3, &table, 1.0, 0),
        Err(Error::Shape { .. })
    ));
}

/// Device ids (a `DeviceTensor<i32>` of the same device, e.g. the previous
/// step's argmax): the same output as host ids; too few ids is a shape error.
#[test]
fn device_ids_give_the_host_ids_result() {
    let Some(dev) = common_kernels::device_or_skip("device_ids_give_the_host_ids_result") else {
        return;
    };
    let (vocab, d_model) = (10usize, 8usize);
    let mut rng = SplitMix64::new(21);
    let (ts, _) = random_storage::<f32>(&mut rng, vocab * d_model, -1.0, 1.0);
    let table = DeviceTensor::from_host(&dev, &ts, &[vocab, d_model]).unwrap();
    let ids = [3u32, 0, 9];
    let expected = embedding(&ids, 1, 3, &table, 2.0, 5)
        .unwrap()
        .to_host()
        .unwrap();
    let ids_i32: Vec<i32> = ids.iter().map(|&i| i as i32).collect();
    let on_device = DeviceTensor::from_host(&dev, &ids_i32, &[1, 3]).unwrap();
    let mut out = DeviceTensor::<f32>::zeros(&dev, &[1, 3, d_model]).unwrap();
    embedding_from_device_ids(&on_device, 1, 3, &table, 2.0, 5, &mut out).unwrap();
    let got = out.to_host().unwrap();
    let tol = Tolerance {
        abs: 0.0,
        rel: 0.0,
        reason: "the same kernel on the same ids: bit-identical",
    };
    let c = compare(&got, &expected, &tol);
    assert!(c.passed(), "{}", c.describe("device ids vs host ids", &tol));

    let short = DeviceTensor::from_host(&dev, &ids_i32[..2], &[1, 2]).unwrap();
    assert!(matches!(
        embedding_from_device_ids(&short, 1, 3, &table, 2.0, 5, &mut out),
        Err(Error::Shape { .. })
    ));
}
