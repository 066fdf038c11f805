//! Timing of whole-model generation on the CPU reference (ignored by
//! default; run with `cargo test --release --test model_speed -- --ignored --nocapture`).
//! Prints milliseconds per sentence; asserts only that generation succeeds
//! and produces the requested lengths, not a speed (machines differ).

mod common_model;

use std::time::Instant;

use common_model::{Rng, Tiny, EOS};
use transformer_kernels::cpu::Cpu;
use transformer_kernels::model::{GenerationConfig, MarianModel};

#[test]
#[ignore = "timing: builds a 300 MB opus-mt-sized random checkpoint"]
fn opus_mt_sized_model_generation_speed() {
    // Transformer-base as opus-mt-en-de: d_model 512, 8 heads, ffn 2048, 6+6 layers, vocab 58101.
    let tiny = Tiny {
        d_model: 512,
        heads: 8,
        ffn: 2048,
        encoder_layers: 6,
        decoder_layers: 6,
        vocab: 58101,
        activation: "swish",
        scale_embedding: true,
    };
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    tiny.write(dir.path(), 1);
    let t1 = Instant::now();
    let model = MarianModel::load(Cpu, dir.path()).unwrap();
    println!(
        "write {:.1} s, load {:.1} s",
        (t1 - t0).as_secs_f64(),
        t1.elapsed().as_secs_f64()
    );
    let mut rng = Rng::new(2);
    let n = 8;
    // Sources of 12..20 tokens + EOS, as Multi30k sentences are.
    let srcs: Vec<Vec<u32>> = (0..n)
        .map(|_| {
            let len = 12 + rng.below(9) as usize;
            let mut s: Vec<u32> = (0..len).map(|_| 1 + rng.below(58000) as u32).collect();
            s.push(EOS);
            s
        })
        .collect();
    let mut gen = GenerationConfig::defaults_for(model.config());
    gen.bad_words_ids = vec![vec![tiny.pad()]];
    gen.forced_eos_token_id = vec![EOS];
    // Random weights rarely emit EOS: fix the output length at 20 tokens.
    gen.max_new_tokens = Some(20);
    for (beams, batch) in [(1usize, 1usize), (1, n), (4, 1), (4, n)] {
        gen.num_beams = beams;
        let t = Instant::now();
        let mut tokens = 0;
        for chunk in srcs.chunks(batch) {
            for h in model.generate(chunk, &gen).unwrap().iter().flatten() {
                assert!(!h.ids.is_empty() && h.ids.len() <= 20);
                tokens += h.ids.len();
            }
        }
        let ms = t.elapsed().as_secs_f64() * 1e3;
        println!(
            "beams {beams}, batch {batch}: {:.0} ms per sentence ({tokens} tokens for {n} sentences, {:.1} ms per token)",
            ms / n as f64,
            ms / tokens as f64
        );
    }
}

#[test]
#[ignore = "timing of the output projection"]
fn output_projection_speed() {
    use transformer_kernels::cpu::linear::linear;
    let (n, k) = (58101usize, 512usize);
    let mut rng = Rng::new(3);
    let w = rng.vec(n * k, 0.05);
    for m in [1usize, 4, 8, 32] {
        let x = rng.vec(m * k, 1.0);
        let t = Instant::now();
        let reps = 5;
        for _ in 0..reps {
            std::hint::black_box(linear(&x, &w, None, m, n, k).unwrap());
        }
        println!(
            "linear m {m}: {:.1} ms",
            t.elapsed().as_secs_f64() * 1e3 / reps as f64
        );
    }
}

#[test]
#[ignore = "timing of a plain dot-product GEMV"]
fn dot_gemv_speed() {
    let (n, k) = (58101usize, 512usize);
    let mut rng = Rng::new(3);
    let w = rng.vec(n * k, 0.05);
    let x = rng.vec(k, 1.0);
    let t = Instant::now();
    let reps = 5;
    for _ in 0..reps {
        let y: Vec<f32> = w
            .chunks_exact(k)
            .map(|wr| {
                let mut acc = [0.0f32; 8];
                for (a, b) in wr.chunks_exact(8).zip(x.chunks_exact(8)) {
                    for l in 0..8 {
                        acc[l] += a[l] * b[l];
                    }
                }
                acc.iter().sum()
            })
            .collect();
        std::hint::black_box(y);
    }
    println!(
        "dot gemv: {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3 / reps as f64
    );
}

#[test]
#[ignore = "timing of cpu::linear vs a plain dot loop for a large m"]
fn dot_gemm_large_m_speed() {
    use transformer_kernels::cpu::linear::linear;
    let (m, n, k) = (128usize, 2048usize, 512usize);
    let mut rng = Rng::new(3);
    let w = rng.vec(n * k, 0.05);
    let x = rng.vec(m * k, 1.0);
    let t = Instant::now();
    std::hint::black_box(linear(&x, &w, None, m, n, k).unwrap());
    println!(
        "cpu::linear::linear {m}x{n}x{k}: {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let mut y = vec![0.0f32; m * n];
    for (j, wr) in w.chunks_exact(k).enumerate() {
        for (i, xr) in x.chunks_exact(k).enumerate() {
            let mut acc = [0.0f32; 8];
            for (a, b) in wr.chunks_exact(8).zip(xr.chunks_exact(8)) {
                for l in 0..8 {
                    acc[l] += a[l] * b[l];
                }
            }
            y[i * n + j] = acc.iter().sum();
        }
    }
    std::hint::black_box(y);
    println!(
        "plain single-thread dot loop {m}x{n}x{k}: {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
}

#[test]
#[ignore = "timing on the Hugging Face fixture checkpoints"]
fn fixture_generation_speed() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let model = MarianModel::load(Cpu, &dir).unwrap();
        let gen = GenerationConfig::from_model_dir(&dir, model.config()).unwrap();
        let e: serde_json::Value = common_model::read_expected(&dir);
        let srcs: Vec<Vec<u32>> = e["sentences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                s["source_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect()
            })
            .collect();
        for beams in [1usize, 4] {
            let mut g = gen.clone();
            g.num_beams = beams;
            let reps = 20;
            let t = Instant::now();
            for _ in 0..reps {
                for s in &srcs {
                    std::hint::black_box(model.generate(std::slice::from_ref(s), &g).unwrap());
                }
            }
            let alone = t.elapsed().as_secs_f64() * 1e3 / (reps * srcs.len()) as f64;
            let t = Instant::now();
            for _ in 0..reps {
                std::hint::black_box(model.generate(&srcs, &g).unwrap());
            }
            let batched = t.elapsed().as_secs_f64() * 1e3 / (reps * srcs.len()) as f64;
            println!(
                "{}: beams {beams}: {alone:.2} ms per sentence alone, {batched:.2} ms per sentence in a batch of {}",
                dir.file_name().unwrap().to_string_lossy(),
                srcs.len()
            );
        }
    }
}
