//! Shared by the tokenizer tests: unpacks the gzipped fixtures written by
//! `scripts/make_tokenizer_fixtures.py` into Marian checkpoint directories.
//! Two files are stored in a smaller form and rebuilt here byte-for-byte
//! (checked against the size and CRC-32 of the original): the nmt_nfkc spm
//! models without their shared precompiled charsmap, and vocab.json as its
//! list of pieces (tests/fixtures/README.md, "Tokenizer fixtures").

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use std::collections::HashMap;
use std::fmt::Write as _;

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
    write("source.spm", spm_model(src));
    write("target.spm", spm_model(tgt));
    write("vocab.json", vocab_json(pair));
    std::fs::copy(
        f.join(format!("{pair}/tokenizer_config.json")),
        dir.join("tokenizer_config.json"),
    )
    .expect("copy tokenizer_config.json");
    dir
}

/// Panics unless `bytes` has the recorded size and CRC-32 (IEEE, as Python's
/// `zlib.crc32`): the rebuilt file is the one Hugging Face read.
fn check_rebuilt(what: &str, bytes: &[u8], size: usize, crc32: u32) {
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    assert!(
        bytes.len() == size && crc.sum() == crc32,
        "{what}: rebuilt {} bytes with crc32 {:08x}, the original had {size} bytes, crc32 {crc32:08x}",
        bytes.len(),
        crc.sum()
    );
}

/// An entry of `spm/layout.json`.
#[derive(Debug, Deserialize)]
struct SpmLayout {
    /// Where the shared nmt_nfkc charsmap bytes go back; None: stored whole.
    charsmap_offset: Option<usize>,
    size: usize,
    crc32: u32,
}

/// The trained SentencePiece model `name` (en, de, fr, en_bytes), exactly as
/// trained: the stored file with the shared charsmap put back at its offset.
pub fn spm_model(name: &str) -> Vec<u8> {
    let dir = fixtures().join("spm");
    let layout_path = dir.join("layout.json");
    let text = std::fs::read_to_string(&layout_path)
        .unwrap_or_else(|e| panic!("{}: {e}", layout_path.display()));
    let layouts: HashMap<String, SpmLayout> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", layout_path.display()));
    let layout = layouts
        .get(name)
        .unwrap_or_else(|| panic!("{}: no entry {name}", layout_path.display()));
    let mut bytes = gunzip(&dir.join(format!("{name}.spm.gz")));
    if let Some(offset) = layout.charsmap_offset {
        assert!(
            offset <= bytes.len(),
            "{name}: charsmap offset past the end"
        );
        let charsmap = gunzip(&dir.join("nmt_nfkc.charsmap.gz"));
        bytes.splice(offset..offset, charsmap);
    }
    check_rebuilt(&format!("spm/{name}"), &bytes, layout.size, layout.crc32);
    bytes
}

/// `{pair}/vocab.pieces.json.gz`: vocab.json as its pieces in id order.
#[derive(Debug, Deserialize)]
struct VocabPieces {
    size: usize,
    crc32: u32,
    pieces: Vec<String>,
}

/// A JSON string literal as Python's `json.dumps` writes it (ensure_ascii):
/// `"` and `\` escaped, \n \r \t \b \f short forms, everything else
/// outside ' '..='~' as lowercase \uXXXX UTF-16 units.
fn python_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// `pair`'s vocab.json byte-for-byte as `MarianTokenizer.save_pretrained`
/// wrote it (`json.dump(vocab, indent=2)`), rebuilt from its pieces.
pub fn vocab_json(pair: &str) -> Vec<u8> {
    let path = fixtures().join(format!("{pair}/vocab.pieces.json.gz"));
    let packed: VocabPieces = serde_json::from_slice(&gunzip(&path))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = String::from("{");
    for (id, piece) in packed.pieces.iter().enumerate() {
        text.push_str(if id == 0 { "\n  " } else { ",\n  " });
        python_json_string(piece, &mut text);
        let _ = write!(text, ": {id}");
    }
    text.push_str(if packed.pieces.is_empty() { "}" } else { "\n}" });
    let bytes = text.into_bytes();
    check_rebuilt(
        &format!("{pair}/vocab.json"),
        &bytes,
        packed.size,
        packed.crc32,
    );
    bytes
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
