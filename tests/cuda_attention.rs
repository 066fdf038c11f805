//! Fused attention (tensor-core prefill, SIMT / split-KV decode) against
//! the f64 reference under the FlashAttention-style rule of
//! `ops::attention`, for f32, f16 and bf16: CASES.md A1 (a query with no
//! visible key is exactly 0), A2 (causal over a KV cache: step by step
//! equals the full pass), A3 (key padding: a row in a batch equals the row
//! alone), B1 (192 × 192 with lengths 1, 127, 129 and head_dim 16, 32, 48),
//! decode against the prefill's last row, split-KV against unsplit, fused
//! QKV views, random shapes by proptest, and the errors of bad views. Key
//! and value positions a row must not read hold NaN in every check. On the
//! emulator in CI (a GPU when there is one); every test prints one
//! "skipped" line without either.

#[macro_use]
mod common_kernels;

use std::sync::Arc;

use half::{bf16, f16};
use proptest::prelude::*;
use transformer_kernels::cuda::attention::{
    attention, attention_into, AttentionDims, AttentionKernel, AttentionMask, AttentionPlan,
    HeadView,
};
use transformer_kernels::cuda::numerics::{random_storage, widen, SplitMix64};
use transformer_kernels::cuda::{Device, DeviceElement, DeviceTensor};
use transformer_kernels::ops::attention::{check as op_check, Spec};
use transformer_kernels::{DType, Error};

fn check<T: DeviceElement>(dev: &Arc<Device>, spec: &Spec, seed: u64) {
    let ctx = format!(
        "attention {} {}x{}x{}x{}x{} {} seed {seed:#x}",
        T::DTYPE,
        spec.batch,
        spec.heads,
        spec.q_len,
        spec.k_len,
        spec.head_dim,
        spec.variant()
    );
    common_kernels::assert_rows(op_check::<T>(dev, spec, seed).map(|r| vec![r]), &ctx);
}

const TC: Option<AttentionPlan> = Some(AttentionPlan {
    kernel: AttentionKernel::TensorCore,
    splits: 1,
});

fn simt(splits: u32) -> Option<AttentionPlan> {
    Some(AttentionPlan {
        kernel: AttentionKernel::Simt,
        splits,
    })
}

/// Whether the tensor-core kernel exists for `T` at `head_dim`.
fn has_tc<T: DeviceElement>(head_dim: usize) -> bool {
    T::DTYPE != DType::F32 && [32, 64, 96, 128].contains(&head_dim)
}

/// CASES.md B1: q = kv = 192 (three 64-key tiles, and across the 128-key
/// SIMT chunk), lengths 1, 127, 129, head_dim 16, 32, 48; self, causal,
/// padded cross; every kernel the dtype has for the head_dim.
fn cases_b1<T: DeviceElement>(test: &str) {
    let Some(dev) = common_kernels::device_or_skip(test) else {
        return;
    };
    for hd in [16, 32, 48] {
        let mut plans = vec![simt(1), simt(2)];
        if has_tc::<T>(hd) {
            plans.push(TC);
        }
        for plan in plans {
            for (q, k, causal, padding) in [
                (192, 192, false, false),
                (192, 192, true, false),
                (127, 129, false, true),
                (129, 127, true, true),
                (1, 129, false, true),
            ] {
                let spec = Spec {
                    causal,
                    padding,
                    plan,
                    ..Spec::new(3, 2, q, k, hd)
                };
                check::<T>(&dev, &spec, (q * 1000 + k + hd) as u64);
            }
        }
    }
}

/// CASES.md A1: row 0 of every padded batch has key length 0 (checked to
/// be exactly 0 by the op's check); queries before the first key (causal
/// with q_len > k_len) see nothing and are exactly 0 too.
fn cases_a1<T: DeviceElement>(test: &str) {
    let Some(dev) = common_kernels::device_or_skip(test) else {
        return;
    };
    let mut plans = vec![simt(1), simt(3)];
    if has_tc::<T>(32) {
        plans.push(TC);
    }
    for plan in plans {
        for (q, k, causal) in [(4, 2, true), (9, 3, true), (5, 400, false)] {
            let spec = Spec {
                causal,
                padding: true,
                plan,
                ..Spec::new(3, 2, q, k, 32)
            };
            check::<T>(&dev, &spec, 0xa1);
        }
    }
}

