//! Parity with Hugging Face `MarianMTModel` + `generate` (transformers 5.24)
//! on the committed fixtures (tests/fixtures/models/*, made by
//! scripts/make_fixtures.py; schema in tests/fixtures/README.md): encoder
//! states and teacher-forced logits within a named f32 tolerance, greedy,
//! beam-4 and beam-4 2-best token ids exactly, alone and batched; on the
//! reference backend (`cpu::Cpu`) and on the fast one (`fast_cpu::FastCpu`),
//! with the same tolerances.
//!
//! `TK_FIXTURES_DIR` overrides the fixture root (default
//! `$CARGO_MANIFEST_DIR/tests/fixtures`). The fixtures are committed, so a
//! missing fixture directory fails the tests rather than skipping them.

mod common_model;

use std::path::{Path, PathBuf};

use common_model::assert_close;
use serde_json::Value;
use transformer_kernels::cpu::Cpu;
use transformer_kernels::fast_cpu::FastCpu;
use transformer_kernels::model::{Backend, GenerationConfig, Hypothesis, MarianModel};

/// Two f32 implementations of the same network (different summation orders
/// through 2+2 layers; measured max 6e-6) plus the fixtures' 6-decimal rounding (5e-7).
const HF_STATE_ABS: f32 = 2e-5;
const HF_STATE_REL: f32 = 2e-5;
/// Beam scores: length-normalised sums of ~20 log-probs (measured max 3e-6).
const HF_SCORE_ABS: f32 = 2e-5;

fn fixture_root() -> PathBuf {
    std::env::var_os("TK_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"))
}

/// Every fixture model directory.
fn model_dirs() -> Option<Vec<PathBuf>> {
    let root = fixture_root().join("models");
    let rd = std::fs::read_dir(&root).unwrap_or_else(|e| {
        panic!(
            "no Hugging Face fixtures at {} (made by scripts/make_fixtures.py): {e}",
            root.display()
        )
    });
    let mut dirs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("expected.json.gz").is_file())
        .collect();
    dirs.sort();
    assert!(
        !dirs.is_empty(),
        "{} holds no fixture model",
        root.display()
    );
    Some(dirs)
}

fn expected(dir: &Path) -> Value {
    common_model::read_expected(dir)
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<f32>) {
        match v {
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            x => out.push(x.as_f64().unwrap() as f32),
        }
    }
    walk(v, &mut out);
    out
}

/// HF output row -> our Hypothesis ids: drop decoder_start, strip trailing pad.
fn generated(row: &[u32], pad: u32) -> Vec<u32> {
    let mut v = row[1..].to_vec();
    while v.last() == Some(&pad) {
        v.pop();
    }
    v
}

