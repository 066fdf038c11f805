//! SentencePiece (source.spm / target.spm) + vocab.json, as Hugging Face's
//! `MarianTokenizer` (transformers 5.24) uses them for Marian / opus-mt
//! checkpoints.
//!
//! Encoding a source sentence (`tokenizer(text)["input_ids"]`):
//! 1. the text is split on added tokens (`</s>`, `<unk>`, `<pad>` written
//!    literally stay one token each);
//! 2. each remaining chunk loses a leading language code `>>xx<<` (kept as
//!    one token, as multilingual opus-mt models expect), and the rest is cut
//!    into pieces by source.spm (SentencePiece unigram with the model's own
//!    normalizer, nmt_nfkc for opus-mt; byte fallback and user-defined
//!    symbols when the model has them);
//! 3. pieces become ids through vocab.json, shared by both sides; a piece
//!    that vocab.json lacks becomes `<unk>`;
//! 4. `</s>` is appended.
//!
//! Decoding target ids (`tokenizer.decode(ids, skip_special_tokens=True)`):
//! special ids (`</s>`, `<unk>`, `<pad>`) are dropped, ids become pieces
//! through vocab.json, target.spm joins them ('▁' becomes a space, the
//! leading one is dropped) and the result is stripped.
//!
//! Empty input (CASES E1): `encode_source("")` and any input that normalizes
//! to nothing (whitespace, control characters) give `[eos_id]`, exactly as
//! MarianTokenizer does. Callers that must not run the model on such input
//! ask [`MarianTokenizer::is_blank_source`].
//!
//! Fidelity: ids and decoded text equal MarianTokenizer's (transformers
//! 5.24, sentencepiece 0.2) on every line of Multi30k test_2016_flickr (en,
//! de, fr), on edge cases and on random id sequences; see
//! `tests/tokenizer_parity.rs` and `scripts/make_tokenizer_fixtures.py`.
//! One deliberate difference: transformers 5.24 decodes with source.spm
//! unless `use_source_tokenizer=False` is passed (shared vocab); this crate
//! decodes target ids with target.spm (CASES E2). With
//! `skip_special_tokens=True` both give the same text on every fixture. Limits: unigram models only (no BPE),
//! `separate_vocabs` and `treat_whitespace_as_suffix` are rejected with an
//! error, the Moses punctuation normalizer (only used by MarianTokenizer
//! when the `sacremoses` package is installed) is not applied.

mod normalizer;
mod proto;
mod sentencepiece;
mod vocab;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use sentencepiece::SentencePiece;
use vocab::{AddedToken, TokenizerConfig, Vocab};

/// Which SentencePiece model a call uses: source.spm (the encoder's language)
/// or target.spm (the decoder's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// source.spm: what `MarianTokenizer(text)` encodes with.
    Source,
    /// target.spm: what `MarianTokenizer(text_target=...)` encodes with and
    /// what generated ids are decoded with.
    Target,
}

/// A Marian tokenizer loaded from a checkpoint directory.
#[derive(Debug, Clone)]
pub struct MarianTokenizer {
    dir: PathBuf,
    source: SentencePiece,
    target: SentencePiece,
    vocab: Vocab,
    /// Matched in the text before SentencePiece; longest first at a position.
    added: Vec<AddedToken>,
    added_by_content: HashMap<String, u32>,
    added_by_id: HashMap<u32, String>,
    special_tokens: HashSet<String>,
    special_ids: HashSet<u32>,
    unk_id: u32,
    eos_id: u32,
    pad_id: u32,
    clean_up_tokenization_spaces: bool,
}