/// Uploads `[rows, positions, d]` random values.
fn upload<T: DeviceElement>(
    dev: &Arc<Device>,
    rng: &mut SplitMix64,
    shape: &[usize],
) -> (DeviceTensor<T>, Vec<f32>) {
    let (s, w) = random_storage::<T>(rng, shape.iter().product(), -1.0, 1.0);
    (DeviceTensor::from_host(dev, &s, shape).unwrap(), w)
}

/// Two computations of the same attention output (two kernels, or two
/// split counts), inputs in [-1, 1]: each is within `u · (max|v| + |o|)`
/// of the exact value, `u` the storage type's unit roundoff (the
/// probabilities rounded to it before P·V, |Σ δp·v| <= u·max|v|, and the
/// output's own rounding), so they are within twice that of each other,
/// doubled again for the f32 sums' order. f32 storage: `u` is 16 f32
/// ulps, for sums over up to 300 keys in different orders.
fn close<T: DeviceElement>(a: &[f32], b: &[f32], what: &str) {
    let u = match T::DTYPE {
        DType::F32 => 16.0 * f32::EPSILON,
        d => d.unit_roundoff(),
    };
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        let tol = 4.0 * u * (1.0 + x.abs().max(y.abs()));
        assert!(
            x == y || (x - y).abs() <= tol,
            "{what}: element {i}: {x} vs {y} (tolerance {tol:e})"
        );
    }
}

/// CASES.md A2: decoder causal self-attention over a KV cache. The full
/// pass over 6 positions (one prefill call) equals, at rows 4 and 5, one
/// decode step per new token (q_len 1 over k_len 5, then 6) and a 2-token
/// chunk (q_len 2 over k_len 6), the cache holding 8 positions.
fn cases_a2<T: DeviceElement>(test: &str) {
    let Some(dev) = common_kernels::device_or_skip(test) else {
        return;
    };
    let (rows, heads, hd, cap) = (2, 2, 32, 8);
    let d = heads * hd;
    let mut rng = SplitMix64::new(0xa2);
    let (q_all, q_w) = upload::<T>(&dev, &mut rng, &[rows, 6, d]);
    let (k, _) = upload::<T>(&dev, &mut rng, &[rows, cap, d]);
    let (v, _) = upload::<T>(&dev, &mut rng, &[rows, cap, d]);
    let causal = AttentionMask {
        key_lengths: None,
        causal: true,
    };
    let scale = 1.0 / (hd as f32).sqrt();
    let dims = |k_len| AttentionDims {
        heads,
        head_dim: hd,
        k_len,
    };
    let full = attention(
        HeadView::whole(&q_all),
        HeadView::whole(&k),
        HeadView::whole(&v),
        dims(6),
        scale,
        causal,
    )
    .unwrap();
    let full = widen(&full.to_host().unwrap());
    let q_rows = |from: usize, n: usize| -> DeviceTensor<T> {
        let host: Vec<T> = (0..rows)
            .flat_map(|r| q_w[(r * 6 + from) * d..][..n * d].to_vec())
            .map(T::from_f32)
            .collect();
        DeviceTensor::from_host(&dev, &host, &[rows, n, d]).unwrap()
    };
    let full_rows = |from: usize, n: usize| -> Vec<f32> {
        (0..rows)
            .flat_map(|r| full[(r * 6 + from) * d..][..n * d].to_vec())
            .collect()
    };
    for (from, n, k_len) in [(4, 1, 5), (5, 1, 6), (4, 2, 6)] {
        let q = q_rows(from, n);
        let step = attention(
            HeadView::whole(&q),
            HeadView::whole(&k),
            HeadView::whole(&v),
            dims(k_len),
            scale,
            causal,
        )
        .unwrap();
        close::<T>(
            &widen(&step.to_host().unwrap()),
            &full_rows(from, n),
            &format!(
                "{} step of {n} at {from} over {k_len} keys vs the full pass",
                T::DTYPE
            ),
        );
    }
}

