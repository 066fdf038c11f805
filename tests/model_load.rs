//! Loading a checkpoint: config.json defaults, generation config merging,
//! tensor checks (one error naming every bad tensor), corrupt files, and the
//! argument errors of `generate`.

mod common_model;

use std::path::Path;

use common_model::{write_model, Tiny, EOS};
use safetensors::Dtype;
use transformer_kernels::cpu::Cpu;
use transformer_kernels::model::{EarlyStopping, GenerationConfig, MarianModel, ModelConfig};
use transformer_kernels::Error;

fn checkpoint_msg(
    r: transformer_kernels::Result<MarianModel<Cpu>>,
) -> (std::path::PathBuf, String) {
    match r {
        Err(Error::Checkpoint { path, msg }) => (path, msg),
        Err(other) => panic!("expected Error::Checkpoint, got {other}"),
        Ok(_) => panic!("expected Error::Checkpoint, got a model"),
    }
}

#[test]
fn config_absent_fields_take_marian_config_defaults() {
    let cfg = ModelConfig::from_json_str(
        r#"{"d_model": 16, "encoder_attention_heads": 2, "decoder_attention_heads": 2}"#,
        Path::new("config.json"),
    )
    .unwrap();
    // transformers MarianConfig defaults.
    assert_eq!(cfg.encoder_layers, 12);
    assert_eq!(cfg.decoder_layers, 12);
    assert_eq!(cfg.encoder_ffn_dim, 4096);
    assert_eq!(cfg.activation_function, "gelu");
    assert_eq!(cfg.vocab_size, 58101);
    assert_eq!(cfg.decoder_vocab_size, 58101);
    assert_eq!(cfg.pad_token_id, 58100);
    assert_eq!(cfg.eos_token_id, vec![0]);
    assert_eq!(cfg.decoder_start_token_id, 58100);
    assert_eq!(cfg.forced_eos_token_id, vec![0]);
    assert!(!cfg.scale_embedding);
    assert_eq!(cfg.max_position_embeddings, 1024);
    assert!(!cfg.normalize_before);
    assert!(cfg.share_encoder_decoder_embeddings && cfg.tie_word_embeddings);
}

#[test]
fn config_errors_name_the_file_and_the_problem() {
    let p = Path::new("/ckpt/config.json");
    match ModelConfig::from_json_str(
        r#"{"d_model": 10, "encoder_attention_heads": 4, "activation_function": "mish"}"#,
        p,
    ) {
        Err(Error::Checkpoint { path, msg }) => {
            assert_eq!(path, p);
            assert!(
                msg.contains("not divisible") && msg.contains("mish"),
                "{msg}"
            );
        }
        other => panic!("expected Checkpoint error, got {other:?}"),
    }
    assert!(matches!(
        ModelConfig::from_json_str("{not json", p),
        Err(Error::Json { .. })
    ));
    assert!(matches!(
        ModelConfig::from_json_str(r#"{"normalize_before": true}"#, p),
        Err(Error::Checkpoint { .. })
    ));
    assert!(matches!(
        ModelConfig::from_file(Path::new("/nonexistent/config.json")),
        Err(Error::Io { .. })
    ));
}

#[test]
fn generation_config_json_wins_over_config_json_and_defaults_fill_the_rest() {
    let tiny = Tiny::default();
    let dir = tempfile::tempdir().unwrap();
    tiny.write(dir.path(), 1);
    let cfg = tiny.model_config();
    // Without generation_config.json: config.json's fields (here none of the
    // search settings) over Hugging Face's global defaults.
    let g = GenerationConfig::from_model_dir(dir.path(), &cfg).unwrap();
    assert_eq!(
        (
            g.num_beams,
            g.max_length,
            g.length_penalty,
            g.num_return_sequences
        ),
        (1, 20, 1.0, 1)
    );
    assert_eq!(g.early_stopping, EarlyStopping::Heuristic);
    assert_eq!(g.forced_eos_token_id, vec![EOS]);
    assert_eq!(g.decoder_start_token_id, tiny.pad());
    std::fs::write(
        dir.path().join("generation_config.json"),
        r#"{"bad_words_ids": [[39]], "decoder_start_token_id": 39, "eos_token_id": 0, "max_length": 512,
            "num_beams": 4, "pad_token_id": 39, "early_stopping": "never", "length_penalty": 0.6, "max_new_tokens": 7}"#,
    )
    .unwrap();
    let g = GenerationConfig::from_model_dir(dir.path(), &cfg).unwrap();
    assert_eq!((g.num_beams, g.max_length, g.length_penalty), (4, 512, 0.6));
    assert_eq!(g.early_stopping, EarlyStopping::Never);
    assert_eq!(g.bad_words_ids, vec![vec![39]]);
    // generation_config.json replaces config.json: its absent forced_eos is unset.
    assert!(g.forced_eos_token_id.is_empty());
    assert_eq!(
        g.effective_max_length(),
        8,
        "max_new_tokens + the start token"
    );
    std::fs::write(
        dir.path().join("generation_config.json"),
        r#"{"early_stopping": "sometimes"}"#,
    )
    .unwrap();
    assert!(matches!(
        GenerationConfig::from_model_dir(dir.path(), &cfg),
        Err(Error::Checkpoint { .. })
    ));
}