impl MarianTokenizer {
    /// Loads `source.spm`, `target.spm` and `vocab.json` from `dir`, and
    /// `tokenizer_config.json` when present (special-token names, added
    /// tokens, `clean_up_tokenization_spaces`).
    ///
    /// # Errors
    /// [`Error::Io`] for a missing or unreadable file, [`Error::Json`] for
    /// malformed JSON, [`Error::Tokenizer`] for a corrupt or unsupported spm
    /// file or a vocab.json without the unk / eos / pad tokens; each names
    /// the file.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let load_spm = |name: &str| -> Result<SentencePiece> {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            SentencePiece::from_bytes(&bytes).map_err(|msg| Error::tokenizer(&path, msg))
        };
        let source = load_spm("source.spm")?;
        let target = load_spm("target.spm")?;
        let vocab_path = dir.join("vocab.json");
        let vocab = Vocab::load(&vocab_path)?;
        let config = TokenizerConfig::load_optional(&dir.join("tokenizer_config.json"))?;

        let id_of = |token: &str| -> Result<u32> {
            vocab.encoder.get(token).copied().ok_or_else(|| {
                Error::tokenizer(&vocab_path, format!("the token {token:?} is missing"))
            })
        };
        let unk_id = id_of(&config.unk_token)?;
        let eos_id = id_of(&config.eos_token)?;
        let pad_id = id_of(&config.pad_token)?;

        let added = match config.added_tokens.clone() {
            Some(list) => list,
            None => [
                (&config.eos_token, eos_id),
                (&config.unk_token, unk_id),
                (&config.pad_token, pad_id),
            ]
            .into_iter()
            .map(|(content, id)| AddedToken {
                content: content.clone(),
                id,
                special: true,
                lstrip: false,
                rstrip: false,
            })
            .collect(),
        };
        let added_by_content: HashMap<String, u32> =
            added.iter().map(|t| (t.content.clone(), t.id)).collect();
        let added_by_id: HashMap<u32, String> =
            added.iter().map(|t| (t.id, t.content.clone())).collect();
        let mut special_tokens: HashSet<String> = [
            config.unk_token.clone(),
            config.eos_token.clone(),
            config.pad_token.clone(),
        ]
        .into_iter()
        .chain(config.extra_special_tokens.iter().cloned())
        .collect();
        special_tokens.extend(
            added
                .iter()
                .filter(|t| t.special)
                .map(|t| t.content.clone()),
        );
        // `all_special_ids`: added tokens first, then the vocabulary, else unk.
        let special_ids = special_tokens
            .iter()
            .map(|t| {
                added_by_content
                    .get(t)
                    .or_else(|| vocab.encoder.get(t))
                    .copied()
                    .unwrap_or(unk_id)
            })
            .collect();
        Ok(MarianTokenizer {
            dir: dir.to_path_buf(),
            source,
            target,
            vocab,
            added,
            added_by_content,
            added_by_id,
            special_tokens,
            special_ids,
            unk_id,
            eos_id,
            pad_id,
            clean_up_tokenization_spaces: config.clean_up_tokenization_spaces,
        })
    }

    /// The directory the tokenizer was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Source ids for the encoder, `</s>` appended: `tokenizer(text)["input_ids"]`.
    /// Empty or blank text gives `[eos_id]`.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] only if the spm file's normalization rules are
    /// inconsistent (a corrupt charsmap); never panics on any input.
    pub fn encode_source(&self, text: &str) -> Result<Vec<u32>> {
        self.encode(text, Side::Source)
    }

    /// Target ids, `</s>` appended: `tokenizer(text_target=text)["input_ids"]`
    /// (labels for teacher forcing).
    ///
    /// # Errors
    /// As [`MarianTokenizer::encode_source`].
    pub fn encode_target(&self, text: &str) -> Result<Vec<u32>> {
        self.encode(text, Side::Target)
    }

    /// Ids with `</s>` appended, using `side`'s SentencePiece model.
    ///
    /// # Errors
    /// As [`MarianTokenizer::encode_source`].
    pub fn encode(&self, text: &str, side: Side) -> Result<Vec<u32>> {
        let mut ids = self.tokens_to_ids(self.tokenize(text, side)?);
        ids.push(self.eos_id);
        Ok(ids)
    }

    /// The tokens (pieces, language codes and added tokens) of `text`, before
    /// they become ids and without `</s>`: `tokenizer.tokenize(text)`.
    ///
    /// # Errors
    /// As [`MarianTokenizer::encode_source`].
    pub fn tokenize(&self, text: &str, side: Side) -> Result<Vec<String>> {
        let spm = self.spm(side);
        let mut out = Vec::new();
        for chunk in self.split_on_added(text) {
            match chunk {
                Chunk::Added(content) => out.push(content.to_string()),
                Chunk::Text("") => {}
                Chunk::Text(t) => {
                    let (code, rest) = split_language_code(t);
                    out.extend(code.map(str::to_string));
                    let pieces = spm
                        .encode(rest)
                        .map_err(|msg| Error::tokenizer(self.spm_path(side), msg))?;
                    out.extend(pieces);
                }
            }
        }
        Ok(out)
    }

    /// True when `text` encodes to nothing but `</s>` (empty, whitespace or
    /// control characters only). The model must not run on such input: the
    /// translation is the empty string (CASES E1).
    ///
    /// # Errors
    /// As [`MarianTokenizer::encode_source`].
    pub fn is_blank_source(&self, text: &str) -> Result<bool> {
        Ok(self.tokenize(text, Side::Source)?.is_empty())
    }

    /// Text of generated ids: `tokenizer.decode(ids, skip_special_tokens=True)`
    /// with target.spm. Pad, EOS and unk ids are dropped.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an id that is neither in vocab.json
    /// nor a piece of target.spm (where MarianTokenizer raises IndexError).
    pub fn decode_target(&self, ids: &[u32]) -> Result<String> {
        self.decode(ids, Side::Target, true)
    }

    /// Text of source ids, decoded with source.spm (CASES E2):
    /// `decode(ids, skip_special_tokens=True, use_source_tokenizer=True)`.
    ///
    /// # Errors
    /// As [`MarianTokenizer::decode_target`].
    pub fn decode_source(&self, ids: &[u32]) -> Result<String> {
        self.decode(ids, Side::Source, true)
    }

    /// `tokenizer.decode(ids, skip_special_tokens, use_source_tokenizer =
    /// side == Source)`. Without skipping, each special token is written as
    /// itself followed by a space, and the pieces between special tokens are
    /// decoded separately (as MarianTokenizer does).
    ///
    /// # Errors
    /// As [`MarianTokenizer::decode_target`].
    pub fn decode(&self, ids: &[u32], side: Side, skip_special_tokens: bool) -> Result<String> {
        let spm = self.spm(side);
        let mut tokens: Vec<&str> = Vec::with_capacity(ids.len());
        for &id in ids {
            if skip_special_tokens && self.special_ids.contains(&id) {
                continue;
            }
            let token = self
                .added_by_id
                .get(&id)
                .or_else(|| self.vocab.decoder.get(&id))
                .map(String::as_str)
                .or_else(|| spm.id_to_piece(id))
                .ok_or_else(|| {
                    Error::invalid(
                        "MarianTokenizer::decode",
                        format!(
                            "id {id} is not in vocab.json ({} entries) nor in {} ({} pieces)",
                            self.vocab.encoder.len(),
                            self.spm_path(side).display(),
                            spm.len()
                        ),
                    )
                })?;
            tokens.push(token);
        }
        let sp_decode = |pieces: &[&str]| {
            spm.decode(pieces)
                .map_err(|msg| Error::tokenizer(self.spm_path(side), msg))
        };
        let mut out = String::new();
        let mut current: Vec<&str> = Vec::new();
        for token in tokens {
            if self.special_tokens.contains(token) {
                out.push_str(&sp_decode(&current)?);
                out.push_str(token);
                out.push(' ');
                current.clear();
            } else {
                current.push(token);
            }
        }
        out.push_str(&sp_decode(&current)?);
        let out = out.replace(normalizer::SPACE_SYMBOL, " ");
        let out = python_strip(&out).to_string();
        Ok(if self.clean_up_tokenization_spaces {
            clean_up_tokenization(&out)
        } else {
            out
        })
    }

    /// The id of a token in vocab.json or the added tokens (e.g. `">>de<<"`),
    /// `None` when it has none.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.added_by_content
            .get(token)
            .or_else(|| self.vocab.encoder.get(token))
            .copied()
    }

    /// The token of an id in the added tokens or vocab.json.
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.added_by_id
            .get(&id)
            .or_else(|| self.vocab.decoder.get(&id))
            .map(String::as_str)
    }

    /// The `<pad>` id (the decoder start token of opus-mt; the last id).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The `</s>` id, appended to every encoded sentence.
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    /// The `<unk>` id, for pieces that vocab.json lacks.
    pub fn unk_id(&self) -> u32 {
        self.unk_id
    }

    /// Entries in vocab.json (MarianTokenizer's `vocab_size`).
    pub fn vocab_size(&self) -> usize {
        self.vocab.encoder.len()
    }

    /// The largest id in vocab.json.
    pub fn max_vocab_id(&self) -> u32 {
        self.vocab.decoder.keys().copied().max().unwrap_or(0)
    }

    /// Checks that every id this tokenizer can produce (vocab.json and the
    /// added tokens of tokenizer_config.json) is a row of the model's
    /// embedding, i.e. `< vocab_size` (config.json's `vocab_size`). Call it after
    /// loading both, before translating: otherwise a mismatched pair loads
    /// and fails later with a message that does not name the file at fault.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] naming vocab.json (or tokenizer_config.json for
    /// an added token), the offending token and id, and config.json's
    /// `vocab_size`.
    pub fn check_compatible(&self, vocab_size: usize) -> Result<()> {
        let too_big = |id: u32| id as usize >= vocab_size;
        let explain = |token: &str, id: u32| {
            format!(
                "token {token:?} has id {id}, but config.json has vocab_size = {vocab_size} \
                 (ids must be below it): the tokenizer and the model do not belong together"
            )
        };
        let max = self.max_vocab_id();
        if too_big(max) {
            let token = self.vocab.decoder.get(&max).map_or("", String::as_str);
            return Err(Error::tokenizer(
                self.dir.join("vocab.json"),
                explain(token, max),
            ));
        }
        if let Some(t) = self.added.iter().find(|t| too_big(t.id)) {
            return Err(Error::tokenizer(
                self.dir.join("tokenizer_config.json"),
                explain(&t.content, t.id),
            ));
        }
        Ok(())
    }

    /// Language codes `>>xx<<` that vocab.json holds (multilingual models).
    pub fn language_codes(&self) -> Vec<&str> {
        let mut codes: Vec<&str> = self
            .vocab
            .encoder
            .keys()
            .map(String::as_str)
            .filter(|k| k.starts_with(">>") && k.ends_with("<<"))
            .collect();
        codes.sort_unstable();
        codes
    }

    fn spm(&self, side: Side) -> &SentencePiece {
        match side {
            Side::Source => &self.source,
            Side::Target => &self.target,
        }
    }

    fn spm_path(&self, side: Side) -> PathBuf {
        self.dir.join(match side {
            Side::Source => "source.spm",
            Side::Target => "target.spm",
        })
    }

    /// `_convert_token_to_id_with_added_voc`: added, vocab, else unk.
    fn tokens_to_ids(&self, tokens: Vec<String>) -> Vec<u32> {
        tokens
            .iter()
            .map(|t| self.token_to_id(t).unwrap_or(self.unk_id))
            .collect()
    }

    /// `tokens_trie.split` plus the added tokens' lstrip / rstrip: text and
    /// added tokens in order, leftmost match first, longest at a position.
    fn split_on_added<'a>(&'a self, text: &'a str) -> Vec<Chunk<'a>> {
        let mut chunks = Vec::new();
        let mut rest_start = 0;
        let mut pos = 0;
        while pos < text.len() {
            let here = &text[pos..];
            let found = self
                .added
                .iter()
                .filter(|t| !t.content.is_empty() && here.starts_with(t.content.as_str()))
                .max_by_key(|t| t.content.len());
            match found {
                Some(t) => {
                    let mut before = &text[rest_start..pos];
                    if t.lstrip {
                        before = before.trim_end_matches(python_isspace);
                    }
                    chunks.push(Chunk::Text(before));
                    chunks.push(Chunk::Added(&t.content));
                    pos += t.content.len();
                    if t.rstrip {
                        let after = &text[pos..];
                        pos += after.len() - after.trim_start_matches(python_isspace).len();
                    }
                    rest_start = pos;
                }
                None => {
                    pos += here.chars().next().map_or(1, char::len_utf8);
                }
            }
        }
        chunks.push(Chunk::Text(&text[rest_start..]));
        chunks
    }
}