/// CASES.md A3: with key padding, each row of a batch equals the same row
/// computed alone (same kernel and split count: bit for bit).
fn cases_a3<T: DeviceElement>(test: &str) {
    let Some(dev) = common_kernels::device_or_skip(test) else {
        return;
    };
    let (heads, hd, q_len, k_len) = (2, 32, 9, 11);
    let d = heads * hd;
    let lengths = [4i32, 11, 7];
    let mut rng = SplitMix64::new(0xa3);
    let (q, qw) = upload::<T>(&dev, &mut rng, &[3, q_len, d]);
    let (k, kw) = upload::<T>(&dev, &mut rng, &[3, k_len, d]);
    let (v, vw) = upload::<T>(&dev, &mut rng, &[3, k_len, d]);
    let lens = DeviceTensor::from_host(&dev, &lengths, &[3]).unwrap();
    let dims = AttentionDims {
        heads,
        head_dim: hd,
        k_len,
    };
    let mut plans = vec![simt(1)];
    if has_tc::<T>(hd) {
        plans.push(TC);
    }
    for plan in plans {
        let mut batch = DeviceTensor::<T>::zeros(&dev, &[3, q_len, d]).unwrap();
        let mask = AttentionMask {
            key_lengths: Some(&lens),
            causal: false,
        };
        attention_into(
            HeadView::whole(&q),
            HeadView::whole(&k),
            HeadView::whole(&v),
            dims,
            0.3,
            mask,
            &mut batch,
            plan,
            None,
        )
        .unwrap();
        let batch = batch.to_host().unwrap();
        for r in 0..3 {
            let one = |w: &[f32], n: usize| -> DeviceTensor<T> {
                let host: Vec<T> = w[r * n * d..][..n * d]
                    .iter()
                    .map(|&x| T::from_f32(x))
                    .collect();
                DeviceTensor::from_host(&dev, &host, &[1, n, d]).unwrap()
            };
            let (q1, k1, v1) = (one(&qw, q_len), one(&kw, k_len), one(&vw, k_len));
            let len1 = DeviceTensor::from_host(&dev, &lengths[r..=r], &[1]).unwrap();
            let mut alone = DeviceTensor::<T>::zeros(&dev, &[1, q_len, d]).unwrap();
            attention_into(
                HeadView::whole(&q1),
                HeadView::whole(&k1),
                HeadView::whole(&v1),
                dims,
                0.3,
                AttentionMask {
                    key_lengths: Some(&len1),
                    causal: false,
                },
                &mut alone,
                plan,
                None,
            )
            .unwrap();
            let alone = alone.to_host().unwrap();
            assert!(
                bytemuck::cast_slice::<T, u8>(&alone)
                    == bytemuck::cast_slice::<T, u8>(&batch[r * q_len * d..][..q_len * d]),
                "{} {plan:?}: row {r} in the batch differs from the row alone",
                T::DTYPE
            );
        }
    }
}

/// Decode (q_len 1, SIMT, split or not) equals the prefill's last row, and
/// split-KV equals unsplit within rounding, at a cache of 1000 keys.
fn decode_matches_prefill<T: DeviceElement>(test: &str) {
    let Some(dev) = common_kernels::device_or_skip(test) else {
        return;
    };
    let (rows, heads, hd, len) = (2, 2, 64, 300);
    let d = heads * hd;
    let mut rng = SplitMix64::new(0xdec);
    let (q_all, qw) = upload::<T>(&dev, &mut rng, &[rows, len, d]);
    let (k, _) = upload::<T>(&dev, &mut rng, &[rows, len, d]);
    let (v, _) = upload::<T>(&dev, &mut rng, &[rows, len, d]);
    let dims = AttentionDims {
        heads,
        head_dim: hd,
        k_len: len,
    };
    let causal = AttentionMask {
        key_lengths: None,
        causal: true,
    };
    let full = attention(
        HeadView::whole(&q_all),
        HeadView::whole(&k),
        HeadView::whole(&v),
        dims,
        0.125,
        causal,
    )
    .unwrap();
    let full = widen(&full.to_host().unwrap());
    let last: Vec<f32> = (0..rows)
        .flat_map(|r| full[(r * len + len - 1) * d..][..d].to_vec())
        .collect();
    let q_last: Vec<T> = (0..rows)
        .flat_map(|r| qw[(r * len + len - 1) * d..][..d].to_vec())
        .map(T::from_f32)
        .collect();
    let q1 = DeviceTensor::from_host(&dev, &q_last, &[rows, 1, d]).unwrap();
    let mut unsplit = None;
    for splits in [1, 2, 3] {
        let mut out = DeviceTensor::<T>::zeros(&dev, &[rows, 1, d]).unwrap();
        attention_into(
            HeadView::whole(&q1),
            HeadView::whole(&k),
            HeadView::whole(&v),
            dims,
            0.125,
            causal,
            &mut out,
            simt(splits),
            None,
        )
        .unwrap();
        let got = widen(&out.to_host().unwrap());
        close::<T>(
            &got,
            &last,
            &format!(
                "{} decode (splits {splits}) vs prefill's last row",
                T::DTYPE
            ),
        );
        match &unsplit {
            None => unsplit = Some(got),
            Some(u) => close::<T>(&got, u, &format!("{} splits {splits} vs unsplit", T::DTYPE)),
        }
    }
}

