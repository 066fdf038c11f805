//! Properties of the CPU reference ops (proptest), issue 3 item 7: softmax
//! rows sum to 1 and ignore a constant shift; attention equals the naive
//! formula; masked keys / values and key permutations change nothing;
//! LayerNorm gives mean 0 / variance 1; linear equals an f64 triple loop;
//! the logits step's top-k equals a full-row log-softmax, masked and sorted;
//! plus shape errors.

// Index loops mirror the formulas of the naive references.
#![allow(clippy::needless_range_loop)]

mod common_model;

use common_model::{assert_close, Rng};
use proptest::prelude::*;
use transformer_kernels::cpu::activation::apply;
use transformer_kernels::cpu::attention::{
    attention, attention_bshd, AttentionDims, AttentionMask,
};
use transformer_kernels::cpu::embedding::{embed_tokens, embedding};
use transformer_kernels::cpu::layer_norm::layer_norm;
use transformer_kernels::cpu::linear::linear;
use transformer_kernels::cpu::log_softmax_topk::log_softmax_topk;
use transformer_kernels::cpu::residual::add;
use transformer_kernels::cpu::softmax::{log_softmax_rows, softmax_rows};
use transformer_kernels::model::TokenMask;
use transformer_kernels::Activation;
use transformer_kernels::Error;

/// f32 vs f64 on sums of up to ~100 products of O(1) values.
const F32_ABS: f32 = 2e-5;
const F32_REL: f32 = 2e-5;
/// Results that should not move at all but may differ by reassociation.
const REASSOC_ABS: f32 = 1e-6;
const REASSOC_REL: f32 = 1e-6;
/// A softmax row of up to ~100 f32 terms sums to 1 within a few ulps per term.
const SOFTMAX_SUM_TOL: f32 = 1e-5;
/// softmax(x + c) vs softmax(x): the shift rounds x + c once (|x + c| <~ 100,
/// ulp ~1e-5 there), so exp moves by ~1e-5 relative.
const SHIFT_ABS: f32 = 1e-5;
const SHIFT_REL: f32 = 1e-4;
/// log_softmax vs ln(softmax): ln of a rounded probability near 0 loses
/// absolute accuracy (d ln p = dp / p), hence the larger absolute part.
const LOG_SOFTMAX_ABS: f32 = 1e-4;
const LOG_SOFTMAX_REL: f32 = 1e-5;
/// LayerNorm output statistics in f64 of f32 values: mean of rounding errors
/// (~1e-7 each) and variance 1 - eps/(var + eps) with eps 1e-5 at most.
const LN_MEAN_TOL: f64 = 1e-5;
const LN_VAR_TOL: f64 = 1e-4;
/// Sums of up to 1001 products: f32 error grows like sqrt(k)·eps·|terms|.
const LINEAR_ABS: f32 = 2e-4;
const LINEAR_REL: f32 = 1e-4;