/// A piece of input text after splitting on added tokens.
enum Chunk<'a> {
    Text(&'a str),
    Added(&'a str),
}

/// `remove_language_code`: a leading `>>xx<<` (up to the first `<<`) and the rest.
fn split_language_code(text: &str) -> (Option<&str>, &str) {
    if text.starts_with(">>") {
        if let Some(end) = text.find("<<") {
            return (Some(&text[..end + 2]), &text[end + 2..]);
        }
    }
    (None, text)
}

/// Python's `str.isspace` for one character: Unicode White_Space plus the
/// separators U+001C..U+001F.
fn python_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()`.
fn python_strip(s: &str) -> &str {
    s.trim_matches(python_isspace)
}

/// `PreTrainedTokenizerBase.clean_up_tokenization` (only when the config asks).
fn clean_up_tokenization(text: &str) -> String {
    [
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ]
    .iter()
    .fold(text.to_string(), |t, (from, to)| t.replace(from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_code_is_split_off_only_at_the_start() {
        assert_eq!(
            split_language_code(">>de<< Hallo"),
            (Some(">>de<<"), " Hallo")
        );
        assert_eq!(split_language_code(">>de<<"), (Some(">>de<<"), ""));
        assert_eq!(split_language_code(">><<x"), (Some(">><<"), "x"));
        assert_eq!(split_language_code("a >>de<<"), (None, "a >>de<<"));
        assert_eq!(split_language_code(">> no code"), (None, ">> no code"));
    }

    #[test]
    fn python_strip_matches_str_strip() {
        assert_eq!(python_strip("\u{1f} a b\u{3000}\u{a0}"), "a b");
        assert_eq!(python_strip("\u{200b}x"), "\u{200b}x");
    }

    #[test]
    fn clean_up_joins_punctuation() {
        assert_eq!(clean_up_tokenization("a , b . don 't"), "a, b. don 't");
        assert_eq!(clean_up_tokenization("is n't"), "isn't");
    }
}

#[cfg(test)]
mod thread_tests {
    /// The lead shares one tokenizer across threads (batch translation).
    #[test]
    fn tokenizer_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::MarianTokenizer>();
    }
}
