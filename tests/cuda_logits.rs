//! The fused logits step on the GPU (final_logits_bias, pad mask,
//! log-softmax, top-k) against the CPU reference (`cpu::logits::logits_step`,
//! f64 sums), for f32, f16 and bf16 logits: random vocabularies from 1 to
//! past 64k, every k from 1 to 32, ties, CASES.md D1, a fully masked row,
//! NaN and +inf scores.
//! Every test prints one "skipped" line without a GPU.

#[macro_use]
mod common_kernels;

use std::sync::Arc;

use half::{bf16, f16};
use proptest::prelude::*;
use transformer_kernels::cpu::logits::logits_step as cpu_logits_step;
use transformer_kernels::cuda::logits::{logits_step, tolerance, MAX_K};
use transformer_kernels::cuda::{Device, DeviceElement, DeviceTensor};
use transformer_kernels::ops;
use transformer_kernels::Error;

/// The op's check on given values (`ops::logits::check_values`: log-probs
/// and top-k values under the named tolerance, top-k ids exactly), asserted.
#[allow(clippy::too_many_arguments)]
fn check_values<T: DeviceElement>(
    dev: &Arc<Device>,
    ctx: &str,
    logits_s: &[T],
    logits_w: &[f32],
    bias: Option<(&[T], &[f32])>,
    rows: usize,
    vocab: usize,
    pad: Option<usize>,
    k: usize,
) {
    let rows_out =
        ops::logits::check_values::<T>(dev, logits_s, logits_w, bias, rows, vocab, pad, k);
    common_kernels::assert_rows(rows_out, ctx);
}

/// The op's one check on random logits (`ops::logits::check`), asserted.
#[allow(clippy::too_many_arguments)]
fn check<T: DeviceElement>(
    dev: &Arc<Device>,
    rows: usize,
    vocab: usize,
    k: usize,
    with_bias: bool,
    pad: Option<usize>,
    seed: u64,
) {
    let ctx = format!(
        "logits {} rows {rows} vocab {vocab} k {k} bias {with_bias} pad {pad:?} seed {seed:#x}",
        T::DTYPE
    );
    common_kernels::assert_rows(
        ops::logits::check::<T>(dev, rows, vocab, k, with_bias, pad, seed),
        &ctx,
    );
}

fn random_shapes<T: DeviceElement>(test: &str) {
    let Some(dev) = common_kernels::device_or_skip(test) else {
        return;
    };
    let vocab = prop_oneof![
        1usize..=40,
        250usize..=260,
        1usize..=5000,
        Just(58101usize),
        65530usize..=65560,
    ];
    let case = (
        1usize..=6,
        vocab,
        1usize..=MAX_K,
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(rows, vocab, k, bias, pad, seed)| {
            let k = k.min(vocab);
            // pad_token_id of opus-mt is the last id; any id will do.
            let pad = pad.then_some((seed as usize) % vocab);
            (rows, vocab, k, bias, pad, seed)
        });
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(40));
    runner
        .run(&case, |(rows, vocab, k, bias, pad, seed)| {
            check::<T>(&dev, rows, vocab, k, bias, pad, seed);
            Ok(())
        })
        .unwrap();
}

/// The model's step: opus-mt-en-de vocabulary with pad 58100, greedy
/// (k = 1) for 32 sentences and beam 4 (k = 8) for 8 sentences x 4 beams.
fn model_shapes<T: DeviceElement>(test: &str) {
    let Some(dev) = common_kernels::device_or_skip(test) else {
        return;
    };
    check::<T>(&dev, 32, 58101, 1, true, Some(58100), 11);
    check::<T>(&dev, 32, 58101, 8, true, Some(58100), 12);
    check::<T>(&dev, 4, 58101, MAX_K, false, None, 13);
}

/// Equal scores: the lower id first (exact ties, all dtypes), pad skipped.
fn ties_go_to_the_lower_id<T: DeviceElement>(test: &str) {
    let Some(dev) = common_kernels::device_or_skip(test) else {
        return;
    };
    let vocab = 1000;
    let ls: Vec<T> = vec![T::from_f32(0.5); vocab];
    let lw = vec![0.5f32; vocab];
    check_values::<T>(&dev, "ties", &ls, &lw, None, 1, vocab, Some(3), 8);
    let logits = DeviceTensor::from_host(&dev, &ls, &[1, vocab]).unwrap();
    let top = logits_step(&logits, None, Some(3), 8, None).unwrap();
    assert_eq!(top.ids, vec![0, 1, 2, 4, 5, 6, 7, 8], "{} ties", T::DTYPE);
}

