//! The CPU model's forward pass against an independent f64 implementation
//! (tests/common_model/naive.rs) on small random checkpoints, plus the
//! incremental-decoding and batching properties (CASES A2, A3, D1, D2).

mod common_model;

use common_model::{assert_close, write_model, Rng, Tiny, EOS};
use safetensors::Dtype;
use transformer_kernels::cpu::Cpu;
use transformer_kernels::model::{Backend, MarianModel};

/// f32 model vs f64 oracle on d_model 12 / 2 layers: a few f32 roundings per
/// op over ~10 ops, far below 1e-4; a wiring fault is O(1).
const F32_VS_F64_ABS: f32 = 1e-4;
const F32_VS_F64_REL: f32 = 1e-4;
/// Same f32 maths, different batching or chunking: CASES A3 asks for 1e-6.
const SAME_MATHS_ABS: f32 = 1e-6;
const SAME_MATHS_REL: f32 = 1e-6;
/// Difference of two f32 logits of magnitude ~1-10 that differ only by the
/// bias: a few ulps of the logits (~1e-6 each).
const BIAS_DIFF_ABS: f32 = 1e-5;
const BIAS_DIFF_REL: f32 = 1e-5;

fn sources(tiny: &Tiny, rng: &mut Rng, lens: &[usize]) -> Vec<Vec<u32>> {
    lens.iter()
        .map(|&n| {
            let mut s: Vec<u32> = (0..n)
                .map(|_| 1 + rng.below(tiny.vocab as u64 - 2) as u32)
                .collect();
            s.push(EOS);
            s
        })
        .collect()
}

fn flat(m: &[Vec<f64>]) -> Vec<f32> {
    m.iter().flatten().map(|&v| v as f32).collect()
}

#[test]
fn encoder_and_logits_match_the_f64_oracle_for_each_activation() {
    for (seed, act) in [(1u64, "swish"), (2, "relu"), (3, "gelu")] {
        let tiny = Tiny {
            activation: act,
            ..Tiny::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let tensors = tiny.random_tensors(seed);
        write_model(dir.path(), &tiny.config_json(), &tensors, Dtype::F32);
        let model = MarianModel::load(Cpu, dir.path()).unwrap();
        let naive = tiny.naive(&tensors);
        let mut rng = Rng::new(seed + 100);
        let src = sources(&tiny, &mut rng, &[3, 7]);
        let dec: Vec<Vec<u32>> = vec![vec![tiny.pad(), 5, 9, 2], vec![tiny.pad(), 11, 3, 3, 8, 1]];
        let hidden = model.encoder_hidden_states(&src).unwrap();
        let logits = model.decoder_logits(&src, &dec).unwrap();
        for i in 0..src.len() {
            assert_close(
                &format!("{act}: encoder states of source {i}"),
                &hidden[i],
                &flat(&naive.encode(&src[i])),
                F32_VS_F64_ABS,
                F32_VS_F64_REL,
            );
            assert_close(
                &format!("{act}: logits of pair {i}"),
                &logits[i],
                &flat(&naive.logits(&src[i], &dec[i])),
                F32_VS_F64_ABS,
                F32_VS_F64_REL,
            );
        }
    }
}

#[test]
fn d1_final_logits_bias_is_added() {
    let tiny = Tiny::default();
    let mut tensors = tiny.random_tensors(7);
    let bias = tensors["final_logits_bias"].1.clone();
    assert!(
        bias.iter().any(|&b| b.abs() > 0.1),
        "test needs a non-zero bias"
    );
    let with = tempfile::tempdir().unwrap();
    write_model(with.path(), &tiny.config_json(), &tensors, Dtype::F32);
    tensors.get_mut("final_logits_bias").unwrap().1.fill(0.0);
    let without = tempfile::tempdir().unwrap();
    write_model(without.path(), &tiny.config_json(), &tensors, Dtype::F32);
    let src = vec![vec![4, 5, 6, EOS]];
    let dec = vec![vec![tiny.pad(), 3]];
    let a = MarianModel::load(Cpu, with.path())
        .unwrap()
        .decoder_logits(&src, &dec)
        .unwrap();
    let b = MarianModel::load(Cpu, without.path())
        .unwrap()
        .decoder_logits(&src, &dec)
        .unwrap();
    let diff: Vec<f32> = a[0].iter().zip(&b[0]).map(|(x, y)| x - y).collect();
    let expected: Vec<f32> = bias.iter().chain(bias.iter()).copied().collect();
    assert_close(
        "logits(bias) - logits(no bias)",
        &diff,
        &expected,
        BIAS_DIFF_ABS,
        BIAS_DIFF_REL,
    );
}

#[test]
fn d2_each_sublayer_uses_its_own_layer_norm() {
    // Swapping two norms of one decoder layer must change the logits, and
    // the model must still agree with the oracle that reads norms by name.
    let tiny = Tiny::default();
    let mut tensors = tiny.random_tensors(11);
    for part in ["weight", "bias"] {
        let a = format!("model.decoder.layers.1.self_attn_layer_norm.{part}");
        let b = format!("model.decoder.layers.1.encoder_attn_layer_norm.{part}");
        let ta = tensors[&a].clone();
        let tb = tensors[&b].clone();
        tensors.insert(a, tb);
        tensors.insert(b, ta);
    }
    let orig = tiny.random_tensors(11);
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    write_model(d1.path(), &tiny.config_json(), &orig, Dtype::F32);
    write_model(d2.path(), &tiny.config_json(), &tensors, Dtype::F32);
    let src = vec![vec![4, 5, 6, 7, EOS]];
    let dec = vec![vec![tiny.pad(), 3, 9]];
    let l1 = MarianModel::load(Cpu, d1.path())
        .unwrap()
        .decoder_logits(&src, &dec)
        .unwrap();
    let l2 = MarianModel::load(Cpu, d2.path())
        .unwrap()
        .decoder_logits(&src, &dec)
        .unwrap();
    let max_diff = l1[0]
        .iter()
        .zip(&l2[0])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        max_diff > 1e-3,
        "swapping two norms changed logits by only {max_diff}"
    );
    assert_close(
        "swapped-norm model vs oracle",
        &l2[0],
        &flat(&tiny.naive(&tensors).logits(&src[0], &dec[0])),
        F32_VS_F64_ABS,
        F32_VS_F64_REL,
    );
}

