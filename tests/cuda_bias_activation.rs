//! Bias add + activation on the GPU against the CPU reference
//! (`cpu::bias_activation::bias_activation`, activations in f64), for every
//! activation and f32, f16 and bf16 storage; widths that are 1, odd, or not
//! a multiple of the 16-byte vector; in place equal to out of place; HF's
//! "gelu" is the erf form. Every test prints one "skipped" line without a GPU.

#[macro_use]
mod common_kernels;

use std::sync::Arc;

use half::{bf16, f16};
use proptest::prelude::*;
use transformer_kernels::cuda::bias_activation::bias_activation;
use transformer_kernels::cuda::{Device, DeviceElement, DeviceTensor};
use transformer_kernels::ops;
use transformer_kernels::Activation;

const ACTS: [Activation; 4] = [
    Activation::Relu,
    Activation::Gelu,
    Activation::GeluTanh,
    Activation::Swish,
];

/// The op's one check (`ops::bias_activation::check`: random inputs with
/// |x + bias| <= 8, the reference, the named tolerance, in place equal to
/// out of place), asserted.
fn check<T: DeviceElement>(
    dev: &Arc<Device>,
    rows: usize,
    cols: usize,
    act: Activation,
    with_bias: bool,
    seed: u64,
) {
    let ctx = format!(
        "bias_activation {act:?} {} rows {rows} cols {cols} bias {with_bias} seed {seed:#x}",
        T::DTYPE
    );
    let row = ops::bias_activation::check::<T>(dev, rows, cols, act, with_bias, seed);
    common_kernels::assert_rows(row.map(|r| vec![r]), &ctx);
}

fn random_shapes<T: DeviceElement>(test: &str) {
    let Some(dev) = common_kernels::device_or_skip(test) else {
        return;
    };
    let cols = prop_oneof![1usize..=40, 2040usize..=2056, 1usize..=5000];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    runner
        .run(
            &(1usize..=50, cols, 0usize..4, any::<bool>(), any::<u64>()),
            |(rows, cols, a, bias, seed)| {
                check::<T>(&dev, rows, cols, ACTS[a], bias, seed);
                Ok(())
            },
        )
        .unwrap();
}

/// The model's FFN: 4096 tokens x ffn_dim 2048, every activation.
fn model_shapes<T: DeviceElement>(test: &str) {
    let Some(dev) = common_kernels::device_or_skip(test) else {
        return;
    };
    for act in ACTS {
        check::<T>(&dev, 4096, 2048, act, true, 0xff);
    }
}

per_dtype! {
    random_shapes_f32 => random_shapes::<f32>;
    random_shapes_f16 => random_shapes::<f16>;
    random_shapes_bf16 => random_shapes::<bf16>;
    model_shapes_f32 => model_shapes::<f32>;
    model_shapes_f16 => model_shapes::<f16>;
    model_shapes_bf16 => model_shapes::<bf16>;
}

/// HF "gelu" is the exact erf form: gelu(1) = Φ(1) = 0.8413447, where the
/// tanh approximation gives 0.8411920 (a difference far above tolerance).
#[test]
fn gelu_is_the_erf_form() {
    let Some(dev) = common_kernels::device_or_skip("gelu_is_the_erf_form") else {
        return;
    };
    let x = DeviceTensor::from_host(&dev, &[1.0f32, -1.0], &[1, 2]).unwrap();
    let erf_form = bias_activation(&x, None, Activation::Gelu)
        .unwrap()
        .to_host()
        .unwrap();
    let tanh_form = bias_activation(&x, None, Activation::GeluTanh)
        .unwrap()
        .to_host()
        .unwrap();
    // Literals: Φ(1) = 0.841344746, 1·Φ(-1)·(-1) = -0.158655254; tanh form 0.841191990.
    assert!(
        (erf_form[0] - 0.841_344_7).abs() < 1e-6,
        "gelu(1) = {}",
        erf_form[0]
    );
    assert!(
        (erf_form[1] + 0.158_655_26).abs() < 1e-6,
        "gelu(-1) = {}",
        erf_form[1]
    );
    assert!(
        (tanh_form[0] - 0.841_192).abs() < 1e-6,
        "gelu_tanh(1) = {}",
        tanh_form[0]
    );
}
