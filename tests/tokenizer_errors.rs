//! Broken tokenizer files give an error that names the file and the cause,
//! never a panic; arbitrary text and ids never panic.

mod common_tokenizer;

use std::path::{Path, PathBuf};

use common_tokenizer::materialize;
use proptest::prelude::*;
use transformer_kernels::tokenizer::{MarianTokenizer, Side};
use transformer_kernels::Error;

/// A fresh copy of the en-de fixture directory, private to `tag`.
fn fresh(tag: &str) -> PathBuf {
    materialize("en-de", tag)
}

fn load_err(dir: &Path) -> Error {
    match MarianTokenizer::from_dir(dir) {
        Ok(_) => panic!("{} loaded although a file is broken", dir.display()),
        Err(e) => e,
    }
}

/// The error's message must name `file` (its Display shows the path).
fn assert_names(e: &Error, file: &str) {
    let msg = e.to_string();
    assert!(msg.contains(file), "error {msg:?} does not name {file}");
    assert!(!msg.contains('\n'), "error {msg:?} is not one line");
}

#[test]
fn missing_files_are_io_errors_naming_the_file() {
    for file in ["source.spm", "target.spm", "vocab.json"] {
        let dir = fresh(&format!("missing-{file}"));
        std::fs::remove_file(dir.join(file)).expect("remove");
        let e = load_err(&dir);
        assert!(matches!(e, Error::Io { .. }), "{file}: {e:?}");
        assert_names(&e, file);
    }
    // tokenizer_config.json is optional: MarianTokenizer's defaults apply.
    let dir = fresh("missing-config");
    std::fs::remove_file(dir.join("tokenizer_config.json")).expect("remove");
    let tok = MarianTokenizer::from_dir(&dir).expect("loads without tokenizer_config.json");
    assert_eq!(
        tok.decode_target(&[tok.unk_id(), tok.eos_id()])
            .expect("decode"),
        ""
    );
}

#[test]
fn corrupt_spm_is_a_tokenizer_error_naming_the_file() {
    let dir = fresh("corrupt-spm");
    let good = std::fs::read(dir.join("source.spm")).expect("read");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("text", b"this is not a protobuf".to_vec()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("truncated by 1", good[..good.len() - 1].to_vec()),
        ("all 0xff", vec![0xff; 64]),
    ];
    for (what, bytes) in cases {
        std::fs::write(dir.join("source.spm"), &bytes).expect("write");
        let e = load_err(&dir);
        assert!(matches!(e, Error::Tokenizer { .. }), "{what}: {e:?}");
        assert_names(&e, "source.spm");
    }
}

#[test]
fn truncated_or_flipped_spm_never_panics() {
    let dir = fresh("fuzz-spm");
    let good = std::fs::read(dir.join("target.spm")).expect("read");
    let mut inputs: Vec<Vec<u8>> = (1..40)
        .map(|k| good[..good.len() * k / 40].to_vec())
        .collect();
    // Deterministic byte flips spread over the pieces, specs and charsmap.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..40 {
        let mut bytes = good.clone();
        for _ in 0..8 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let at = (state % bytes.len() as u64) as usize;
            bytes[at] ^= (state >> 32) as u8 | 1;
        }
        inputs.push(bytes);
    }
    let mut loaded = 0;
    for bytes in inputs {
        std::fs::write(dir.join("target.spm"), &bytes).expect("write");
        // Either outcome is fine; a panic fails the test.
        if let Ok(tok) = MarianTokenizer::from_dir(&dir) {
            loaded += 1;
            for text in ["A dog runs.", "Ünïcödé \u{1F600}", "  \t", "ﬁne Ⅻ"] {
                let _ = tok.encode(text, Side::Target);
            }
            let _ = tok.decode_target(&[5, 17, 300, 2000, 1]);
        }
    }
    println!("flipped/truncated target.spm: {loaded} of 79 still loaded, none panicked");
}