#[test]
fn a2_step_by_step_and_chunked_decoding_equal_one_full_pass() {
    let tiny = Tiny::default();
    let dir = tempfile::tempdir().unwrap();
    tiny.write(dir.path(), 21);
    let model = MarianModel::load(Cpu, dir.path()).unwrap();
    let src = vec![vec![3, 8, 2, 9, EOS], vec![5, 6, EOS]];
    let dec = [tiny.pad(), 4, 7, 1, 12, 30];
    let t = dec.len();
    let vocab = tiny.vocab;
    let full = model
        .decoder_logits(&src, &[dec.to_vec(), dec.to_vec()])
        .unwrap();
    let enc = model.encode(&src).unwrap();
    // One token at a time, with a deliberately small cache so that it grows.
    let mut state = model.start_decoder(&enc, &[0, 1], 1).unwrap();
    for (p, &id) in dec.iter().enumerate() {
        let logits = model
            .backend()
            .download(&model.decode_step(&mut state, &[id, id], 1).unwrap())
            .unwrap();
        for r in 0..2 {
            assert_close(
                &format!("row {r}, step {p}"),
                &logits[r * vocab..][..vocab],
                &full[r][p * vocab..][..vocab],
                SAME_MATHS_ABS,
                SAME_MATHS_REL,
            );
        }
    }
    // 4 cached tokens then a 2-token chunk (k_len 6 with q_len 2).
    let mut state = model.start_decoder(&enc, &[0, 1], t).unwrap();
    let first: Vec<u32> = [&dec[..4], &dec[..4]].concat();
    model.decode_step(&mut state, &first, 4).unwrap();
    let chunk: Vec<u32> = [&dec[4..], &dec[4..]].concat();
    let logits = model
        .backend()
        .download(&model.decode_step(&mut state, &chunk, 2).unwrap())
        .unwrap();
    for r in 0..2 {
        assert_close(
            &format!("chunk row {r}"),
            &logits[r * 2 * vocab..][..2 * vocab],
            &full[r][4 * vocab..],
            SAME_MATHS_ABS,
            SAME_MATHS_REL,
        );
    }
}