fn load<B: Backend>(backend: B, dir: &Path) -> (MarianModel<B>, GenerationConfig, Value) {
    let model =
        MarianModel::load(backend, dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let gen = GenerationConfig::from_model_dir(dir, model.config()).unwrap();
    (model, gen, expected(dir))
}

fn check_generation_settings(name: &str, gen: &GenerationConfig, e: &Value) {
    let g = &e["generation"];
    assert_eq!(
        gen.max_length as u64,
        g["max_length"].as_u64().unwrap(),
        "{name}: max_length"
    );
    assert_eq!(
        gen.num_beams as u64,
        g["num_beams"].as_u64().unwrap(),
        "{name}: num_beams"
    );
    assert_eq!(
        gen.length_penalty as f64,
        g["length_penalty"].as_f64().unwrap(),
        "{name}: length_penalty"
    );
    assert_eq!(
        gen.decoder_start_token_id as u64,
        g["decoder_start_token_id"].as_u64().unwrap(),
        "{name}: decoder_start"
    );
    assert_eq!(
        gen.forced_eos_token_id,
        vec![g["forced_eos_token_id"].as_u64().unwrap() as u32],
        "{name}: forced_eos"
    );
}

/// The fast CPU backend with the pool of this machine (2 threads in CI):
/// the same fixtures, tokens and tolerances as the reference.
fn fast() -> FastCpu {
    FastCpu::new(0).unwrap()
}

#[test]
fn encoder_states_and_logits_match_hugging_face() {
    states_and_logits("reference", || Cpu);
}

#[test]
fn fast_cpu_encoder_states_and_logits_match_hugging_face() {
    states_and_logits("fast cpu", fast);
}

fn states_and_logits<B: Backend>(label: &str, backend: impl Fn() -> B) {
    let Some(dirs) = model_dirs() else { return };
    for dir in dirs {
        let name = format!("{label} {}", dir.file_name().unwrap().to_string_lossy());
        let (model, _, e) = load(backend(), &dir);
        let sentences = e["sentences"].as_array().unwrap();
        for (i, s) in sentences.iter().enumerate() {
            let src = ids(&s["source_ids"]);
            let h = model
                .encoder_hidden_states(std::slice::from_ref(&src))
                .unwrap();
            assert_close(
                &format!("{name} sentence {i}: encoder_last_hidden_state"),
                &h[0],
                &floats(&s["encoder_last_hidden_state"]),
                HF_STATE_ABS,
                HF_STATE_REL,
            );
            if let Some(dec) = s.get("decoder_input_ids") {
                let l = model
                    .decoder_logits(std::slice::from_ref(&src), &[ids(dec)])
                    .unwrap();
                assert_close(
                    &format!("{name} sentence {i}: logits"),
                    &l[0],
                    &floats(&s["logits"]),
                    HF_STATE_ABS,
                    HF_STATE_REL,
                );
            }
        }
        // The same as one right-padded batch.
        let b = &e["batch"];
        let srcs: Vec<Vec<u32>> = sentences.iter().map(|s| ids(&s["source_ids"])).collect();
        let h = model.encoder_hidden_states(&srcs).unwrap();
        for (i, exp) in b["encoder_last_hidden_state"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            assert_close(
                &format!("{name} batch row {i}: encoder_last_hidden_state"),
                &h[i],
                &floats(exp),
                HF_STATE_ABS,
                HF_STATE_REL,
            );
        }
        let tf_src: Vec<Vec<u32>> = srcs[..2].to_vec();
        let pad = e["pad_token_id"].as_u64().unwrap() as u32;
        let mask = b["decoder_attention_mask"].as_array().unwrap();
        let tf_dec: Vec<Vec<u32>> = b["decoder_input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .zip(mask)
            .map(|(d, m)| {
                ids(d)
                    .into_iter()
                    .zip(ids(m))
                    .filter(|&(_, m)| m == 1)
                    .map(|(t, _)| t)
                    .collect()
            })
            .collect();
        assert!(
            tf_dec.iter().all(|d| d[0] == pad),
            "{name}: teacher forcing starts from decoder_start = pad"
        );
        let l = model.decoder_logits(&tf_src, &tf_dec).unwrap();
        for (i, exp) in b["logits"].as_array().unwrap().iter().enumerate() {
            assert_close(
                &format!("{name} batch row {i}: logits"),
                &l[i],
                &floats(exp),
                HF_STATE_ABS,
                HF_STATE_REL,
            );
        }
    }
}

fn assert_nbest(what: &str, got: &[Hypothesis], exp_ids: &[Vec<u32>], exp_scores: Option<&[f32]>) {
    assert_eq!(got.len(), exp_ids.len(), "{what}: n-best size");
    for (j, (h, e)) in got.iter().zip(exp_ids).enumerate() {
        assert_eq!(h.ids, *e, "{what}: hypothesis {j} ids");
        if let Some(s) = exp_scores {
            assert_close(
                &format!("{what}: hypothesis {j} score"),
                &[h.score],
                &[s[j]],
                HF_SCORE_ABS,
                0.0,
            );
        }
    }
}

#[test]
fn greedy_and_beam_ids_match_hugging_face_alone_and_batched() {
    ids_alone_and_batched("reference", || Cpu);
}

#[test]
fn fast_cpu_greedy_and_beam_ids_match_hugging_face_alone_and_batched() {
    ids_alone_and_batched("fast cpu", fast);
}

fn ids_alone_and_batched<B: Backend>(label: &str, backend: impl Fn() -> B) {
    let Some(dirs) = model_dirs() else { return };
    for dir in dirs {
        let name = format!("{label} {}", dir.file_name().unwrap().to_string_lossy());
        let (model, gen, e) = load(backend(), &dir);
        check_generation_settings(&name, &gen, &e);
        let pad = e["pad_token_id"].as_u64().unwrap() as u32;
        let sentences = e["sentences"].as_array().unwrap();
        let srcs: Vec<Vec<u32>> = sentences.iter().map(|s| ids(&s["source_ids"])).collect();
        let mut greedy = gen.clone();
        greedy.num_beams = 1;
        let mut beam4 = gen.clone();
        beam4.num_beams = 4;
        let mut nbest2 = beam4.clone();
        nbest2.num_return_sequences = 2;
        for (i, s) in sentences.iter().enumerate() {
            let one = std::slice::from_ref(&srcs[i]);
            let what = format!("{name} sentence {i} alone");
            let g = model.generate(one, &greedy).unwrap();
            assert_nbest(
                &format!("{what} greedy"),
                &g[0],
                &[generated(&ids(&s["greedy_ids"]), pad)],
                None,
            );
            let b = model.generate(one, &beam4).unwrap();
            assert_nbest(
                &format!("{what} beam4"),
                &b[0],
                &[generated(&ids(&s["beam4_ids"]), pad)],
                None,
            );
            let n = model.generate(one, &nbest2).unwrap();
            let exp: Vec<Vec<u32>> = s["beam4_nbest2"]["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| generated(&ids(r), pad))
                .collect();
            assert_nbest(
                &format!("{what} beam4 2-best"),
                &n[0],
                &exp,
                Some(&floats(&s["beam4_nbest2"]["scores"])),
            );
        }
        let b = &e["batch"];
        let rows = |key: &str| -> Vec<Vec<u32>> {
            b[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| generated(&ids(r), pad))
                .collect()
        };
        let g = model.generate(&srcs, &greedy).unwrap();
        let bm = model.generate(&srcs, &beam4).unwrap();
        let nb = model.generate(&srcs, &nbest2).unwrap();
        let (eg, eb, en) = (
            rows("greedy_ids"),
            rows("beam4_ids"),
            b["beam4_nbest2"]["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| generated(&ids(r), pad))
                .collect::<Vec<_>>(),
        );
        let escores = floats(&b["beam4_nbest2"]["scores"]);
        for i in 0..srcs.len() {
            let what = format!("{name} batch row {i}");
            assert_nbest(&format!("{what} greedy"), &g[i], &eg[i..=i], None);
            assert_nbest(&format!("{what} beam4"), &bm[i], &eb[i..=i], None);
            assert_nbest(
                &format!("{what} beam4 2-best"),
                &nb[i],
                &en[2 * i..2 * i + 2],
                Some(&escores[2 * i..2 * i + 2]),
            );
        }
    }
}