#[test]
fn broken_vocab_json_names_the_file() {
    let dir = fresh("bad-vocab");
    let path = dir.join("vocab.json");
    std::fs::write(&path, "{\"</s>\": 0, \"<unk>\": 1,").expect("write");
    let e = load_err(&dir);
    assert!(matches!(e, Error::Json { .. }), "{e:?}");
    assert_names(&e, "vocab.json");

    for (what, json) in [
        ("negative id", r#"{"</s>": 0, "<unk>": -1, "<pad>": 2}"#),
        ("string id", r#"{"</s>": 0, "<unk>": "1", "<pad>": 2}"#),
        ("no <unk>", r#"{"</s>": 0, "<pad>": 1}"#),
        ("no <pad>", r#"{"</s>": 0, "<unk>": 1}"#),
        ("empty", "{}"),
    ] {
        std::fs::write(&path, json).expect("write");
        let e = load_err(&dir);
        assert!(matches!(e, Error::Tokenizer { .. }), "{what}: {e:?}");
        assert_names(&e, "vocab.json");
    }
    std::fs::write(&path, "[1, 2]").expect("write");
    assert!(matches!(load_err(&dir), Error::Json { .. }));
}

#[test]
fn broken_tokenizer_config_names_the_file() {
    let dir = fresh("bad-config");
    let path = dir.join("tokenizer_config.json");
    std::fs::write(&path, "{ not json").expect("write");
    let e = load_err(&dir);
    assert!(matches!(e, Error::Json { .. }), "{e:?}");
    assert_names(&e, "tokenizer_config.json");
    std::fs::write(&path, r#"{"separate_vocabs": true}"#).expect("write");
    let e = load_err(&dir);
    assert!(matches!(e, Error::Tokenizer { .. }), "{e:?}");
    assert_names(&e, "tokenizer_config.json");
}

#[test]
fn unknown_id_is_an_invalid_argument() {
    let tok = MarianTokenizer::from_dir(&fresh("bad-id")).expect("load");
    let past = tok.vocab_size() as u32;
    for id in [past, past + 1, u32::MAX] {
        let e = tok
            .decode_target(&[5, id])
            .expect_err("id past the vocabulary");
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
        assert!(e.to_string().contains(&id.to_string()), "{e}");
    }
}

fn tok_for_props() -> &'static MarianTokenizer {
    static TOK: std::sync::OnceLock<MarianTokenizer> = std::sync::OnceLock::new();
    TOK.get_or_init(|| MarianTokenizer::from_dir(&fresh("props")).expect("load"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any text (control characters, emoji, combining marks, special-token
    /// and language-code look-alikes) encodes without panic to ids inside the
    /// vocabulary, ending in exactly one appended `</s>`.
    #[test]
    fn any_text_encodes_to_valid_ids(
        text in prop_oneof![
            any::<String>(),
            "[ a-zA-Z\u{0}-\u{1f}\u{7f}\u{a0}\u{3000}\u{2581}<>/s!.,'é\u{1F600}\u{301}\u{FB01}]{0,40}",
            "(>>[a-z]{0,3}<<)?( ?(</s>|<unk>|<pad>|dog|▁|\u{1F436}))*",
        ]
    ) {
        let tok = tok_for_props();
        for side in [Side::Source, Side::Target] {
            let ids = tok.encode(&text, side).expect("encode never fails on a valid model");
            prop_assert_eq!(ids.last(), Some(&tok.eos_id()));
            prop_assert!(ids.iter().all(|&i| (i as usize) < tok.vocab_size()), "{:?}", ids);
            let blank = tok.is_blank_source(&text).expect("blank");
            if side == Side::Source {
                prop_assert_eq!(blank, ids.len() == 1);
            }
        }
    }

    /// Any id sequence decodes or is rejected as an invalid argument, never
    /// panics; sequences inside the vocabulary always decode, and the text
    /// has no '▁' and no leading or trailing space.
    #[test]
    fn any_ids_decode_or_are_rejected(ids in prop::collection::vec(0u32..16_000, 0..40)) {
        let tok = tok_for_props();
        for side in [Side::Source, Side::Target] {
            for skip in [true, false] {
                match tok.decode(&ids, side, skip) {
                    Ok(text) => {
                        prop_assert!(!text.contains('\u{2581}'), "{:?}", text);
                        prop_assert_eq!(text.trim(), text.as_str());
                    }
                    Err(e) => {
                        prop_assert!(matches!(e, Error::InvalidArgument { .. }), "{:?}", e);
                        prop_assert!(ids.iter().any(|&i| i as usize >= tok.vocab_size()));
                    }
                }
            }
        }
    }
}

#[test]
fn duplicate_ids_in_vocab_json_are_rejected() {
    let dir = fresh("dup-vocab");
    let path = dir.join("vocab.json");
    std::fs::write(
        &path,
        r#"{"</s>": 0, "<unk>": 1, "▁a": 2, "▁b": 2, "<pad>": 3}"#,
    )
    .expect("write");
    let e = load_err(&dir);
    assert!(matches!(e, Error::Tokenizer { .. }), "{e:?}");
    assert_names(&e, "vocab.json");
    let msg = e.to_string();
    assert!(
        msg.contains("duplicate id 2") && msg.contains("▁a") && msg.contains("▁b"),
        "{msg}"
    );
}

#[test]
fn tokenizer_ids_are_checked_against_config_vocab_size() {
    use transformer_kernels::model::ModelConfig;
    let dir = fresh("compat");
    let tok = MarianTokenizer::from_dir(&dir).expect("fixture loads");
    let max = tok.max_vocab_id();
    // The en-de fixture's ids are 0..vocab_size, pad the last.
    assert_eq!(max as usize + 1, tok.vocab_size());
    let config = |vocab_size: u32| {
        ModelConfig::from_json_str(
            &format!(
                r#"{{"d_model": 8, "encoder_attention_heads": 2, "decoder_attention_heads": 2,
                    "vocab_size": {vocab_size}, "pad_token_id": 0, "decoder_start_token_id": 0}}"#
            ),
            Path::new("config.json"),
        )
        .expect("config parses")
    };
    tok.check_compatible(config(max + 1).vocab_size)
        .expect("every id fits");
    match tok.check_compatible(config(max).vocab_size) {
        Err(e @ Error::Tokenizer { .. }) => {
            assert_names(&e, "vocab.json");
            let msg = e.to_string();
            assert!(
                msg.contains("config.json")
                    && msg.contains(&format!("id {max}"))
                    && msg.contains(&format!("vocab_size = {max}")),
                "{msg}"
            );
        }
        other => panic!("expected Error::Tokenizer, got {other:?}"),
    }
}

#[test]
fn fixture_model_tokenizers_are_compatible_with_their_configs() {
    use transformer_kernels::model::ModelConfig;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models");
    for name in [
        "marian-swish-ende",
        "marian-relu-ende",
        "marian-gelu-enfr-f16",
    ] {
        let dir = root.join(name);
        let tok = MarianTokenizer::from_dir(&dir).expect("fixture tokenizer loads");
        let cfg = ModelConfig::from_file(&dir.join("config.json")).expect("config loads");
        tok.check_compatible(cfg.vocab_size)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
