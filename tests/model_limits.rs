//! Hostile or broken checkpoints and settings fail fast with an error that
//! names the file and the value: absurd config sizes, NaN / inf weights, NaN
//! scores during search, huge beams, decoding past max_position_embeddings,
//! a generation_config.json that is a directory.

mod common_model;

use std::path::Path;

use common_model::{write_model, Tiny, EOS};
use safetensors::Dtype;
use transformer_kernels::cpu::Cpu;
use transformer_kernels::model::generation::MAX_NUM_BEAMS;
use transformer_kernels::model::weights::{check_tensors, read_safetensors};
use transformer_kernels::model::{GenerationConfig, MarianModel, ModelConfig};
use transformer_kernels::Activation;
use transformer_kernels::Error;

/// `Tiny`'s config.json with `field` set to `value` (raw JSON).
fn tiny_config_with(field: &str, value: serde_json::Value) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&Tiny::default().config_json()).unwrap();
    v[field] = value;
    v.to_string()
}

fn config_err(text: &str) -> (std::path::PathBuf, String) {
    match ModelConfig::from_json_str(text, Path::new("/ckpt/config.json")) {
        Err(Error::Checkpoint { path, msg }) => (path, msg),
        Err(other) => panic!("expected Error::Checkpoint, got {other}"),
        Ok(cfg) => panic!("expected Error::Checkpoint, got {cfg:?}"),
    }
}

#[test]
fn absurd_config_sizes_are_rejected_naming_config_json() {
    let two_63 = serde_json::json!(9_223_372_036_854_775_808u64);
    let cases = [
        ("encoder_layers", serde_json::json!(1_000_000_000u64)),
        ("decoder_layers", two_63.clone()),
        ("encoder_layers", two_63.clone()),
        ("d_model", serde_json::json!(1u64 << 40)),
        ("encoder_attention_heads", two_63.clone()),
        ("decoder_ffn_dim", serde_json::json!(1u64 << 40)),
        ("encoder_ffn_dim", two_63.clone()),
        ("vocab_size", two_63.clone()),
        ("max_position_embeddings", two_63),
    ];
    for (field, value) in cases {
        let (path, msg) = config_err(&tiny_config_with(field, value.clone()));
        assert_eq!(path, Path::new("/ckpt/config.json"), "{field} = {value}");
        assert!(
            msg.contains(field) && msg.contains("out of range"),
            "{field} = {value}: {msg}"
        );
    }
}

#[test]
fn load_with_a_billion_layers_fails_fast_naming_config_json() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = Tiny::default();
    tiny.write(dir.path(), 1);
    std::fs::write(
        dir.path().join("config.json"),
        tiny_config_with("encoder_layers", serde_json::json!(1_000_000_000u64)),
    )
    .unwrap();
    let t0 = std::time::Instant::now();
    match MarianModel::load(Cpu, dir.path()) {
        Err(Error::Checkpoint { path, msg }) => {
            assert!(path.ends_with("config.json"), "{}", path.display());
            assert!(msg.contains("encoder_layers"), "{msg}");
        }
        Err(other) => panic!("expected Error::Checkpoint, got {other}"),
        Ok(_) => panic!("a billion layers loaded"),
    }
    // Bounded work: nothing proportional to the layer count was built.
    assert!(t0.elapsed().as_secs() < 10, "took {:?}", t0.elapsed());
}

#[test]
fn hand_built_config_with_more_layers_than_the_file_fails_before_listing() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = Tiny::default();
    tiny.write(dir.path(), 2);
    let path = dir.path().join("model.safetensors");
    let tensors = read_safetensors(&path).unwrap();
    // Bypasses from_json_str's bounds: check_tensors itself must not build
    // ~30 names per configured layer.
    let mut cfg = tiny.model_config();
    cfg.decoder_layers = 200_000;
    match check_tensors(&path, &cfg, &tensors) {
        Err(Error::Checkpoint { path: p, msg }) => {
            assert_eq!(p, path);
            assert!(
                msg.contains("decoder_layers = 200000")
                    && msg.contains("holds 2 decoder layer")
                    && msg.contains("config.json"),
                "{msg}"
            );
        }
        other => panic!("expected Error::Checkpoint, got {other:?}"),
    }
}

#[test]
fn zero_max_position_embeddings_fails_at_config_load() {
    let (path, msg) = config_err(&tiny_config_with(
        "max_position_embeddings",
        serde_json::json!(0),
    ));
    assert_eq!(path, Path::new("/ckpt/config.json"));
    assert!(msg.contains("max_position_embeddings must be > 0"), "{msg}");
}

#[test]
fn unknown_activation_error_lists_every_accepted_name() {
    let (_, msg) = config_err(&tiny_config_with(
        "activation_function",
        serde_json::json!("mish"),
    ));
    assert!(msg.contains("mish"), "{msg}");
    for name in ["gelu_pytorch_tanh", "gelu_fast", "gelu_new", "silu"] {
        assert!(msg.contains(name), "{name} missing from {msg}");
    }
    for name in Activation::NAMES {
        Activation::from_name(name)
            .unwrap_or_else(|e| panic!("{name} is listed but rejected: {e}"));
        assert!(msg.contains(name), "{name} missing from {msg}");
    }
}

