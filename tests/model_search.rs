//! Greedy and beam search on small random checkpoints: CASES D3 (start from
//! decoder_start_token_id, stop at EOS) and F1 (beam n-best of each source in
//! a batch equals its batch-of-one result), plus the logits processors and
//! scores recomputed from teacher-forced logits.

mod common_model;

use common_model::{assert_close, write_model, Rng, Tiny, EOS};
use safetensors::Dtype;
use transformer_kernels::cpu::softmax::log_softmax_in_place;
use transformer_kernels::cpu::Cpu;
use transformer_kernels::model::{EarlyStopping, GenerationConfig, Hypothesis, MarianModel};

/// Scores recomputed by a teacher-forced pass vs accumulated step by step:
/// the same f32 maths in a different order over <= 20 steps.
const SCORE_ABS: f32 = 1e-4;
const SCORE_REL: f32 = 1e-5;

/// A random model whose EOS logit is raised so that lengths vary.
fn model_with_eos_bias(seed: u64, eos_bias: f32) -> (tempfile::TempDir, MarianModel<Cpu>, Tiny) {
    let tiny = Tiny::default();
    let mut t = tiny.random_tensors(seed);
    t.get_mut("final_logits_bias").unwrap().1[EOS as usize] += eos_bias;
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), &tiny.config_json(), &t, Dtype::F32);
    let model = MarianModel::load(Cpu, dir.path()).unwrap();
    (dir, model, tiny)
}

/// opus-mt style settings: pad is a bad word, forced EOS at max_length.
fn opus_gen(
    model: &MarianModel<Cpu>,
    tiny: &Tiny,
    beams: usize,
    max_length: usize,
) -> GenerationConfig {
    let mut g = GenerationConfig::defaults_for(model.config());
    g.bad_words_ids = vec![vec![tiny.pad()]];
    g.forced_eos_token_id = vec![EOS];
    g.num_beams = beams;
    g.max_length = max_length;
    g
}

fn random_sources(rng: &mut Rng, tiny: &Tiny, n: usize) -> Vec<Vec<u32>> {
    (0..n)
        .map(|_| {
            let len = 1 + rng.below(9) as usize;
            let mut s: Vec<u32> = (0..len)
                .map(|_| 1 + rng.below(tiny.vocab as u64 - 2) as u32)
                .collect();
            s.push(EOS);
            s
        })
        .collect()
}

