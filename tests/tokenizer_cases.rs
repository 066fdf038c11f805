//! CASES.md section E (text in and out) at the tokenizer level, on the
//! en-de fixture tokenizer (source.spm: English, target.spm: German).

mod common_tokenizer;

use common_tokenizer::materialize;
use transformer_kernels::tokenizer::{MarianTokenizer, Side};

fn en_de() -> MarianTokenizer {
    MarianTokenizer::from_dir(&materialize("en-de", "cases")).expect("load en-de fixture")
}

/// Ids of pieces that must exist in vocab.json.
fn ids(tok: &MarianTokenizer, pieces: &[&str]) -> Vec<u32> {
    pieces
        .iter()
        .map(|p| {
            tok.token_to_id(p)
                .unwrap_or_else(|| panic!("{p:?} not in vocab.json"))
        })
        .collect()
}

/// E1: empty or whitespace-only input. MarianTokenizer encodes it as `[</s>]`
/// (so does this crate); `is_blank_source` tells the caller to skip the model
/// and emit an empty translation.
#[test]
fn e1_blank_input_is_eos_only_and_reported_blank() {
    let tok = en_de();
    let eos = tok.eos_id();
    for text in [
        "", " ", "   ", "\t", "\n", "\r\n", " \t \n ", "\u{3000}", "\u{a0}",
    ] {
        assert_eq!(
            tok.encode_source(text).expect("encode"),
            vec![eos],
            "{text:?}"
        );
        assert!(
            tok.is_blank_source(text).expect("blank"),
            "{text:?} must be blank"
        );
    }
    // nmt_nfkc drops control characters, so these normalize to nothing too.
    for text in ["\u{1}", "\u{7f}\u{1b}"] {
        assert_eq!(
            tok.encode_source(text).expect("encode"),
            vec![eos],
            "{text:?}"
        );
        assert!(
            tok.is_blank_source(text).expect("blank"),
            "{text:?} must be blank"
        );
    }
    for text in ["a", " .", "\u{1F600}", ">>de<<", "</s>"] {
        assert!(
            !tok.is_blank_source(text).expect("blank"),
            "{text:?} is not blank"
        );
        assert!(
            tok.encode_source(text).expect("encode").len() >= 2,
            "{text:?}"
        );
    }
    // Decoding nothing (or only special tokens) gives the empty string.
    assert_eq!(tok.decode_target(&[]).expect("decode"), "");
    assert_eq!(tok.decode_target(&[eos, tok.pad_id()]).expect("decode"), "");
}

/// E2: source ids decode with source.spm, target ids with target.spm;
/// '▁' becomes a space and the leading one is dropped.
#[test]
fn e2_pieces_join_with_spaces_and_no_leading_space() {
    let tok = en_de();
    let eos = tok.eos_id();

    // English pieces from source.spm, decoded as source.
    let src = ids(&tok, &["▁I", "▁was", "▁eat", "ing", "."]);
    assert_eq!(tok.decode_source(&src).expect("decode"), "I was eating.");

    // German pieces from target.spm, decoded as generated output.
    let mut tgt = ids(&tok, &["▁Ein", "▁Hund", "▁läuft", "."]);
    tgt.push(eos);
    assert_eq!(tok.decode_target(&tgt).expect("decode"), "Ein Hund läuft.");

    // "I was▁eating" is the bug: pieces that target.spm does not know
    // ("▁eat" is English only) are copied verbatim by SentencePiece, and
    // MarianTokenizer then turns every remaining '▁' into a space.
    assert_eq!(tok.decode_target(&src).expect("decode"), "I was eating.");

    // Round trip of the encoder's own ids.
    let enc = tok.encode_source("A dog is running.").expect("encode");
    assert_eq!(enc.last(), Some(&eos));
    assert_eq!(
        tok.decode_source(&enc).expect("decode"),
        "A dog is running."
    );
    let enc = tok.encode_target("Ein Hund läuft.").expect("encode");
    assert_eq!(tok.decode_target(&enc).expect("decode"), "Ein Hund läuft.");

    // Which spm decodes shows once special tokens are kept: after `<unk>`
    // the next chunk starts afresh; target.spm knows "▁Ein" and drops its
    // leading '▁', source.spm does not, so the '▁' stays and becomes a space.
    let unk_then_de = [vec![tok.unk_id()], ids(&tok, &["▁Ein", "▁Hund"])].concat();
    assert_eq!(
        tok.decode(&unk_then_de, Side::Target, false)
            .expect("decode"),
        "<unk> Ein Hund"
    );
    assert_eq!(
        tok.decode(&unk_then_de, Side::Source, false)
            .expect("decode"),
        "<unk>  Ein Hund"
    );
    // Skipping special tokens drops unk, pad and eos.
    assert_eq!(tok.decode_target(&unk_then_de).expect("decode"), "Ein Hund");
}

/// A leading language code stays one token; elsewhere it is ordinary text.
#[test]
fn language_code_prefix_is_one_token() {
    let tok = en_de();
    let de = tok.token_to_id(">>de<<").expect(">>de<< in vocab");
    let plain = tok.encode_source("A dog.").expect("encode");
    let coded = tok.encode_source(">>de<< A dog.").expect("encode");
    assert_eq!(coded[0], de);
    assert_eq!(&coded[1..], &plain[..], "the code must not change the rest");
    assert_eq!(
        tok.tokenize(">>de<< A dog.", Side::Source)
            .expect("tokenize")[0],
        ">>de<<"
    );
    // An unknown code is one token too, mapped to <unk>.
    assert_eq!(
        tok.encode_source(">>xx<< A dog.").expect("encode")[0],
        tok.unk_id()
    );
    // Not at the start: not a code.
    assert!(!tok.encode_source("A >>de<<").expect("encode").contains(&de));
}