#[test]
fn missing_unexpected_and_misshaped_tensors_are_listed_in_one_error() {
    let tiny = Tiny::default();
    let mut t = tiny.random_tensors(3);
    t.remove("model.encoder.layers.1.fc1.weight");
    t.remove("model.decoder.layers.0.encoder_attn.k_proj.bias");
    t.insert(
        "model.decoder.layers.7.fc1.weight".into(),
        (vec![2, 2], vec![0.0; 4]),
    );
    t.insert(
        "model.encoder.layers.0.self_attn_layer_norm.weight".into(),
        (vec![13], vec![1.0; 13]),
    );
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), &tiny.config_json(), &t, Dtype::F32);
    let (path, msg) = checkpoint_msg(MarianModel::load(Cpu, dir.path()));
    assert_eq!(path, dir.path().join("model.safetensors"));
    for needle in [
        "model.encoder.layers.1.fc1.weight [20, 12]",
        "model.decoder.layers.0.encoder_attn.k_proj.bias [12]",
        "model.decoder.layers.7.fc1.weight [2, 2]",
        "model.encoder.layers.0.self_attn_layer_norm.weight: expected [12], got [13]",
    ] {
        assert!(msg.contains(needle), "message lacks {needle:?}: {msg}");
    }
}

#[test]
fn config_that_does_not_match_the_tensors_is_reported() {
    let tiny = Tiny::default();
    let dir = tempfile::tempdir().unwrap();
    tiny.write(dir.path(), 4);
    let other = Tiny {
        ffn: 24,
        encoder_layers: 3,
        ..Tiny::default()
    };
    std::fs::write(dir.path().join("config.json"), other.config_json()).unwrap();
    let (_, msg) = checkpoint_msg(MarianModel::load(Cpu, dir.path()));
    assert!(
        msg.contains("missing")
            && msg.contains("model.encoder.layers.2.")
            && msg.contains("mis-shaped"),
        "{msg}"
    );
}

#[test]
fn truncated_or_corrupt_safetensors_give_a_checkpoint_error_with_the_path() {
    let tiny = Tiny::default();
    let dir = tempfile::tempdir().unwrap();
    tiny.write(dir.path(), 5);
    let file = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    for (what, content) in [
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("header only", bytes[..12].to_vec()),
        ("empty", Vec::new()),
        ("garbage", vec![0xffu8; 64]),
    ] {
        std::fs::write(&file, &content).unwrap();
        let (path, msg) = checkpoint_msg(MarianModel::load(Cpu, dir.path()));
        assert_eq!(path, file, "{what}");
        assert!(!msg.is_empty(), "{what}");
    }
    std::fs::remove_file(&file).unwrap();
    assert!(matches!(
        MarianModel::load(Cpu, dir.path()),
        Err(Error::Io { .. })
    ));
}

#[test]
fn tied_copies_and_position_tables_are_accepted() {
    let tiny = Tiny::default();
    let mut t = tiny.random_tensors(6);
    let shared = t["model.shared.weight"].clone();
    let plain = tempfile::tempdir().unwrap();
    write_model(plain.path(), &tiny.config_json(), &t, Dtype::F32);
    for name in [
        "model.encoder.embed_tokens.weight",
        "model.decoder.embed_tokens.weight",
        "lm_head.weight",
    ] {
        t.insert(name.into(), shared.clone());
    }
    let table = transformer_kernels::cpu::embedding::sinusoidal_positions(0, 64, tiny.d_model);
    t.insert(
        "model.encoder.embed_positions.weight".into(),
        (vec![64, tiny.d_model], table.clone()),
    );
    t.insert(
        "model.decoder.embed_positions.weight".into(),
        (vec![64, tiny.d_model], table),
    );
    let full = tempfile::tempdir().unwrap();
    write_model(full.path(), &tiny.config_json(), &t, Dtype::F32);
    let src = vec![vec![3, 4, EOS]];
    let dec = vec![vec![tiny.pad(), 7]];
    let a = MarianModel::load(Cpu, plain.path())
        .unwrap()
        .decoder_logits(&src, &dec)
        .unwrap();
    let b = MarianModel::load(Cpu, full.path())
        .unwrap()
        .decoder_logits(&src, &dec)
        .unwrap();
    assert_eq!(a, b);
}

