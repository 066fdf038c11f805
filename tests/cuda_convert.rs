//! Device dtype conversion against the CPU reference, for every ordered pair
//! of dtypes, on random bit patterns (NaN, ±inf, subnormals, overflow
//! included) of awkward lengths.

mod common_kernels;

use half::{bf16, f16};
use proptest::prelude::*;
use transformer_kernels::cpu::convert::convert as cpu_convert;
use transformer_kernels::cuda::convert::{convert as cuda_convert, convert_into};
use transformer_kernels::cuda::{DeviceElement, DeviceTensor};
use transformer_kernels::Element;

/// Conversion is a single correctly-rounded step on both sides, so results
/// must be bit-identical; the only freedom is the payload of a NaN.
fn assert_bits_equal<D: Element>(got: &[D], expected: &[D], ctx: &str) {
    assert_eq!(got.len(), expected.len(), "{ctx}: length");
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        let (gf, ef) = (g.to_f32(), e.to_f32());
        let same = if ef.is_nan() {
            gf.is_nan()
        } else {
            bytemuck::bytes_of(g) == bytemuck::bytes_of(e)
        };
        assert!(
            same,
            "{ctx}: index {i}: got {gf:e} ({g:?}), expected {ef:e} ({e:?})"
        );
    }
}

fn check_pair<S: DeviceElement, D: DeviceElement>(
    dev: &std::sync::Arc<transformer_kernels::cuda::Device>,
    src: &[S],
) {
    let ctx = format!("convert {} -> {} len {}", S::DTYPE, D::DTYPE, src.len());
    let t = DeviceTensor::from_host(dev, src, &[src.len()]).expect("upload");
    let got: Vec<D> = cuda_convert::<S, D>(&t)
        .expect("launch")
        .to_host()
        .expect("download");
    assert_bits_equal(&got, &cpu_convert::<S, D>(src), &ctx);
}

fn all_pairs(dev: &std::sync::Arc<transformer_kernels::cuda::Device>, bits: &[u32]) {
    let f: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
    let h: Vec<f16> = bits.iter().map(|&b| f16::from_bits(b as u16)).collect();
    let b: Vec<bf16> = bits
        .iter()
        .map(|&b| bf16::from_bits((b >> 16) as u16))
        .collect();
    check_pair::<f32, f16>(dev, &f);
    check_pair::<f32, bf16>(dev, &f);
    check_pair::<f32, f32>(dev, &f);
    check_pair::<f16, f32>(dev, &h);
    check_pair::<f16, bf16>(dev, &h);
    check_pair::<bf16, f32>(dev, &b);
    check_pair::<bf16, f16>(dev, &b);
}

#[test]
fn convert_matches_cpu_on_special_values() {
    let Some(dev) = common_kernels::device_or_skip("convert_matches_cpu_on_special_values") else {
        return;
    };
    let specials: Vec<u32> = [
        0.0f32,
        -0.0,
        1.0,
        -1.0,
        65504.0,
        65520.0,
        1e6,
        -1e6,
        5.96e-8,
        1e-40,
        3.0e38,
        0.1,
        1.0 / 3.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN_POSITIVE,
    ]
    .iter()
    .map(|x| x.to_bits())
    .collect();
    all_pairs(&dev, &specials);
    all_pairs(&dev, &[]);
}

#[test]
fn convert_matches_cpu_on_random_bits() {
    let Some(dev) = common_kernels::device_or_skip("convert_matches_cpu_on_random_bits") else {
        return;
    };
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(24));
    runner
        .run(
            &proptest::collection::vec(any::<u32>(), 1..70_000),
            |bits| {
                all_pairs(&dev, &bits);
                Ok(())
            },
        )
        .unwrap();
}

/// `convert_into` overwrites a preallocated output (filled with a marker
/// first, so a skipped element shows) with what `convert` and the CPU
/// reference give, and refuses an output of another shape.
#[test]
fn convert_into_overwrites_a_preallocated_output() {
    let Some(dev) = common_kernels::device_or_skip("convert_into_overwrites_a_preallocated_output")
    else {
        return;
    };
    let src: Vec<f32> = (0..1003).map(|i| (i as f32 - 500.0) * 0.37).collect();
    let t = DeviceTensor::from_host(&dev, &src, &[17, 59]).expect("upload");
    let marker = vec![bf16::from_f32(-7.0); src.len()];
    let mut out = DeviceTensor::from_host(&dev, &marker, &[17, 59]).expect("upload");
    convert_into::<f32, bf16>(&t, &mut out).expect("launch");
    let got = out.to_host().expect("download");
    assert_bits_equal(
        &got,
        &cpu_convert::<f32, bf16>(&src),
        "convert_into f32 -> bf16",
    );
    // Same dtype: the copy path.
    let mut same = DeviceTensor::<f32>::from_host(&dev, &vec![-7.0; src.len()], &[17, 59]).unwrap();
    convert_into::<f32, f32>(&t, &mut same).expect("copy");
    assert_bits_equal(&same.to_host().unwrap(), &src, "convert_into f32 -> f32");
    let mut wrong = DeviceTensor::<f16>::zeros(&dev, &[59, 17]).unwrap();
    assert!(
        matches!(
            convert_into::<f32, f16>(&t, &mut wrong),
            Err(transformer_kernels::Error::Shape { .. })
        ),
        "an output of shape [59, 17] for [17, 59] must be refused"
    );
}