/// softmax(q·kᵀ·scale)·v in f64 per (batch, head, query), `[b, h, s, d]`,
/// with keys `j < len[b]` (and `j <= p` when causal) visible.
#[allow(clippy::too_many_arguments)]
fn naive(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    dims: AttentionDims,
    scale: f64,
    lens: &[usize],
    causal: bool,
) -> Vec<f32> {
    let AttentionDims {
        batch,
        heads,
        q_len,
        k_len,
        head_dim: d,
    } = dims;
    let mut out = vec![0.0f32; q.len()];
    for b in 0..batch {
        for h in 0..heads {
            for i in 0..q_len {
                let qo = ((b * heads + h) * q_len + i) * d;
                let pos = k_len as isize - q_len as isize + i as isize;
                let keys: Vec<usize> = (0..k_len)
                    .filter(|&j| j < lens[b] && (!causal || j as isize <= pos))
                    .collect();
                if keys.is_empty() {
                    continue;
                }
                let ko = |j: usize| ((b * heads + h) * k_len + j) * d;
                let s: Vec<f64> = keys
                    .iter()
                    .map(|&j| {
                        (0..d)
                            .map(|c| q[qo + c] as f64 * k[ko(j) + c] as f64)
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
                for c in 0..d {
                    out[qo + c] = keys
                        .iter()
                        .zip(&s)
                        .map(|(&j, sj)| (sj - m).exp() / z * v[ko(j) + c] as f64)
                        .sum::<f64>() as f32;
                }
            }
        }
    }
    out
}

fn dims_strategy() -> impl Strategy<Value = (AttentionDims, bool, u64)> {
    (
        1usize..3,
        1usize..4,
        1usize..7,
        1usize..9,
        1usize..10,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(batch, heads, q_len, k_len, head_dim, causal, seed)| {
            (
                AttentionDims {
                    batch,
                    heads,
                    q_len,
                    k_len,
                    head_dim,
                },
                causal,
                seed,
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn softmax_rows_sum_to_one_and_ignore_a_shift(rows in 1usize..5, cols in 1usize..40, shift in -50.0f32..50.0, seed in any::<u64>()) {
        let x = Rng::new(seed).vec(rows * cols, 8.0);
        let y = softmax_rows(&x, rows, cols).unwrap();
        for r in 0..rows {
            let s: f32 = y[r * cols..][..cols].iter().sum();
            prop_assert!((s - 1.0).abs() < SOFTMAX_SUM_TOL, "row {} sums to {}", r, s);
        }
        let shifted: Vec<f32> = x.iter().map(|v| v + shift).collect();
        assert_close("softmax(x + c)", &softmax_rows(&shifted, rows, cols).unwrap(), &y, SHIFT_ABS, SHIFT_REL);
        let log = log_softmax_rows(&x, rows, cols).unwrap();
        let ln_y: Vec<f32> = y.iter().map(|v| v.ln()).collect();
        assert_close("log_softmax vs ln(softmax)", &log, &ln_y, LOG_SOFTMAX_ABS, LOG_SOFTMAX_REL);
    }

    #[test]
    fn attention_equals_the_naive_formula((dims, causal, seed) in dims_strategy()) {
        let mut rng = Rng::new(seed);
        let nq = dims.batch * dims.heads * dims.q_len * dims.head_dim;
        let nk = dims.batch * dims.heads * dims.k_len * dims.head_dim;
        let (q, k, v) = (rng.vec(nq, 1.5), rng.vec(nk, 1.5), rng.vec(nk, 1.5));
        let lens: Vec<usize> = (0..dims.batch).map(|_| 1 + rng.below(dims.k_len as u64) as usize).collect();
        let scale = 1.0 / (dims.head_dim as f32).sqrt();
        let mask = AttentionMask { key_lengths: Some(&lens), causal, ..Default::default() };
        let got = attention(&q, &k, &v, dims, scale, &mask).unwrap();
        assert_close("attention", &got, &naive(&q, &k, &v, dims, scale as f64, &lens, causal), F32_ABS, F32_REL);
    }

    #[test]
    fn masked_keys_and_values_change_nothing((dims, causal, seed) in dims_strategy()) {
        let mut rng = Rng::new(seed);
        let nq = dims.batch * dims.heads * dims.q_len * dims.head_dim;
        let nk = dims.batch * dims.heads * dims.k_len * dims.head_dim;
        let (q, mut k, mut v) = (rng.vec(nq, 1.5), rng.vec(nk, 1.5), rng.vec(nk, 1.5));
        let lens: Vec<usize> = (0..dims.batch).map(|_| rng.below(dims.k_len as u64 + 1) as usize).collect();
        let mask = AttentionMask { key_lengths: Some(&lens), causal, ..Default::default() };
        let before = attention(&q, &k, &v, dims, 0.7, &mask).unwrap();
        // Overwrite every padded key / value with garbage, including NaN.
        for b in 0..dims.batch {
            for h in 0..dims.heads {
                for j in lens[b]..dims.k_len {
                    let o = ((b * dims.heads + h) * dims.k_len + j) * dims.head_dim;
                    for c in 0..dims.head_dim {
                        k[o + c] = 1e30;
                        v[o + c] = f32::NAN;
                    }
                }
            }
        }
        let after = attention(&q, &k, &v, dims, 0.7, &mask).unwrap();
        assert_close("after changing masked keys", &after, &before, 0.0, 0.0);
    }

    #[test]
    fn permuting_keys_with_their_values_changes_nothing(seed in any::<u64>(), k_len in 1usize..12, head_dim in 1usize..9) {
        let mut rng = Rng::new(seed);
        let dims = AttentionDims { batch: 1, heads: 1, q_len: 3, k_len, head_dim };
        let (q, k, v) = (rng.vec(3 * head_dim, 2.0), rng.vec(k_len * head_dim, 2.0), rng.vec(k_len * head_dim, 2.0));
        let mut perm: Vec<usize> = (0..k_len).collect();
        for i in (1..k_len).rev() {
            perm.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let pk: Vec<f32> = perm.iter().flat_map(|&j| k[j * head_dim..][..head_dim].to_vec()).collect();
        let pv: Vec<f32> = perm.iter().flat_map(|&j| v[j * head_dim..][..head_dim].to_vec()).collect();
        let a = attention(&q, &k, &v, dims, 0.5, &AttentionMask::default()).unwrap();
        let b = attention(&q, &pk, &pv, dims, 0.5, &AttentionMask::default()).unwrap();
        assert_close("permuted keys", &b, &a, REASSOC_ABS, REASSOC_REL);
    }

    #[test]
    fn bshd_layout_with_capacity_equals_bhsd((dims, causal, seed) in dims_strategy(), extra in 0usize..3) {
        let AttentionDims { batch, heads, q_len, k_len, head_dim } = dims;
        let d = heads * head_dim;
        let cap = k_len + extra;
        let mut rng = Rng::new(seed);
        let (q, k, v) = (rng.vec(batch * q_len * d, 1.5), rng.vec(batch * cap * d, 1.5), rng.vec(batch * cap * d, 1.5));
        // [b, s, h, c] -> [b, h, s, c], first `len` positions.
        let to_bhsd = |x: &[f32], s_cap: usize, len: usize| -> Vec<f32> {
            let mut out = Vec::new();
            for b in 0..batch { for h in 0..heads { for s in 0..len {
                out.extend_from_slice(&x[(b * s_cap + s) * d + h * head_dim..][..head_dim]);
            }}}
            out
        };
        let mask = AttentionMask { causal, ..Default::default() };
        let got = attention_bshd(&q, &k, &v, dims, cap, 0.3, &mask).unwrap();
        let want = attention(&to_bhsd(&q, q_len, q_len), &to_bhsd(&k, cap, k_len), &to_bhsd(&v, cap, k_len), dims, 0.3, &mask).unwrap();
        assert_close("bshd vs bhsd", &to_bhsd(&got, q_len, q_len), &want, 0.0, 0.0);
    }

    #[test]
    fn layer_norm_gives_mean_0_and_variance_1(rows in 1usize..4, hidden in 2usize..300, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let x: Vec<f32> = (0..rows * hidden).map(|_| rng.uniform(10.0) + 3.0).collect();
        let y = layer_norm(&x, None, &vec![1.0; hidden], &vec![0.0; hidden], hidden, 1e-12).unwrap();
        for r in 0..rows {
            let row = &y[r * hidden..][..hidden];
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / hidden as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / hidden as f64;
            prop_assert!(mean.abs() < LN_MEAN_TOL, "row {} mean {}", r, mean);
            prop_assert!((var - 1.0).abs() < LN_VAR_TOL, "row {} variance {}", r, var);
        }
    }

    #[test]
    fn linear_equals_an_f64_triple_loop(m in 1usize..20, n in 1usize..20, k in 1usize..40, bias in any::<bool>(), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let (x, w, b) = (rng.vec(m * k, 1.0), rng.vec(n * k, 1.0), rng.vec(n, 1.0));
        let got = linear(&x, &w, bias.then_some(&b[..]), m, n, k).unwrap();
        let mut want = vec![0.0f32; m * n];
        for i in 0..m { for j in 0..n {
            let s: f64 = (0..k).map(|c| x[i * k + c] as f64 * w[j * k + c] as f64).sum();
            want[i * n + j] = (s + if bias { b[j] as f64 } else { 0.0 }) as f32;
        }}
        assert_close("linear", &got, &want, F32_ABS, F32_REL);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The logits step of the CPU backend equals the long way round: the
    /// full-row f32 log-softmax (bit for bit), masked ids at -inf, and the
    /// ids sorted by masked raw logit descending, ties by lower id. Logits
    /// are multiples of 1/4 so that ties and duplicate maxima are common.
    #[test]
    fn log_softmax_topk_equals_full_log_softmax_masked_and_sorted(rows in 1usize..4, vocab in 1usize..30, k_seed in any::<usize>(), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let x: Vec<f32> = rng.vec(rows * vocab, 8.0).iter().map(|v| (v * 4.0).round() / 4.0).collect();
        let k = 1 + k_seed % vocab;
        let pick = |rng: &mut Rng, n: u64| -> Vec<u32> { (0..n).map(|_| rng.below(vocab as u64) as u32).collect() };
        let mask = TokenMask {
            every_row: pick(&mut rng, 2),
            per_row: (0..rows).map(|_| { let n = rng.below(3); pick(&mut rng, n) }).collect(),
            only: (0..rows).map(|_| (rng.below(4) == 0).then(|| { let n = 1 + rng.below(3); pick(&mut rng, n) })).collect(),
        };
        let full = log_softmax_rows(&x, rows, vocab).unwrap();
        let top = log_softmax_topk(&x, rows, vocab, &mask, k).unwrap();
        prop_assert_eq!((top.rows, top.k, top.ids.len(), top.log_probs.len()), (rows, k, rows * k, rows * k));
        for r in 0..rows {
            let masked = |id: u32| match &mask.only[r] {
                Some(only) => !only.contains(&id),
                None => mask.every_row.contains(&id) || mask.per_row[r].contains(&id),
            };
            let key = |id: u32| if masked(id) { f32::NEG_INFINITY } else { x[r * vocab + id as usize] };
            let mut want: Vec<u32> = (0..vocab as u32).collect();
            // IEEE order (-0.0 == 0.0, as torch.topk and argmax compare), ties by lower id.
            want.sort_by(|&a, &b| key(b).partial_cmp(&key(a)).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b)));
            prop_assert_eq!(top.row_ids(r), &want[..k], "row {}", r);
            for (&id, &lp) in top.row_ids(r).iter().zip(top.row_log_probs(r)) {
                let expect = if masked(id) { f32::NEG_INFINITY } else { full[r * vocab + id as usize] };
                prop_assert_eq!(lp.to_bits(), expect.to_bits(), "row {} id {}", r, id);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// A row's output does not depend on the other rows (batch == alone, bit for bit),
    /// including across the multi-threaded path (m·n·k >= 2^20).
    #[test]
    fn linear_rows_are_independent_of_the_batch(m in 2usize..40, n in 1usize..300, k in 1usize..200, big in any::<bool>(), seed in any::<u64>()) {
        let k = if big { k + 1000 } else { k };
        let mut rng = Rng::new(seed);
        let (x, w, b) = (rng.vec(m * k, 1.0), rng.vec(n * k, 1.0), rng.vec(n, 1.0));
        let all = linear(&x, &w, Some(&b), m, n, k).unwrap();
        for i in [0, m / 2, m - 1] {
            let one = linear(&x[i * k..][..k], &w, Some(&b), 1, n, k).unwrap();
            prop_assert!(one[..] == all[i * n..][..n], "row {} differs between batch and alone", i);
        }
    }
}

#[test]
fn linear_on_large_odd_shapes() {
    let mut rng = Rng::new(9);
    for (m, n, k) in [(1, 999, 1001), (33, 65, 1), (7, 58, 129)] {
        let (x, w) = (rng.vec(m * k, 1.0), rng.vec(n * k, 1.0));
        let got = linear(&x, &w, None, m, n, k).unwrap();
        let want: Vec<f32> = (0..m * n)
            .map(|idx| {
                (0..k)
                    .map(|c| x[idx / n * k + c] as f64 * w[idx % n * k + c] as f64)
                    .sum::<f64>() as f32
            })
            .collect();
        assert_close(
            &format!("linear {m}x{n}x{k}"),
            &got,
            &want,
            LINEAR_ABS,
            LINEAR_REL,
        );
    }
}

#[test]
fn activations_match_their_formulas() {
    let x = [-3.0f32, -0.5, 0.0, 0.7, 2.5];
    let relu: Vec<f32> = x.iter().map(|v| v.max(0.0)).collect();
    let swish: Vec<f32> = x.iter().map(|&v| v / (1.0 + (-v).exp())).collect();
    // GELU(x) = x·Φ(x); values of Φ from tables: Φ(-3)=0.0013499, Φ(-0.5)=0.3085375, Φ(0.7)=0.7580363, Φ(2.5)=0.9937903.
    let gelu = [
        -3.0 * 0.0013499,
        -0.5 * 0.3085375,
        0.0,
        0.7 * 0.7580363,
        2.5 * 0.9937903,
    ];
    assert_close("relu", &apply(Activation::Relu, &x), &relu, 0.0, 0.0);
    assert_close(
        "swish",
        &apply(Activation::from_name("swish").unwrap(), &x),
        &swish,
        1e-6,
        1e-6,
    );
    assert_close(
        "gelu",
        &apply(Activation::from_name("gelu").unwrap(), &x),
        &gelu,
        1e-6,
        1e-5,
    );
    assert!(matches!(
        Activation::from_name("mish"),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn embedding_gathers_scales_and_adds_positions() {
    let table: Vec<f32> = (0..12).map(|i| i as f32).collect(); // vocab 3, d 4
    let e = embed_tokens(&[2, 0], &table, 3, 4, 2.0).unwrap();
    assert_eq!(e, vec![16.0, 18.0, 20.0, 22.0, 0.0, 2.0, 4.0, 6.0]);
    let with_pos = embedding(&[2, 0], 1, 2, &table, 3, 4, 2.0, 5).unwrap();
    let pos = transformer_kernels::cpu::embedding::sinusoidal_positions(5, 2, 4);
    let want: Vec<f32> = e.iter().zip(&pos).map(|(a, b)| a + b).collect();
    assert_close("embed with start 5", &with_pos, &want, 0.0, 0.0);
    assert!(matches!(
        embed_tokens(&[3], &table, 3, 4, 1.0),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn ops_report_shape_errors_instead_of_panicking() {
    let shape = |r: transformer_kernels::Result<Vec<f32>>| matches!(r, Err(Error::Shape { .. }));
    assert!(shape(linear(&[1.0; 5], &[1.0; 6], None, 2, 3, 2)));
    assert!(shape(linear(
        &[1.0; 4],
        &[1.0; 6],
        Some(&[1.0; 2]),
        2,
        3,
        2
    )));
    assert!(shape(softmax_rows(&[1.0; 5], 2, 3)));
    assert!(shape(layer_norm(
        &[1.0; 6], None, &[1.0; 2], &[0.0; 3], 3, 1e-5
    )));
    assert!(shape(layer_norm(
        &[1.0; 6], None, &[1.0; 3], &[0.0; 3], 0, 1e-5
    )));
    assert!(shape(add(&[1.0; 3], &[1.0; 4])));
    let dims = AttentionDims {
        batch: 1,
        heads: 1,
        q_len: 2,
        k_len: 3,
        head_dim: 2,
    };
    assert!(shape(attention(
        &[0.0; 4],
        &[0.0; 6],
        &[0.0; 5],
        dims,
        1.0,
        &AttentionMask::default()
    )));
    assert!(shape(attention(
        &[0.0; 4],
        &[0.0; 6],
        &[0.0; 6],
        dims,
        1.0,
        &AttentionMask {
            key_lengths: Some(&[1, 2]),
            ..Default::default()
        }
    )));
    assert!(shape(attention_bshd(
        &[0.0; 4],
        &[0.0; 4],
        &[0.0; 4],
        dims,
        2,
        1.0,
        &AttentionMask::default()
    )));
}
