//! CASES.md A1, A2 (op level), B2, C1 and D4 on the CPU reference ops, each
//! with its right value.

// Index loops mirror the formulas of the naive references.
#![allow(clippy::needless_range_loop)]

mod common_model;

use common_model::{assert_close, Rng};
use transformer_kernels::cpu::attention::{attention, AttentionDims, AttentionMask};
use transformer_kernels::cpu::embedding::sinusoidal_positions;
use transformer_kernels::cpu::layer_norm::layer_norm;

/// f32 ops vs f64 naive maths on a handful of elements: a few roundings.
const F32_ABS: f32 = 1e-5;
const F32_REL: f32 = 1e-5;
/// Case values printed with 6 decimals in CASES.md (half an ulp of the print, plus f32).
const PRINTED_6DP: f32 = 1e-6;
/// Case values printed with 5 decimals (B2's ±1.22474).
const PRINTED_5DP: f32 = 1e-5;
/// The test input's variance is 1e-4 by construction; 32768 uniform samples
/// give a sample variance within ~0.5% (one sd) of it: 5% is ten sd.
const INPUT_VAR_TOL: f64 = 5e-6;
/// Output variance var / (var + eps) of an f32 LayerNorm at |x| ~ 100: f32
/// rounding of x - mean (ulp ~1e-5 on deviations ~1e-2) moves it ~1e-3 at most;
/// a cancelled E[x²] - E[x]² variance is off by O(1).
const OUT_VAR_TOL: f64 = 1e-3;

/// softmax(q·kᵀ·scale)·v in f64 over the keys `visible(i)`; zero when none.
fn naive_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    q_len: usize,
    d: usize,
    scale: f64,
    visible: impl Fn(usize) -> Vec<usize>,
) -> Vec<f32> {
    let mut out = vec![0.0f32; q_len * d];
    for i in 0..q_len {
        let keys = visible(i);
        if keys.is_empty() {
            continue;
        }
        let s: Vec<f64> = keys
            .iter()
            .map(|&j| {
                (0..d)
                    .map(|c| q[i * d + c] as f64 * k[j * d + c] as f64)
                    .sum::<f64>()
                    * scale
            })
            .collect();
        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
        for c in 0..d {
            out[i * d + c] = keys
                .iter()
                .zip(&s)
                .map(|(&j, sj)| (sj - m).exp() / z * v[j * d + c] as f64)
                .sum::<f64>() as f32;
        }
    }
    out
}

#[test]
fn a1_fully_masked_query_row_is_zero_and_others_unchanged() {
    let mut rng = Rng::new(1);
    let (q, k, v) = (rng.vec(8, 1.0), rng.vec(8, 1.0), rng.vec(8, 1.0));
    let dims = AttentionDims {
        batch: 1,
        heads: 1,
        q_len: 4,
        k_len: 4,
        head_dim: 2,
    };
    let unmasked = attention(&q, &k, &v, dims, 1.0, &AttentionMask::default()).unwrap();
    assert_close(
        "unmasked vs naive",
        &unmasked,
        &naive_attention(&q, &k, &v, 4, 2, 1.0, |_| (0..4).collect()),
        F32_ABS,
        F32_REL,
    );

    let mut allowed = vec![true; 16];
    allowed[4..8].fill(false);
    let mut neg_inf = vec![0.0f32; 16];
    neg_inf[4..8].fill(f32::NEG_INFINITY);
    let mut hf_min = vec![0.0f32; 16];
    hf_min[4..8].fill(f32::MIN); // Hugging Face's mask value
                                 // Two Hugging Face masks summed (padding + causal): f32::MIN + f32::MIN.
    let summed: Vec<f32> = hf_min.iter().map(|&m| m + m).collect();
    let masks = [
        (
            "boolean all-false",
            AttentionMask {
                allowed: Some(&allowed),
                ..Default::default()
            },
        ),
        (
            "row of -inf",
            AttentionMask {
                additive: Some(&neg_inf),
                ..Default::default()
            },
        ),
        (
            "row of f32::MIN",
            AttentionMask {
                additive: Some(&hf_min),
                ..Default::default()
            },
        ),
        (
            "two large negative masks summed",
            AttentionMask {
                additive: Some(&summed),
                ..Default::default()
            },
        ),
    ];
    for (what, mask) in masks {
        let out = attention(&q, &k, &v, dims, 1.0, &mask).unwrap();
        assert!(out.iter().all(|x| !x.is_nan()), "{what}: NaN in {out:?}");
        assert_eq!(
            &out[2..4],
            &[0.0, 0.0],
            "{what}: masked row must be exactly 0"
        );
        for row in [0, 2, 3] {
            assert_close(
                &format!("{what}: row {row}"),
                &out[row * 2..row * 2 + 2],
                &unmasked[row * 2..row * 2 + 2],
                0.0,
                0.0,
            );
        }
    }
}

