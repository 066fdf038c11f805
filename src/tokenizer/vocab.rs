//! `vocab.json` (piece -> id, shared by source and target in opus-mt) and the
//! optional `tokenizer_config.json`, read as `MarianTokenizer.__init__` and
//! `from_pretrained` read them.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::error::{Error, Result};

/// vocab.json's entries in file order, so that errors name the first
/// offending entry.
struct OrderedEntries(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for OrderedEntries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedEntries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object of piece -> id")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<OrderedEntries, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                    out.push((k, v));
                }
                Ok(OrderedEntries(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The shared vocabulary: `encoder` (piece -> id) and `decoder` (id -> piece).
#[derive(Debug, Clone)]
pub(crate) struct Vocab {
    pub encoder: HashMap<String, u32>,
    pub decoder: HashMap<u32, String>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

impl Vocab {
    /// Reads vocab.json: a JSON object whose values are distinct ids in `0..2^32`.
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let bytes = read(path)?;
        let OrderedEntries(entries) =
            serde_json::from_slice(&bytes).map_err(|source| Error::Json {
                path: path.to_path_buf(),
                source,
            })?;
        let mut encoder = HashMap::with_capacity(entries.len());
        let mut decoder = HashMap::with_capacity(entries.len());
        for (piece, value) in entries {
            let id = value
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| {
                    Error::tokenizer(
                        path,
                        format!("the id of {piece:?} is {value}, not an integer in 0..2^32"),
                    )
                })?;
            // Two pieces with one id cannot both be decoded (MarianTokenizer's
            // `{v: k}` silently keeps the last): reject the file instead.
            if let Some(first) = decoder.get(&id) {
                return Err(Error::tokenizer(
                    path,
                    format!("duplicate id {id}: both {first:?} and {piece:?} have it"),
                ));
            }
            encoder.insert(piece.clone(), id);
            decoder.insert(id, piece);
        }
        if encoder.is_empty() {
            return Err(Error::tokenizer(path, "the vocabulary is empty"));
        }
        Ok(Vocab { encoder, decoder })
    }
}

/// A token string in tokenizer_config.json: `"</s>"` or `{"content": "</s>", ...}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum TokenName {
    Plain(String),
    Object { content: String },
}

impl TokenName {
    fn into_string(self) -> String {
        match self {
            TokenName::Plain(s) | TokenName::Object { content: s } => s,
        }
    }
}

/// One entry of `added_tokens_decoder`.
#[derive(Debug, Clone, Deserialize)]
struct AddedTokenJson {
    content: String,
    #[serde(default)]
    special: bool,
    #[serde(default)]
    lstrip: bool,
    #[serde(default)]
    rstrip: bool,
}

/// The fields of tokenizer_config.json that change MarianTokenizer's output.
#[derive(Debug, Clone, Default, Deserialize)]
struct ConfigJson {
    unk_token: Option<TokenName>,
    eos_token: Option<TokenName>,
    pad_token: Option<TokenName>,
    #[serde(default)]
    separate_vocabs: bool,
    clean_up_tokenization_spaces: Option<bool>,
    #[serde(default)]
    added_tokens_decoder: HashMap<String, AddedTokenJson>,
    /// A list of tokens (strings or objects), or in newer files a name -> token map.
    additional_special_tokens: Option<serde_json::Value>,
    extra_special_tokens: Option<serde_json::Value>,
}

/// A token that is matched in the text before SentencePiece runs and never
/// split (`AddedToken`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AddedToken {
    pub content: String,
    pub id: u32,
    pub special: bool,
    /// Strip whitespace on the left of the token from the preceding text.
    pub lstrip: bool,
    /// Strip whitespace on the right of the token from the following text.
    pub rstrip: bool,
}

/// What the tokenizer takes from tokenizer_config.json (or its defaults).
#[derive(Debug, Clone)]
pub(crate) struct TokenizerConfig {
    pub unk_token: String,
    pub eos_token: String,
    pub pad_token: String,
    /// `all_special_tokens` beyond unk/eos/pad.
    pub extra_special_tokens: Vec<String>,
    pub clean_up_tokenization_spaces: bool,
    /// `added_tokens_decoder`; `None` when the file does not list them.
    pub added_tokens: Option<Vec<AddedToken>>,
}

impl TokenizerConfig {
    /// MarianTokenizer's defaults: `<unk>`, `</s>`, `<pad>`, no clean-up.
    pub(crate) fn defaults() -> Self {
        TokenizerConfig {
            unk_token: "<unk>".into(),
            eos_token: "</s>".into(),
            pad_token: "<pad>".into(),
            extra_special_tokens: Vec::new(),
            clean_up_tokenization_spaces: false,
            added_tokens: None,
        }
    }

    /// Reads tokenizer_config.json if it exists.
    pub(crate) fn load_optional(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Ok(Self::defaults());
        }
        let bytes = read(path)?;
        let c: ConfigJson = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        if c.separate_vocabs {
            return Err(Error::tokenizer(
                path,
                "separate_vocabs = true (a target_vocab.json) is not supported",
            ));
        }
        let d = Self::defaults();
        let mut added = Vec::new();
        for (id, t) in c.added_tokens_decoder {
            let id = id.parse::<u32>().map_err(|_| {
                Error::tokenizer(
                    path,
                    format!("added_tokens_decoder key {id:?} is not an id"),
                )
            })?;
            added.push(AddedToken {
                content: t.content,
                id,
                special: t.special,
                lstrip: t.lstrip,
                rstrip: t.rstrip,
            });
        }
        added.sort_by_key(|t| t.id);
        Ok(TokenizerConfig {
            unk_token: c.unk_token.map_or(d.unk_token, TokenName::into_string),
            eos_token: c.eos_token.map_or(d.eos_token, TokenName::into_string),
            pad_token: c.pad_token.map_or(d.pad_token, TokenName::into_string),
            extra_special_tokens: c
                .additional_special_tokens
                .iter()
                .chain(c.extra_special_tokens.iter())
                .flat_map(token_names)
                .collect(),
            clean_up_tokenization_spaces: c.clean_up_tokenization_spaces.unwrap_or(false),
            added_tokens: (!added.is_empty()).then_some(added),
        })
    }
}

/// The token strings in a list or map of tokens (strings or `{"content": ..}`).
fn token_names(v: &serde_json::Value) -> Vec<String> {
    let items: Vec<&serde_json::Value> = match v {
        serde_json::Value::Array(a) => a.iter().collect(),
        serde_json::Value::Object(m) => m.values().collect(),
        _ => Vec::new(),
    };
    items
        .into_iter()
        .filter_map(|t| TokenName::deserialize(t).ok())
        .map(TokenName::into_string)
        .collect()
}