/// D1: a non-zero final_logits_bias changes the choice; pad is never chosen
/// even when it has the largest logit.
fn case_d1_bias_and_pad<T: DeviceElement>(test: &str) {
    let Some(dev) = common_kernels::device_or_skip(test) else {
        return;
    };
    let logits: Vec<T> = [0.0f32, 1.0, 0.0, 0.0, 9.0]
        .iter()
        .map(|&v| T::from_f32(v))
        .collect();
    let bias: Vec<T> = [0.0f32, 0.0, 0.0, 2.0, 0.0]
        .iter()
        .map(|&v| T::from_f32(v))
        .collect();
    let l = DeviceTensor::from_host(&dev, &logits, &[1, 5]).unwrap();
    let b = DeviceTensor::from_host(&dev, &bias, &[5]).unwrap();
    let mut lp = DeviceTensor::<f32>::zeros(&dev, &[1, 5]).unwrap();
    let top = logits_step(&l, Some(&b), Some(4), 2, Some(&mut lp)).unwrap();
    assert_eq!(
        top.ids,
        vec![3, 1],
        "{}: bias must make id 3 the best",
        T::DTYPE
    );
    let lp = lp.to_host().unwrap();
    assert_eq!(lp[4], f32::NEG_INFINITY, "{}: pad log-prob", T::DTYPE);
    let total: f64 = lp.iter().map(|&v| f64::from(v).exp()).sum();
    assert!(
        (total - 1.0).abs() < 1e-5,
        "{}: probabilities sum to {total}",
        T::DTYPE
    );
}

/// Every score -inf: log-probabilities -inf, never NaN.
fn fully_masked_row_is_neg_inf<T: DeviceElement>(test: &str) {
    let Some(dev) = common_kernels::device_or_skip(test) else {
        return;
    };
    let vocab = 300;
    let ls: Vec<T> = vec![T::from_f32(f32::NEG_INFINITY); vocab];
    let l = DeviceTensor::from_host(&dev, &ls, &[1, vocab]).unwrap();
    let mut lp = DeviceTensor::<f32>::zeros(&dev, &[1, vocab]).unwrap();
    let top = logits_step(&l, None, None, 4, Some(&mut lp)).unwrap();
    assert_eq!(top.ids, vec![0, 1, 2, 3]);
    let lp = lp.to_host().unwrap();
    for (i, v) in lp.iter().chain(&top.log_probs).enumerate() {
        assert!(*v == f32::NEG_INFINITY, "{}: index {i}: got {v}", T::DTYPE);
    }
}