#[test]
fn a3_batch_equals_alone_for_encoder_states_logits_and_translations() {
    let tiny = Tiny::default();
    let dir = tempfile::tempdir().unwrap();
    tiny.write(dir.path(), 31);
    let model = MarianModel::load(Cpu, dir.path()).unwrap();
    let mut rng = Rng::new(5);
    let src = sources(&tiny, &mut rng, &[3, 7]); // 3 and 7 tokens + EOS
    let dec = vec![vec![tiny.pad(), 2, 5], vec![tiny.pad(), 9, 1, 4, 4]];
    let batch_h = model.encoder_hidden_states(&src).unwrap();
    let batch_l = model.decoder_logits(&src, &dec).unwrap();
    let mut gen = transformer_kernels::model::GenerationConfig::defaults_for(model.config());
    gen.max_length = 12;
    let batch_g = model.generate(&src, &gen).unwrap();
    gen.num_beams = 3;
    gen.num_return_sequences = 3;
    let batch_b = model.generate(&src, &gen).unwrap();
    for i in 0..2 {
        let one = std::slice::from_ref(&src[i]);
        let alone_h = model.encoder_hidden_states(one).unwrap();
        assert_close(
            &format!("encoder states {i}"),
            &batch_h[i],
            &alone_h[0],
            SAME_MATHS_ABS,
            SAME_MATHS_REL,
        );
        let alone_l = model
            .decoder_logits(one, std::slice::from_ref(&dec[i]))
            .unwrap();
        assert_close(
            &format!("cross-attention logits {i}"),
            &batch_l[i],
            &alone_l[0],
            SAME_MATHS_ABS,
            SAME_MATHS_REL,
        );
        let alone_b = model.generate(one, &gen).unwrap();
        assert_eq!(batch_b[i].len(), 3);
        for (hb, ha) in batch_b[i].iter().zip(&alone_b[0]) {
            assert_eq!(hb.ids, ha.ids, "beam n-best of source {i}");
            assert_close(
                &format!("beam score {i}"),
                &[hb.score],
                &[ha.score],
                SAME_MATHS_ABS,
                SAME_MATHS_REL,
            );
        }
        gen.num_beams = 1;
        gen.num_return_sequences = 1;
        let alone_g = model.generate(one, &gen).unwrap();
        assert_eq!(
            batch_g[i][0].ids, alone_g[0][0].ids,
            "greedy ids of source {i}"
        );
        gen.num_beams = 3;
        gen.num_return_sequences = 3;
    }
}

#[test]
fn f16_and_bf16_checkpoints_load_as_their_f32_values() {
    let tiny = Tiny::default();
    let tensors = tiny.random_tensors(41);
    for (dtype, round) in [
        (
            Dtype::F16,
            (|v: f32| half::f16::from_f32(v).to_f32()) as fn(f32) -> f32,
        ),
        (Dtype::BF16, |v: f32| half::bf16::from_f32(v).to_f32()),
    ] {
        let rounded: std::collections::BTreeMap<_, _> = tensors
            .iter()
            .map(|(n, (s, d))| {
                (
                    n.clone(),
                    (s.clone(), d.iter().map(|&v| round(v)).collect::<Vec<f32>>()),
                )
            })
            .collect();
        let half_dir = tempfile::tempdir().unwrap();
        write_model(half_dir.path(), &tiny.config_json(), &tensors, dtype);
        let f32_dir = tempfile::tempdir().unwrap();
        write_model(f32_dir.path(), &tiny.config_json(), &rounded, Dtype::F32);
        let src = vec![vec![1, 2, 3, EOS]];
        let dec = vec![vec![tiny.pad(), 6]];
        let a = MarianModel::load(Cpu, half_dir.path())
            .unwrap()
            .decoder_logits(&src, &dec)
            .unwrap();
        let b = MarianModel::load(Cpu, f32_dir.path())
            .unwrap()
            .decoder_logits(&src, &dec)
            .unwrap();
        // Identical f32 values in, identical arithmetic: bit-equal out.
        assert_eq!(a, b, "{dtype:?} checkpoint differs from its f32 widening");
    }
}