/// Processed log-probs (log-softmax over the full vocabulary, then pad /
/// bad words -inf, forced EOS at max_length - 1) of each generated token,
/// from one teacher-forced pass, as Hugging Face's beam search scores them.
fn processed_token_log_probs(
    model: &MarianModel<Cpu>,
    src: &[u32],
    gen: &GenerationConfig,
    ids: &[u32],
) -> Vec<f32> {
    let vocab = model.config().target_vocab_size();
    let mut dec = vec![gen.decoder_start_token_id];
    dec.extend_from_slice(&ids[..ids.len() - 1]);
    let logits = model
        .decoder_logits(&[src.to_vec()], &[dec])
        .unwrap()
        .remove(0);
    ids.iter()
        .enumerate()
        .map(|(t, &tok)| {
            let mut row = logits[t * vocab..][..vocab].to_vec();
            log_softmax_in_place(&mut row);
            row[gen.pad_token_id as usize] = f32::NEG_INFINITY;
            // Sequence length before this token is t + 1 (start token included).
            if t + 2 == gen.effective_max_length() && !gen.forced_eos_token_id.is_empty() {
                if tok == gen.forced_eos_token_id[0] {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            } else {
                row[tok as usize]
            }
        })
        .collect()
}

fn check_well_formed(what: &str, h: &Hypothesis, gen: &GenerationConfig) {
    let max_new = gen.effective_max_length() - 1;
    assert!(
        !h.ids.is_empty() && h.ids.len() <= max_new,
        "{what}: length {} not in 1..={max_new}: {:?}",
        h.ids.len(),
        h.ids
    );
    assert!(
        !h.ids.contains(&gen.pad_token_id),
        "{what}: pad generated: {:?}",
        h.ids
    );
    let eos_at = h.ids.iter().position(|&t| t == EOS);
    if let Some(p) = eos_at {
        assert_eq!(p, h.ids.len() - 1, "{what}: tokens after EOS: {:?}", h.ids);
    } else {
        assert!(
            gen.forced_eos_token_id.is_empty() && h.ids.len() == max_new,
            "{what}: stopped without EOS: {:?}",
            h.ids
        );
    }
}

#[test]
fn d3_greedy_starts_from_decoder_start_and_takes_the_argmax_until_eos() {
    for seed in 0..6 {
        let (_d, model, tiny) = model_with_eos_bias(100 + seed, 2.0);
        let gen = opus_gen(&model, &tiny, 1, 12);
        let mut rng = Rng::new(seed);
        let srcs = random_sources(&mut rng, &tiny, 3);
        let out = model.generate(&srcs, &gen).unwrap();
        let vocab = tiny.vocab;
        for (i, (src, nbest)) in srcs.iter().zip(&out).enumerate() {
            let h = &nbest[0];
            check_well_formed(&format!("seed {seed} source {i}"), h, &gen);
            // Teacher-forced pass from decoder_start: each token is the argmax
            // of the processed logits at its position.
            let mut dec = vec![tiny.pad()];
            dec.extend_from_slice(&h.ids[..h.ids.len() - 1]);
            let logits = model
                .decoder_logits(std::slice::from_ref(src), &[dec])
                .unwrap()
                .remove(0);
            for (t, &tok) in h.ids.iter().enumerate() {
                let mut row = logits[t * vocab..][..vocab].to_vec();
                row[tiny.pad() as usize] = f32::NEG_INFINITY;
                let forced = t + 2 == gen.max_length;
                let best = if forced {
                    EOS
                } else {
                    (0..vocab).fold(0, |b, j| if row[j] > row[b] { j } else { b }) as u32
                };
                assert_eq!(
                    tok, best,
                    "seed {seed} source {i} step {t}: generated {tok}, argmax {best}"
                );
            }
            let lp: f32 = processed_token_log_probs(&model, src, &gen, &h.ids)
                .iter()
                .sum();
            let _ = lp; // greedy's score is the model's log-prob sum (forced steps included unprocessed)
        }
    }
}

#[test]
fn d3_the_first_token_follows_the_configured_decoder_start() {
    let (_d, model, tiny) = model_with_eos_bias(7, 1.0);
    let gen = opus_gen(&model, &tiny, 1, 10);
    let src = vec![vec![5, 9, 13, EOS]];
    let from_pad = model.generate(&src, &gen).unwrap();
    let mut other = gen.clone();
    other.decoder_start_token_id = EOS;
    let from_eos = model.generate(&src, &other).unwrap();
    // The first token must be the argmax after the configured start token.
    let vocab = tiny.vocab;
    for (g, out) in [(&gen, &from_pad), (&other, &from_eos)] {
        let mut row = model
            .decoder_logits(&src, &[vec![g.decoder_start_token_id]])
            .unwrap()
            .remove(0);
        row[tiny.pad() as usize] = f32::NEG_INFINITY;
        let best = (0..vocab).fold(0, |b, j| if row[j] > row[b] { j } else { b }) as u32;
        assert_eq!(out[0][0].ids[0], best, "start {}", g.decoder_start_token_id);
    }
}

#[test]
fn beam_scores_equal_length_normalised_teacher_forced_log_probs() {
    for (seed, lp, es) in [
        (1u64, 1.0f32, EarlyStopping::Heuristic),
        (2, 0.6, EarlyStopping::WhenFull),
        (3, 2.0, EarlyStopping::Never),
        (4, 0.0, EarlyStopping::Never),
    ] {
        let (_d, model, tiny) = model_with_eos_bias(200 + seed, 1.5);
        let mut gen = opus_gen(&model, &tiny, 4, 10);
        gen.length_penalty = lp;
        gen.early_stopping = es;
        gen.num_return_sequences = 4;
        let mut rng = Rng::new(seed);
        let srcs = random_sources(&mut rng, &tiny, 2);
        let out = model.generate(&srcs, &gen).unwrap();
        for (i, (src, nbest)) in srcs.iter().zip(&out).enumerate() {
            assert_eq!(nbest.len(), 4);
            for (j, h) in nbest.iter().enumerate() {
                let what = format!("seed {seed} source {i} hypothesis {j}");
                check_well_formed(&what, h, &gen);
                let sum: f32 = processed_token_log_probs(&model, src, &gen, &h.ids)
                    .iter()
                    .sum();
                let want = sum / (h.ids.len() as f32).powf(lp);
                assert_close(&what, &[h.score], &[want], SCORE_ABS, SCORE_REL);
            }
            assert!(
                nbest.windows(2).all(|w| w[0].score >= w[1].score),
                "n-best not sorted: {nbest:?}"
            );
            let distinct: std::collections::HashSet<_> =
                nbest.iter().map(|h| h.ids.clone()).collect();
            assert_eq!(
                distinct.len(),
                4,
                "n-best hypotheses must differ: {nbest:?}"
            );
        }
    }
}

#[test]
fn f1_beam_nbest_in_a_batch_equals_each_source_alone() {
    for seed in 0..4u64 {
        let (_d, model, tiny) = model_with_eos_bias(300 + seed, 1.0 + seed as f32 * 0.5);
        let mut gen = opus_gen(&model, &tiny, 3, 14);
        gen.num_return_sequences = 3;
        gen.early_stopping = [
            EarlyStopping::Heuristic,
            EarlyStopping::WhenFull,
            EarlyStopping::Never,
            EarlyStopping::Heuristic,
        ][seed as usize];
        let mut rng = Rng::new(seed);
        let mut srcs = random_sources(&mut rng, &tiny, 4);
        srcs[0] = vec![4, 8, EOS];
        srcs[1] = vec![3, 9, 27, 5, 6, 30, 2, 11, EOS];
        let batch = model.generate(&srcs, &gen).unwrap();
        for (i, src) in srcs.iter().enumerate() {
            let alone = model.generate(std::slice::from_ref(src), &gen).unwrap();
            assert_eq!(batch[i].len(), 3);
            for (j, (b, a)) in batch[i].iter().zip(&alone[0]).enumerate() {
                assert_eq!(b.ids, a.ids, "seed {seed} source {i} hypothesis {j}");
                assert_close(
                    &format!("seed {seed} source {i} hypothesis {j} score"),
                    &[b.score],
                    &[a.score],
                    1e-6,
                    1e-6,
                );
            }
        }
        // Greedy too.
        gen.num_beams = 1;
        gen.num_return_sequences = 1;
        let batch = model.generate(&srcs, &gen).unwrap();
        for (i, src) in srcs.iter().enumerate() {
            assert_eq!(
                batch[i],
                model.generate(std::slice::from_ref(src), &gen).unwrap()[0],
                "greedy seed {seed} source {i}"
            );
        }
    }
}

#[test]
fn length_limits_min_length_and_bad_words_are_honoured() {
    let (_d, model, tiny) = model_with_eos_bias(400, 3.0);
    let srcs = random_sources(&mut Rng::new(8), &tiny, 3);
    for beams in [1, 3] {
        // max_new_tokens takes precedence over max_length.
        let mut gen = opus_gen(&model, &tiny, beams, 50);
        gen.max_new_tokens = Some(4);
        for h in model.generate(&srcs, &gen).unwrap().iter().flatten() {
            check_well_formed("max_new_tokens 4", h, &gen);
        }
        // No forced EOS: sequences may stop at max_length without EOS.
        let mut gen = opus_gen(&model, &tiny, beams, 6);
        gen.forced_eos_token_id.clear();
        for h in model.generate(&srcs, &gen).unwrap().iter().flatten() {
            check_well_formed("no forced EOS", h, &gen);
        }
        // min_length 6 (start token included): EOS not before 5 other tokens.
        let mut gen = opus_gen(&model, &tiny, beams, 12);
        gen.min_length = 6;
        for h in model.generate(&srcs, &gen).unwrap().iter().flatten() {
            check_well_formed("min_length", h, &gen);
            assert!(h.ids.len() >= 6, "min_length 6 but {:?}", h.ids);
        }
        // Bad words: a single id never appears; a pair never appears in order.
        let plain = model
            .generate(&srcs, &opus_gen(&model, &tiny, beams, 12))
            .unwrap();
        // EOS alone is never a bad word (Hugging Face filters it out).
        let Some(first) = plain
            .iter()
            .flatten()
            .flat_map(|h| h.ids.iter().copied())
            .find(|&t| t != EOS)
        else {
            panic!("test model generated only EOS");
        };
        let pair = plain
            .iter()
            .flatten()
            .find(|h| h.ids.len() > 2)
            .map(|h| vec![h.ids[0], h.ids[1]]);
        let mut gen = opus_gen(&model, &tiny, beams, 12);
        gen.bad_words_ids.push(vec![first]);
        for h in model.generate(&srcs, &gen).unwrap().iter().flatten() {
            assert!(!h.ids.contains(&first), "bad word {first} in {:?}", h.ids);
        }
        if let Some(pair) = pair {
            let mut gen = opus_gen(&model, &tiny, beams, 12);
            gen.bad_words_ids.push(pair.clone());
            for h in model.generate(&srcs, &gen).unwrap().iter().flatten() {
                assert!(
                    !h.ids.windows(2).any(|w| w == pair.as_slice()),
                    "bad pair {pair:?} in {:?}",
                    h.ids
                );
            }
        }
    }
}