/// Random shapes: batch 1..4, heads 1..8, q and k lengths 1..300, every
/// head_dim a Marian config can have here (8 … 256), random masks, layout
/// and plan; the product is capped so that one case stays a few seconds on
/// the emulator (the SIMT path there costs about 50 ns per multiply-add).
fn random_shapes<T: DeviceElement>(test: &str) {
    let Some(dev) = common_kernels::device_or_skip(test) else {
        return;
    };
    let hds = vec![8usize, 12, 16, 32, 48, 64, 80, 96, 128, 256];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(10));
    runner
        .run(
            &(
                1usize..=4,
                1usize..=8,
                1usize..300,
                1usize..300,
                prop::sample::select(hds),
                (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
                0u32..4,
                any::<u64>(),
            ),
            |(batch, heads, q_len, k_len, hd, (causal, padding, cache, fused), plan, seed)| {
                prop_assume!(batch * heads * q_len * k_len * hd <= 6_000_000);
                let fused = fused && !cache;
                let k_len = if fused { q_len } else { k_len };
                let plan = match plan {
                    0 => None,
                    1 if has_tc::<T>(hd) => TC,
                    1 => None,
                    s => simt(s),
                };
                let spec = Spec {
                    causal,
                    padding,
                    cache,
                    fused,
                    plan,
                    ..Spec::new(batch, heads, q_len, k_len, hd)
                };
                check::<T>(&dev, &spec, seed);
                Ok(())
            },
        )
        .unwrap();
}

per_dtype! {
    cases_b1_f32 => cases_b1::<f32>;
    cases_b1_f16 => cases_b1::<f16>;
    cases_b1_bf16 => cases_b1::<bf16>;
    cases_a1_f32 => cases_a1::<f32>;
    cases_a1_f16 => cases_a1::<f16>;
    cases_a1_bf16 => cases_a1::<bf16>;
    cases_a2_f32 => cases_a2::<f32>;
    cases_a2_f16 => cases_a2::<f16>;
    cases_a2_bf16 => cases_a2::<bf16>;
    cases_a3_f32 => cases_a3::<f32>;
    cases_a3_f16 => cases_a3::<f16>;
    cases_a3_bf16 => cases_a3::<bf16>;
    decode_matches_prefill_f32 => decode_matches_prefill::<f32>;
    decode_matches_prefill_f16 => decode_matches_prefill::<f16>;
    decode_matches_prefill_bf16 => decode_matches_prefill::<bf16>;
    random_shapes_f32 => random_shapes::<f32>;
    random_shapes_f16 => random_shapes::<f16>;
    random_shapes_bf16 => random_shapes::<bf16>;
}

/// The model's layouts: encoder self-attention from one fused QKV buffer
/// with padding, decoder cross-attention over a longer memory, at 8 heads
/// of 64 (the tensor-core kernel) in both 16-bit dtypes.
#[test]
fn model_layouts_on_tensor_cores() {
    let Some(dev) = common_kernels::device_or_skip("model_layouts_on_tensor_cores") else {
        return;
    };
    for (q, k, fused) in [(30, 30, true), (25, 31, false)] {
        let spec = Spec {
            padding: true,
            fused,
            plan: TC,
            ..Spec::new(4, 8, q, k, 64)
        };
        check::<bf16>(&dev, &spec, 0x30);
        check::<f16>(&dev, &spec, 0x31);
    }
}