#[test]
fn nan_or_inf_weights_are_rejected_naming_the_tensor_and_file() {
    let tiny = Tiny::default();
    let cases = [
        (
            "model.encoder.layers.1.self_attn.q_proj.weight",
            f32::NAN,
            Dtype::F32,
        ),
        ("model.decoder.layers.0.fc2.bias", f32::INFINITY, Dtype::F32),
        ("final_logits_bias", f32::NEG_INFINITY, Dtype::BF16),
        // 1e6 is finite in f32 but overflows f16 to inf.
        ("model.shared.weight", 1.0e6, Dtype::F16),
    ];
    for (name, bad, dtype) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut t = tiny.random_tensors(4);
        t.get_mut(name).unwrap().1[5] = bad;
        write_model(dir.path(), &tiny.config_json(), &t, dtype);
        match MarianModel::load(Cpu, dir.path()) {
            Err(Error::Checkpoint { path, msg }) => {
                assert!(path.ends_with("model.safetensors"), "{}", path.display());
                assert!(
                    msg.contains(name)
                        && msg.contains("NaN or infinite")
                        && msg.contains("index 5"),
                    "{name}: {msg}"
                );
            }
            Err(other) => panic!("{name}: expected Error::Checkpoint, got {other}"),
            Ok(_) => panic!("{name} = {bad} loaded"),
        }
    }
}

#[test]
fn nan_scores_fail_the_search_instead_of_returning_eos() {
    // Finite weights whose activations overflow: 3e38 x sqrt(d_model) is inf
    // in f32, LayerNorm of inf is NaN, so every logit is NaN. A NaN-blind
    // argmax would pick token 0 (EOS) and return an empty translation.
    let tiny = Tiny::default();
    let dir = tempfile::tempdir().unwrap();
    let mut t = tiny.random_tensors(5);
    for v in &mut t.get_mut("model.shared.weight").unwrap().1 {
        *v = 3.0e38;
    }
    write_model(dir.path(), &tiny.config_json(), &t, Dtype::F32);
    let model = MarianModel::load(Cpu, dir.path()).unwrap();
    for beams in [1, 3] {
        let mut gen = GenerationConfig::defaults_for(model.config());
        gen.num_beams = beams;
        match model.generate(&[vec![5, 6, EOS]], &gen) {
            Err(Error::InvalidArgument { op, msg }) => {
                assert_eq!(op, "generate");
                assert!(msg.contains("NaN"), "beams {beams}: {msg}");
            }
            other => panic!("beams {beams}: expected a NaN error, got {other:?}"),
        }
    }
}

#[test]
fn beam_width_is_capped_and_return_sequences_bounded_by_it() {
    let cfg = Tiny::default().model_config();
    let vocab = cfg.target_vocab_size();
    let base = GenerationConfig::defaults_for(&cfg);
    let err = |g: &GenerationConfig, big_vocab: usize| match g.validate(big_vocab) {
        Err(Error::InvalidArgument { msg, .. }) => msg,
        other => panic!("expected InvalidArgument, got {other:?}"),
    };
    let mut g = base.clone();
    g.num_beams = 100_000;
    assert!(err(&g, 1 << 20).contains("1024"));
    g.num_beams = MAX_NUM_BEAMS + 1;
    assert!(err(&g, 1 << 20).contains("num_beams"));
    g.num_beams = MAX_NUM_BEAMS;
    g.validate(1 << 20).unwrap();
    // More beams than tokens.
    g.num_beams = vocab + 1;
    assert!(err(&g, vocab).contains("vocabulary size"));
    // Hugging Face: num_return_sequences has to be <= num_beams.
    let mut g = base.clone();
    g.num_beams = 4;
    g.num_return_sequences = 5;
    assert!(err(&g, vocab).contains("num_return_sequences 5"));
    g.num_return_sequences = 4;
    g.validate(vocab).unwrap();
}

#[test]
fn decoding_past_max_position_embeddings_is_an_error() {
    let tiny = Tiny::default(); // max_position_embeddings 64
    let dir = tempfile::tempdir().unwrap();
    tiny.write(dir.path(), 6);
    let model = MarianModel::load(Cpu, dir.path()).unwrap();
    let mut gen = GenerationConfig::defaults_for(model.config());
    gen.max_length = 66; // decoder positions 0..=64: one too many
    gen.min_length = 66;
    match model.generate(&[vec![5, EOS]], &gen) {
        Err(Error::InvalidArgument { msg, .. }) => {
            assert!(msg.contains("max_position_embeddings is 64"), "{msg}")
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    gen.max_length = 65; // positions 0..=63: the whole table, allowed
    gen.min_length = 0;
    model.generate(&[vec![5, EOS]], &gen).unwrap();
    // decode_step itself refuses the 65th position.
    let enc = model.encode(&[vec![5, EOS]]).unwrap();
    let mut state = model.start_decoder(&enc, &[0], 4).unwrap();
    model
        .decode_step(&mut state, &[tiny.pad(); 64], 64)
        .unwrap();
    match model.decode_step(&mut state, &[tiny.pad()], 1) {
        Err(Error::InvalidArgument { op, msg }) => {
            assert_eq!(op, "decode_step");
            assert!(msg.contains("max_position_embeddings 64"), "{msg}");
        }
        other => panic!("expected InvalidArgument, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn generation_config_json_that_is_a_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = Tiny::default();
    tiny.write(dir.path(), 7);
    let cfg = tiny.model_config();
    let gen_path = dir.path().join("generation_config.json");
    std::fs::create_dir(&gen_path).unwrap();
    match GenerationConfig::from_model_dir(dir.path(), &cfg) {
        Err(e @ Error::Checkpoint { .. }) => {
            assert!(e.to_string().contains("generation_config.json"), "{e}");
        }
        other => panic!("expected Error::Checkpoint, got {other:?}"),
    }
}
