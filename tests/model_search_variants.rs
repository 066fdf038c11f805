//! Beam and greedy search against Hugging Face `generate` (transformers
//! 5.24) with settings the parity fixtures do not cover: early_stopping
//! true and "never", length penalties 0.6 / 2.0 / 0.0 / -0.5, max_new_tokens,
//! min_length, min_new_tokens and full n-best lists, on the six fixture
//! sentences of each fixture checkpoint as one batch. The expected results
//! (tests/model_search_variants.json) come from tests/model_search_variants.py.
//! Run on the reference backend and on the fast CPU backend.

mod common_model;

use std::path::Path;

use common_model::assert_close;
use serde_json::Value;
use transformer_kernels::cpu::Cpu;
use transformer_kernels::fast_cpu::FastCpu;
use transformer_kernels::model::{Backend, EarlyStopping, GenerationConfig, MarianModel};

/// Beam scores: length-normalised sums of up to 14 log-probs, each within
/// the fixtures' state tolerance; relative for the large scores of length_penalty < 0.
const HF_SCORE_ABS: f32 = 2e-5;
const HF_SCORE_REL: f32 = 1e-5;

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn apply(gen: &mut GenerationConfig, s: &Value) {
    let s = s.as_object().unwrap();
    for (k, v) in s {
        match k.as_str() {
            "num_beams" => gen.num_beams = v.as_u64().unwrap() as usize,
            "num_return_sequences" => gen.num_return_sequences = v.as_u64().unwrap() as usize,
            "length_penalty" => gen.length_penalty = v.as_f64().unwrap() as f32,
            "max_length" => gen.max_length = v.as_u64().unwrap() as usize,
            "max_new_tokens" => gen.max_new_tokens = Some(v.as_u64().unwrap() as usize),
            "min_length" => gen.min_length = v.as_u64().unwrap() as usize,
            "min_new_tokens" => gen.min_new_tokens = Some(v.as_u64().unwrap() as usize),
            "early_stopping" => {
                gen.early_stopping = match v {
                    Value::Bool(true) => EarlyStopping::WhenFull,
                    Value::Bool(false) => EarlyStopping::Heuristic,
                    _ => EarlyStopping::Never,
                }
            }
            other => panic!("setting {other} not mapped"),
        }
    }
}

#[test]
fn search_settings_match_hugging_face() {
    settings_match(|| Cpu);
}

#[test]
fn fast_cpu_search_settings_match_hugging_face() {
    settings_match(|| FastCpu::new(0).unwrap());
}

fn settings_match<B: Backend>(backend: impl Fn() -> B) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let all: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/model_search_variants.json")).unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    for (name, runs) in all.as_object().unwrap() {
        let dir = root.join("tests/fixtures/models").join(name);
        let model = MarianModel::load(backend(), &dir).unwrap();
        let base = GenerationConfig::from_model_dir(&dir, model.config()).unwrap();
        let e: Value = common_model::read_expected(&dir);
        let srcs: Vec<Vec<u32>> = e["sentences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| u32s(&s["source_ids"]))
            .collect();
        for run in runs.as_array().unwrap() {
            let mut gen = base.clone();
            apply(&mut gen, &run["settings"]);
            let out = model.generate(&srcs, &gen).unwrap();
            let n = gen.num_return_sequences;
            let seqs = run["sequences"].as_array().unwrap();
            assert_eq!(seqs.len(), srcs.len() * n);
            for (i, nbest) in out.iter().enumerate() {
                assert_eq!(nbest.len(), n);
                for (j, h) in nbest.iter().enumerate() {
                    let what = format!(
                        "{} {name} {} sentence {i} hypothesis {j}",
                        model.backend().name(),
                        run["settings"]
                    );
                    let mut want = u32s(&seqs[i * n + j])[1..].to_vec();
                    while want.last() == Some(&gen.pad_token_id) {
                        want.pop();
                    }
                    assert_eq!(h.ids, want, "{what}");
                    if let Some(scores) = run["scores"].as_array() {
                        let s = scores[i * n + j].as_f64().unwrap() as f32;
                        assert_close(&what, &[h.score], &[s], HF_SCORE_ABS, HF_SCORE_REL);
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 100, "only {checked} hypotheses checked");
}