#[test]
fn generate_argument_errors_and_empty_batch() {
    let tiny = Tiny::default();
    let dir = tempfile::tempdir().unwrap();
    tiny.write(dir.path(), 7);
    let model = MarianModel::load(Cpu, dir.path()).unwrap();
    let gen = GenerationConfig::from_model_dir(dir.path(), model.config()).unwrap();
    assert!(model.generate(&[], &gen).unwrap().is_empty());
    let invalid =
        |r: transformer_kernels::Result<_>| matches!(r, Err(Error::InvalidArgument { .. }));
    assert!(invalid(model.generate(&[vec![3, EOS], vec![]], &gen)));
    assert!(
        invalid(model.generate(&[vec![3, 40, EOS]], &gen)),
        "id past the vocabulary"
    );
    let mut bad = gen.clone();
    bad.num_beams = 0;
    assert!(invalid(model.generate(&[vec![3, EOS]], &bad)));
    let mut bad = gen.clone();
    bad.num_return_sequences = 2;
    assert!(
        invalid(model.generate(&[vec![3, EOS]], &bad)),
        "2 sequences from greedy"
    );
    let mut bad = gen.clone();
    bad.max_length = 1;
    assert!(invalid(model.generate(&[vec![3, EOS]], &bad)));
    let mut bad = gen.clone();
    bad.num_beams = 30; // more beams than the vocabulary has tokens still works
    bad.max_length = 5;
    assert_eq!(model.generate(&[vec![3, EOS]], &bad).unwrap()[0].len(), 1);
    let long = vec![3u32; 65]; // max_position_embeddings is 64
    assert!(invalid(model.generate(std::slice::from_ref(&long), &gen)));
    assert!(matches!(
        model.encode(&[long]),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn unshared_and_untied_embeddings_load_from_their_own_tensors() {
    let tiny = Tiny::default();
    let shared_t = tiny.random_tensors(8);
    let shared_dir = tempfile::tempdir().unwrap();
    write_model(
        shared_dir.path(),
        &tiny.config_json(),
        &shared_t,
        Dtype::F32,
    );
    // The same weights stored as separate encoder / decoder embeddings and an
    // explicit lm_head must give the same logits.
    let mut t = shared_t.clone();
    let e = t.remove("model.shared.weight").unwrap();
    for name in [
        "model.encoder.embed_tokens.weight",
        "model.decoder.embed_tokens.weight",
        "lm_head.weight",
    ] {
        t.insert(name.into(), e.clone());
    }
    let mut cfg: serde_json::Value = serde_json::from_str(&tiny.config_json()).unwrap();
    cfg["share_encoder_decoder_embeddings"] = false.into();
    cfg["tie_word_embeddings"] = false.into();
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), &cfg.to_string(), &t, Dtype::F32);
    let src = vec![vec![3, 4, 5, EOS]];
    let dec = vec![vec![tiny.pad(), 7, 8]];
    let a = MarianModel::load(Cpu, shared_dir.path())
        .unwrap()
        .decoder_logits(&src, &dec)
        .unwrap();
    let b = MarianModel::load(Cpu, dir.path())
        .unwrap()
        .decoder_logits(&src, &dec)
        .unwrap();
    assert_eq!(a, b);
    // Untied: a different lm_head changes the logits.
    t.get_mut("lm_head.weight")
        .unwrap()
        .1
        .iter_mut()
        .for_each(|v| *v = -*v);
    write_model(dir.path(), &cfg.to_string(), &t, Dtype::F32);
    let c = MarianModel::load(Cpu, dir.path())
        .unwrap()
        .decoder_logits(&src, &dec)
        .unwrap();
    assert_ne!(a, c);
    // Without lm_head an untied checkpoint is incomplete.
    t.remove("lm_head.weight");
    write_model(dir.path(), &cfg.to_string(), &t, Dtype::F32);
    let (_, msg) = checkpoint_msg(MarianModel::load(Cpu, dir.path()));
    assert!(msg.contains("lm_head.weight [40, 12]"), "{msg}");
}