/// Non-finite scores follow the CPU reference (module docs of
/// `cpu::logits`): a NaN makes its row's log-probs NaN and ranks first in
/// the top-k; n entries at +inf get -ln(n) each and the rest -inf. Rows of
/// 300 (misaligned rows for f16/bf16: the scalar path) and 4096 (aligned:
/// the 128-bit path), NaN / +inf placed in different threads' shares.
fn non_finite_scores_match_the_reference<T: DeviceElement>(test: &str) {
    let Some(dev) = common_kernels::device_or_skip(test) else {
        return;
    };
    for vocab in [300usize, 4096] {
        let rows = 5;
        let pad = vocab - 1;
        let mut lw: Vec<f32> = (0..rows * vocab)
            .map(|i| ((i * 37) % 101) as f32 / 10.0 - 5.0)
            .collect();
        let at = |r: usize, v: usize| r * vocab + v;
        // Row 0: NaN at two ids in different threads' shares.
        lw[at(0, 7)] = f32::NAN;
        lw[at(0, vocab / 2 + 3)] = f32::NAN;
        // Row 1: NaN only in the pad column: masked, so a finite row.
        lw[at(1, pad)] = f32::NAN;
        // Row 2: two +inf (and +inf at pad, which does not count).
        lw[at(2, 1)] = f32::INFINITY;
        lw[at(2, vocab - 2)] = f32::INFINITY;
        lw[at(2, pad)] = f32::INFINITY;
        // Row 3: one +inf.
        lw[at(3, vocab / 3)] = f32::INFINITY;
        // Row 4: three +inf and a NaN: NaN wins.
        for v in [0, 5, 9] {
            lw[at(4, v)] = f32::INFINITY;
        }
        lw[at(4, 200)] = f32::NAN;
        let ls: Vec<T> = lw.iter().map(|&v| T::from_f32(v)).collect();
        let lw: Vec<f32> = ls.iter().map(|v| v.to_f32()).collect();
        let k = 4;
        let expected = cpu_logits_step(&lw, rows, vocab, None, Some(pad), k).expect("reference");
        // The reference's own rules, so that the GPU is held to them.
        assert!(expected.log_probs[..vocab].iter().all(|l| l.is_nan()));
        assert_eq!(&expected.topk_ids[..2], &[7, (vocab / 2 + 3) as u32]);
        assert_eq!(expected.log_probs[at(2, 1)], -std::f32::consts::LN_2);
        assert_eq!(expected.log_probs[at(3, vocab / 3)], 0.0);

        let logits = DeviceTensor::from_host(&dev, &ls, &[rows, vocab]).expect("upload");
        let mut lp = DeviceTensor::<f32>::zeros(&dev, &[rows, vocab]).unwrap();
        let top = logits_step(&logits, None, Some(pad), k, Some(&mut lp)).expect("launch");
        let got = lp.to_host().expect("download");
        let ctx = format!("{} vocab {vocab}", T::DTYPE);
        assert_eq!(top.ids, expected.topk_ids, "{ctx}: top-k ids");
        let tol = tolerance(vocab);
        for (what, g, e) in [
            ("log_probs", &got, &expected.log_probs),
            ("top-k log-probs", &top.log_probs, &expected.topk_log_probs),
        ] {
            let width = if what == "log_probs" { vocab } else { k };
            for (i, (&g, &e)) in g.iter().zip(e.iter()).enumerate() {
                // NaN is expected only where the reference says so, and then
                // it is required; elsewhere NaN fails (accepts rejects it).
                let ok = if e.is_nan() {
                    g.is_nan()
                } else {
                    tol.accepts(g, e)
                };
                assert!(
                    ok,
                    "{ctx}: {what} row {} index {}: got {g}, expected {e} (tol abs {} rel {})",
                    i / width,
                    i % width,
                    tol.abs,
                    tol.rel
                );
            }
        }
    }
}

per_dtype! {
    random_shapes_f32 => random_shapes::<f32>;
    random_shapes_f16 => random_shapes::<f16>;
    random_shapes_bf16 => random_shapes::<bf16>;
    model_shapes_f32 => model_shapes::<f32>;
    model_shapes_f16 => model_shapes::<f16>;
    model_shapes_bf16 => model_shapes::<bf16>;
    ties_go_to_the_lower_id_f32 => ties_go_to_the_lower_id::<f32>;
    ties_go_to_the_lower_id_f16 => ties_go_to_the_lower_id::<f16>;
    ties_go_to_the_lower_id_bf16 => ties_go_to_the_lower_id::<bf16>;
    case_d1_bias_and_pad_f32 => case_d1_bias_and_pad::<f32>;
    case_d1_bias_and_pad_f16 => case_d1_bias_and_pad::<f16>;
    case_d1_bias_and_pad_bf16 => case_d1_bias_and_pad::<bf16>;
    fully_masked_row_is_neg_inf_f32 => fully_masked_row_is_neg_inf::<f32>;
    fully_masked_row_is_neg_inf_f16 => fully_masked_row_is_neg_inf::<f16>;
    fully_masked_row_is_neg_inf_bf16 => fully_masked_row_is_neg_inf::<bf16>;
    non_finite_scores_match_the_reference_f32 => non_finite_scores_match_the_reference::<f32>;
    non_finite_scores_match_the_reference_f16 => non_finite_scores_match_the_reference::<f16>;
    non_finite_scores_match_the_reference_bf16 => non_finite_scores_match_the_reference::<bf16>;
}

#[test]
fn bad_k_and_pad_are_errors() {
    let Some(dev) = common_kernels::device_or_skip("bad_k_and_pad_are_errors") else {
        return;
    };
    let l = DeviceTensor::<f32>::zeros(&dev, &[2, 10]).unwrap();
    for (k, pad) in [(0, None), (MAX_K + 1, None), (11, None), (1, Some(10))] {
        assert!(
            matches!(
                logits_step(&l, None, pad, k, None),
                Err(Error::InvalidArgument { .. })
            ),
            "k {k} pad {pad:?} must be rejected"
        );
    }
    let wrong_bias = DeviceTensor::<f32>::zeros(&dev, &[9]).unwrap();
    assert!(matches!(
        logits_step(&l, Some(&wrong_bias), None, 1, None),
        Err(Error::Shape { .. })
    ));
}