/// Bad views, masks and plans are errors naming the problem.
#[test]
fn bad_views_and_plans_are_errors() {
    let Some(dev) = common_kernels::device_or_skip("bad_views_and_plans_are_errors") else {
        return;
    };
    let q = DeviceTensor::<f16>::zeros(&dev, &[2, 3, 64]).unwrap();
    let kv = DeviceTensor::<f16>::zeros(&dev, &[2, 5, 64]).unwrap();
    let kv_rows = DeviceTensor::<f16>::zeros(&dev, &[3, 5, 64]).unwrap();
    let flat = DeviceTensor::<f16>::zeros(&dev, &[2, 64]).unwrap();
    let lens_bad = DeviceTensor::<i32>::zeros(&dev, &[3]).unwrap();
    let dims = |heads, head_dim, k_len| AttentionDims {
        heads,
        head_dim,
        k_len,
    };
    let none = AttentionMask::default();
    let w = HeadView::whole;
    let is_shape =
        |r: transformer_kernels::Result<DeviceTensor<f16>>| matches!(r, Err(Error::Shape { .. }));
    let is_invalid = |r: transformer_kernels::Result<DeviceTensor<f16>>| {
        matches!(r, Err(Error::InvalidArgument { .. }))
    };
    assert!(
        is_shape(attention(w(&q), w(&kv), w(&kv), dims(2, 32, 6), 1.0, none)),
        "k_len past the cache"
    );
    assert!(
        is_shape(attention(
            w(&q),
            w(&kv_rows),
            w(&kv_rows),
            dims(2, 32, 5),
            1.0,
            none
        )),
        "rows differ"
    );
    assert!(
        is_shape(attention(
            w(&flat),
            w(&kv),
            w(&kv),
            dims(2, 32, 5),
            1.0,
            none
        )),
        "2-D q"
    );
    assert!(
        is_shape(attention(
            HeadView::at(&q, 8),
            w(&kv),
            w(&kv),
            dims(2, 32, 5),
            1.0,
            none
        )),
        "view too narrow"
    );
    assert!(
        is_shape(attention(
            w(&q),
            w(&kv),
            w(&kv),
            dims(2, 32, 5),
            1.0,
            AttentionMask {
                key_lengths: Some(&lens_bad),
                causal: false
            }
        )),
        "key lengths [3]"
    );
    assert!(
        is_invalid(attention(w(&q), w(&kv), w(&kv), dims(0, 32, 5), 1.0, none)),
        "no heads"
    );
    let wide = DeviceTensor::<f16>::zeros(&dev, &[1, 1, 514]).unwrap();
    assert!(
        is_invalid(attention(
            w(&wide),
            w(&wide),
            w(&wide),
            dims(2, 257, 1),
            1.0,
            none
        )),
        "head_dim 257"
    );
    // The tensor-core kernel refuses f32, head_dim 48 and unaligned views.
    let mut out = DeviceTensor::<f16>::zeros(&dev, &[2, 3, 96]).unwrap();
    let q48 = DeviceTensor::<f16>::zeros(&dev, &[2, 3, 96]).unwrap();
    let kv48 = DeviceTensor::<f16>::zeros(&dev, &[2, 5, 96]).unwrap();
    let r = attention_into(
        w(&q48),
        w(&kv48),
        w(&kv48),
        dims(2, 48, 5),
        1.0,
        none,
        &mut out,
        TC,
        None,
    );
    assert!(matches!(r, Err(Error::InvalidArgument { .. })), "{r:?}");
    let q_odd = DeviceTensor::<f16>::zeros(&dev, &[2, 3, 65]).unwrap();
    let kv_odd = DeviceTensor::<f16>::zeros(&dev, &[2, 5, 65]).unwrap();
    let mut out64 = DeviceTensor::<f16>::zeros(&dev, &[2, 3, 64]).unwrap();
    let r = attention_into(
        HeadView::at(&q_odd, 1),
        w(&kv_odd),
        w(&kv_odd),
        dims(2, 32, 5),
        1.0,
        none,
        &mut out64,
        TC,
        None,
    );
    assert!(
        matches!(r, Err(Error::InvalidArgument { .. })),
        "unaligned view: {r:?}"
    );
    // ... but the SIMT kernel takes the same unaligned view.
    attention_into(
        HeadView::at(&q_odd, 1),
        w(&kv_odd),
        w(&kv_odd),
        dims(2, 32, 5),
        1.0,
        none,
        &mut out64,
        None,
        None,
    )
    .unwrap();
    let q32 = DeviceTensor::<f32>::zeros(&dev, &[2, 3, 64]).unwrap();
    let mut o32 = DeviceTensor::<f32>::zeros(&dev, &[2, 3, 64]).unwrap();
    let r = attention_into(
        HeadView::whole(&q32),
        HeadView::whole(&q32),
        HeadView::whole(&q32),
        dims(2, 32, 3),
        1.0,
        none,
        &mut o32,
        TC,
        None,
    );
    assert!(
        matches!(r, Err(Error::InvalidArgument { .. })),
        "f32 on tensor cores: {r:?}"
    );
    let r = attention_into(
        HeadView::whole(&q32),
        HeadView::whole(&q32),
        HeadView::whole(&q32),
        dims(2, 32, 3),
        1.0,
        none,
        &mut o32,
        simt(0),
        None,
    );
    assert!(
        matches!(r, Err(Error::InvalidArgument { .. })),
        "0 splits: {r:?}"
    );
}