#[test]
fn a2_causal_mask_with_kv_cache_sees_keys_up_to_its_absolute_position() {
    let mut rng = Rng::new(2);
    let d = 4;
    let (k, v) = (rng.vec(5 * d, 1.0), rng.vec(5 * d, 1.0));
    let q_all = rng.vec(5 * d, 1.0);
    let causal = AttentionMask {
        causal: true,
        ..Default::default()
    };
    let full = attention(
        &q_all,
        &k,
        &v,
        AttentionDims {
            batch: 1,
            heads: 1,
            q_len: 5,
            k_len: 5,
            head_dim: d,
        },
        0.5,
        &causal,
    )
    .unwrap();
    // 4 cached tokens + 1 new query: position 4 sees keys 0..=4.
    let one = attention(
        &q_all[4 * d..],
        &k,
        &v,
        AttentionDims {
            batch: 1,
            heads: 1,
            q_len: 1,
            k_len: 5,
            head_dim: d,
        },
        0.5,
        &causal,
    )
    .unwrap();
    assert_close(
        "q_len 1, k_len 5 vs naive",
        &one,
        &naive_attention(&q_all[4 * d..], &k, &v, 1, d, 0.5, |_| (0..5).collect()),
        F32_ABS,
        F32_REL,
    );
    assert_close("q_len 1 vs full pass row 4", &one, &full[4 * d..], 0.0, 0.0);
    // 3 cached + a 2-token chunk: positions 3 and 4.
    let chunk = attention(
        &q_all[3 * d..],
        &k,
        &v,
        AttentionDims {
            batch: 1,
            heads: 1,
            q_len: 2,
            k_len: 5,
            head_dim: d,
        },
        0.5,
        &causal,
    )
    .unwrap();
    assert_close(
        "chunk vs naive",
        &chunk,
        &naive_attention(&q_all[3 * d..], &k, &v, 2, d, 0.5, |i| {
            (0..=3 + i).collect()
        }),
        F32_ABS,
        F32_REL,
    );
    assert_close(
        "chunk vs full pass rows 3..5",
        &chunk,
        &full[3 * d..],
        0.0,
        0.0,
    );
    // Full pass: position p sees exactly 0..=p.
    assert_close(
        "full causal vs naive",
        &full,
        &naive_attention(&q_all, &k, &v, 5, d, 0.5, |i| (0..=i).collect()),
        F32_ABS,
        F32_REL,
    );
}

#[test]
fn b2_layer_norm_hidden_3_uses_the_variance_of_3_elements() {
    let y = layer_norm(&[1.0, 2.0, 3.0], None, &[1.0; 3], &[0.0; 3], 3, 0.0).unwrap();
    assert_close(
        "LN([1,2,3])",
        &y,
        &[-1.22474, 0.0, 1.22474],
        PRINTED_5DP,
        0.0,
    );
}

#[test]
fn b2_layer_norm_odd_and_large_hidden_sizes() {
    let mut rng = Rng::new(3);
    for hidden in [1usize, 3, 17, 500, 512, 513] {
        let rows = 3;
        let x = rng.vec(rows * hidden, 2.0);
        let gamma: Vec<f32> = (0..hidden).map(|_| 1.0 + rng.uniform(0.5)).collect();
        let beta = rng.vec(hidden, 0.5);
        let res = rng.vec(rows * hidden, 1.0);
        let eps = 1e-5;
        let y = layer_norm(&x, Some(&res), &gamma, &beta, hidden, eps).unwrap();
        let mut expected = Vec::new();
        for r in 0..rows {
            let h: Vec<f64> = (0..hidden)
                .map(|i| x[r * hidden + i] as f64 + res[r * hidden + i] as f64)
                .collect();
            let mean = h.iter().sum::<f64>() / hidden as f64;
            let var = h.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / hidden as f64;
            expected.extend(h.iter().enumerate().map(|(i, v)| {
                ((v - mean) / (var + eps as f64).sqrt() * gamma[i] as f64 + beta[i] as f64) as f32
            }));
        }
        assert_close(&format!("hidden {hidden}"), &y, &expected, F32_ABS, F32_REL);
    }
}

#[test]
fn c1_layer_norm_with_a_large_mean() {
    let y = layer_norm(
        &[40000.0, 40001.0, 40002.0, 40003.0],
        None,
        &[1.0; 4],
        &[0.0; 4],
        4,
        1e-5,
    )
    .unwrap();
    assert_close(
        "LN(40000..40003)",
        &y,
        &[-1.341635, -0.447212, 0.447212, 1.341635],
        PRINTED_6DP * 2.0,
        0.0,
    );
}

#[test]
fn c1_layer_norm_rows_of_100_plus_small_noise_keep_their_variance() {
    let hidden = 32768;
    let mut rng = Rng::new(4);
    // Uniform noise in ±0.01·√3 has variance 1e-4.
    let x: Vec<f32> = (0..2 * hidden)
        .map(|_| 100.0 + rng.uniform(0.01 * 3f32.sqrt()))
        .collect();
    let eps = 1e-6f32;
    let y = layer_norm(
        &x,
        None,
        &vec![1.0; hidden],
        &vec![0.0; hidden],
        hidden,
        eps,
    )
    .unwrap();
    for r in 0..2 {
        let row = &x[r * hidden..][..hidden];
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / hidden as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / hidden as f64;
        assert!(
            (var - 1e-4).abs() < INPUT_VAR_TOL,
            "test input variance {var}, wanted about 1e-4"
        );
        // Output variance is var / (var + eps); a cancelled variance gives ~0 or NaN.
        let out = &y[r * hidden..][..hidden];
        let out_var = out.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / hidden as f64;
        let want = var / (var + eps as f64);
        assert!(
            (out_var - want).abs() < OUT_VAR_TOL,
            "row {r}: output variance {out_var}, expected {want}"
        );
    }
}

#[test]
fn d4_sinusoidal_table_for_d_model_8() {
    let p = sinusoidal_positions(0, 2, 8);
    assert_close(
        "position 0",
        &p[..8],
        &[0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0],
        0.0,
        0.0,
    );
    assert_close(
        "position 1",
        &p[8..],
        &[
            0.841471, 0.099833, 0.010000, 0.001000, 0.540302, 0.995004, 0.999950, 1.000000,
        ],
        PRINTED_6DP,
        0.0,
    );
    // A start offset continues the same table (incremental decoding).
    assert_close(
        "start offset",
        &sinusoidal_positions(1, 1, 8),
        &p[8..],
        0.0,
        0.0,
    );
}
