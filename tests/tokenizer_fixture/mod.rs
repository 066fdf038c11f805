//! Shared by the tokenizer tests: unpacks the gzipped fixtures written by
//! `scripts/make_tokenizer_fixtures.py` into Marian checkpoint directories.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Deserialize;

/// The tokenizer directories: every language is once source, once target; and
/// a byte-fallback / identity-normalization / user-defined-symbols variant.
pub const PAIRS: [&str; 4] = ["en-de", "de-fr", "fr-en", "en_bytes-en_bytes"];

/// Where the committed fixtures live.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer")
}

/// The bytes of a gzipped fixture file.
pub fn gunzip(path: &Path) -> Vec<u8> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    out
}

/// Writes `pair`'s checkpoint directory (source.spm, target.spm, vocab.json,
/// tokenizer_config.json) into a fresh directory named after `tag` and a
/// per-process counter, so that tests running in parallel threads never
/// share (and never see half-written) files, and returns it.
pub fn materialize(pair: &str, tag: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let (src, tgt) = pair.split_once('-').expect("pair is src-tgt");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("tokenizer")
        .join(format!("{tag}-{n}"))
        .join(pair);
    // Left over from an earlier run: start clean.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create fixture dir");
    let f = fixtures();
    let write = |name: &str, bytes: Vec<u8>| {
        std::fs::write(dir.join(name), bytes).expect("write fixture file");
    };
    write("source.spm", gunzip(&f.join(format!("spm/{src}.spm.gz"))));
    write("target.spm", gunzip(&f.join(format!("spm/{tgt}.spm.gz"))));
    write(
        "vocab.json",
        gunzip(&f.join(format!("{pair}/vocab.json.gz"))),
    );
    std::fs::copy(
        f.join(format!("{pair}/tokenizer_config.json")),
        dir.join("tokenizer_config.json"),
    )
    .expect("copy tokenizer_config.json");
    dir
}

/// One recorded `tokenizer(text)["input_ids"]`.
#[derive(Debug, Deserialize)]
pub struct EncodeCase {
    pub text: String,
    pub ids: Vec<u32>,
    #[serde(default)]
    pub kind: String,
}

/// One recorded `tokenizer.decode(ids, ...)`.
#[derive(Debug, Deserialize)]
pub struct DecodeCase {
    pub ids: Vec<u32>,
    pub skip_special_tokens: bool,
    pub text: String,
}

/// Everything recorded for one tokenizer directory.
#[derive(Debug, Deserialize)]
pub struct Cases {
    pub source_spm: String,
    pub target_spm: String,
    pub transformers: String,
    pub vocab_size: usize,
    pub pad_id: u32,
    pub eos_id: u32,
    pub unk_id: u32,
    pub encode_source: Vec<EncodeCase>,
    pub encode_target: Vec<EncodeCase>,
    pub decode_target: Vec<DecodeCase>,
    pub decode_source: Vec<DecodeCase>,
}

/// The recorded cases of `pair`.
pub fn cases(pair: &str) -> Cases {
    let path = fixtures().join(format!("{pair}/cases.json.gz"));
    serde_json::from_slice(&gunzip(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
