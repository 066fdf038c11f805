//! Parity with Hugging Face `MarianTokenizer` (transformers 5.24,
//! sentencepiece 0.2): ids on every line of Multi30k test_2016_flickr (en, de,
//! fr as the source side), language-prefixed lines and edge cases; target
//! ids; decoding with target.spm and source.spm, with and without special
//! tokens. Fixtures: scripts/make_tokenizer_fixtures.py.

mod common_tokenizer;

use common_tokenizer::{cases, materialize, DecodeCase, EncodeCase, PAIRS};
use transformer_kernels::tokenizer::{MarianTokenizer, Side};

/// How many mismatches a failure message lists.
const SHOWN: usize = 10;

/// Compares every encode case; returns (compared, identical, report of the first mismatches).
fn compare_encode(
    tok: &MarianTokenizer,
    side: Side,
    list: &[EncodeCase],
) -> (usize, usize, String) {
    let mut identical = 0;
    let mut report = String::new();
    let mut shown = 0;
    for (i, case) in list.iter().enumerate() {
        let got = tok
            .encode(&case.text, side)
            .expect("encode never fails on a valid model");
        if got == case.ids {
            identical += 1;
        } else if shown < SHOWN {
            shown += 1;
            report.push_str(&format!(
                "  #{i} [{}] {:?}\n    got      {:?}\n    expected {:?}\n    tokens   {:?}\n",
                case.kind,
                case.text,
                got,
                case.ids,
                tok.tokenize(&case.text, side).unwrap_or_default()
            ));
        }
    }
    (list.len(), identical, report)
}

fn compare_decode(
    tok: &MarianTokenizer,
    side: Side,
    list: &[DecodeCase],
) -> (usize, usize, String) {
    let mut identical = 0;
    let mut report = String::new();
    let mut shown = 0;
    for (i, case) in list.iter().enumerate() {
        let got = tok.decode(&case.ids, side, case.skip_special_tokens);
        if got.as_deref().ok() == Some(case.text.as_str()) {
            identical += 1;
        } else if shown < SHOWN {
            shown += 1;
            report.push_str(&format!(
                "  #{i} ids {:?} skip_special_tokens={}\n    got      {:?}\n    expected {:?}\n",
                case.ids, case.skip_special_tokens, got, case.text
            ));
        }
    }
    (list.len(), identical, report)
}

#[test]
fn source_ids_equal_marian_tokenizer_on_every_test_line() {
    let mut failures = String::new();
    for pair in PAIRS {
        let c = cases(pair);
        let tok = MarianTokenizer::from_dir(&materialize(pair, "source_ids")).expect("load");
        let mut kinds: Vec<&str> = Vec::new();
        for case in &c.encode_source {
            if !kinds.contains(&case.kind.as_str()) {
                kinds.push(&case.kind);
            }
        }
        for required in ["test_2016_flickr", "prefixed", "edge"] {
            assert!(kinds.contains(&required), "{pair}: no {required} cases");
        }
        if !pair.starts_with("en_bytes") {
            // Every line of Multi30k test_2016_flickr (1000 lines per language).
            let lines = c
                .encode_source
                .iter()
                .filter(|x| x.kind == "test_2016_flickr")
                .count();
            assert_eq!(lines, 1000, "{pair}: test_2016_flickr lines in the fixture");
        }
        for kind in kinds {
            let list: Vec<EncodeCase> = c
                .encode_source
                .iter()
                .filter(|x| x.kind == kind)
                .map(|x| EncodeCase {
                    text: x.text.clone(),
                    ids: x.ids.clone(),
                    kind: x.kind.clone(),
                })
                .collect();
            let (n, same, report) = compare_encode(&tok, Side::Source, &list);
            println!(
                "{pair} source {} {kind}: {same}/{n} identical (transformers {})",
                c.source_spm, c.transformers
            );
            if same != n {
                failures.push_str(&format!(
                    "{pair} {kind}: {} of {n} differ\n{report}",
                    n - same
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "source ids differ from MarianTokenizer:\n{failures}"
    );
}

#[test]
fn target_ids_equal_marian_tokenizer() {
    let mut failures = String::new();
    for pair in PAIRS {
        let c = cases(pair);
        let tok = MarianTokenizer::from_dir(&materialize(pair, "target_ids")).expect("load");
        let (n, same, report) = compare_encode(&tok, Side::Target, &c.encode_target);
        println!("{pair} target {}: {same}/{n} identical", c.target_spm);
        if same != n {
            failures.push_str(&format!("{pair}: {} of {n} differ\n{report}", n - same));
        }
    }
    assert!(
        failures.is_empty(),
        "target ids differ from MarianTokenizer:\n{failures}"
    );
}

#[test]
fn decoding_equals_marian_tokenizer() {
    let mut failures = String::new();
    for pair in PAIRS {
        let c = cases(pair);
        let tok = MarianTokenizer::from_dir(&materialize(pair, "decode")).expect("load");
        for (side, list) in [
            (Side::Target, &c.decode_target),
            (Side::Source, &c.decode_source),
        ] {
            let (n, same, report) = compare_decode(&tok, side, list);
            println!("{pair} decode {side:?}: {same}/{n} identical");
            if same != n {
                failures.push_str(&format!(
                    "{pair} {side:?}: {} of {n} differ\n{report}",
                    n - same
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "decoded text differs from MarianTokenizer:\n{failures}"
    );
}

#[test]
fn special_ids_and_vocab_size_equal_marian_tokenizer() {
    for pair in PAIRS {
        let c = cases(pair);
        let tok = MarianTokenizer::from_dir(&materialize(pair, "special")).expect("load");
        assert_eq!(tok.vocab_size(), c.vocab_size, "{pair} vocab_size");
        assert_eq!(tok.pad_id(), c.pad_id, "{pair} pad_id");
        assert_eq!(tok.eos_id(), c.eos_id, "{pair} eos_id");
        assert_eq!(tok.unk_id(), c.unk_id, "{pair} unk_id");
        // opus-mt layout: pad is the last id.
        assert_eq!(
            tok.pad_id() as usize,
            tok.vocab_size() - 1,
            "{pair} pad is last"
        );
        for code in [">>en<<", ">>de<<", ">>fr<<"] {
            let id = tok.token_to_id(code).expect("language code in vocab");
            assert_eq!(tok.id_to_token(id), Some(code));
            assert_eq!(
                tok.encode_source(&format!("{code} a")).expect("encode")[0],
                id
            );
        }
        assert_eq!(tok.language_codes(), vec![">>de<<", ">>en<<", ">>fr<<"]);
        assert_eq!(tok.token_to_id(">>xx<<"), None);
    }
}