/// NaN in the inputs gives NaN on every path: one split, several splits
/// (the merge must not read it as a row with no visible key), tensor cores.
#[test]
fn nan_inputs_give_nan_on_every_path() {
    let Some(dev) = common_kernels::device_or_skip("nan_inputs_give_nan_on_every_path") else {
        return;
    };
    let (heads, hd, k_len) = (1, 64, 300);
    let mut rng = SplitMix64::new(0x4a4);
    let (mut qs, _) = random_storage::<bf16>(&mut rng, 2 * hd, -1.0, 1.0);
    qs[3] = bf16::NAN; // query 0 of the one row
    let q = DeviceTensor::from_host(&dev, &qs, &[1, 2, hd]).unwrap();
    let (k, _) = upload::<bf16>(&dev, &mut rng, &[1, k_len, hd]);
    let (v, _) = upload::<bf16>(&dev, &mut rng, &[1, k_len, hd]);
    let dims = AttentionDims {
        heads,
        head_dim: hd,
        k_len,
    };
    for plan in [simt(1), simt(3), TC, None] {
        let mut out = DeviceTensor::<bf16>::zeros(&dev, &[1, 2, hd]).unwrap();
        attention_into(
            HeadView::whole(&q),
            HeadView::whole(&k),
            HeadView::whole(&v),
            dims,
            0.125,
            AttentionMask::default(),
            &mut out,
            plan,
            None,
        )
        .unwrap();
        let got = widen(&out.to_host().unwrap());
        assert!(
            got[..hd].iter().all(|x| x.is_nan()),
            "{plan:?}: query 0 not NaN: {:?}",
            &got[..4]
        );
        assert!(
            got[hd..].iter().all(|x| x.is_finite()),
            "{plan:?}: query 1 not finite"
        );
    }
}

/// A view column so large that column + heads·head_dim overflows is a
/// shape error, not an address before the buffer.
#[test]
fn overflowing_view_column_is_an_error() {
    let Some(dev) = common_kernels::device_or_skip("overflowing_view_column_is_an_error") else {
        return;
    };
    let q = DeviceTensor::<bf16>::zeros(&dev, &[1, 1, 8]).unwrap();
    let r = attention(
        HeadView::at(&q, usize::MAX),
        HeadView::whole(&q),
        HeadView::whole(&q),
        AttentionDims {
            heads: 1,
            head_dim: 1,
            k_len: 1,
        },
        1.0,
        AttentionMask::default(),
    );
    assert!(matches!(r, Err(Error::Shape { .. })), "{r:?}");
}
