//! `config.json` of a Marian checkpoint, with Hugging Face `MarianConfig`'s
//! defaults (transformers `models/marian/configuration_marian.py`) for absent
//! fields.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::activation::Activation;
use crate::error::{Error, Result};

// Upper bounds on config.json sizes. They are far above any published
// Marian / opus-mt / Transformer checkpoint (opus-mt-big: 6 + 6 layers,
// d_model 1024, 16 heads, ffn 4096, vocab ~60k, 1024 positions) and exist so
// that a corrupt or hostile config.json is rejected before anything is
// allocated or looped over in proportion to its values.

/// Most encoder or decoder layers accepted (the largest public Transformers have ~100).
pub const MAX_LAYERS: usize = 1024;
/// Largest `d_model` accepted (GPT-3-class models use 12288).
pub const MAX_D_MODEL: usize = 65536;
/// Most attention heads accepted (heads must also divide `d_model`).
pub const MAX_HEADS: usize = 1024;
/// Largest FFN inner width accepted (4 x [`MAX_D_MODEL`], the usual ratio).
pub const MAX_FFN_DIM: usize = 4 * MAX_D_MODEL;
/// Largest vocabulary accepted (2^24; the largest tokenizers have ~256k pieces).
pub const MAX_VOCAB_SIZE: usize = 1 << 24;
/// Most positions accepted (2^20; Marian uses 512 or 1024).
pub const MAX_POSITION_EMBEDDINGS: usize = 1 << 20;

/// The architecture of a Marian encoder-decoder, as `config.json` gives it.
///
/// Field names and defaults are those of Hugging Face `MarianConfig`.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// Width of every hidden state (default 1024).
    pub d_model: usize,
    /// Encoder layers (default 12).
    pub encoder_layers: usize,
    /// Decoder layers (default 12).
    pub decoder_layers: usize,
    /// Heads of encoder self-attention (default 16).
    pub encoder_attention_heads: usize,
    /// Heads of decoder self- and cross-attention (default 16).
    pub decoder_attention_heads: usize,
    /// Inner width of the encoder FFN (default 4096).
    pub encoder_ffn_dim: usize,
    /// Inner width of the decoder FFN (default 4096).
    pub decoder_ffn_dim: usize,
    /// FFN activation name (`"swish"` for opus-mt; default `"gelu"`).
    pub activation_function: String,
    /// Source (and, when shared, target) vocabulary size (default 58101).
    pub vocab_size: usize,
    /// Target vocabulary size (defaults to `vocab_size`).
    pub decoder_vocab_size: usize,
    /// Padding id (default 58100).
    pub pad_token_id: u32,
    /// End-of-sequence id(s) (default `[0]`; Hugging Face accepts an int or a list).
    pub eos_token_id: Vec<u32>,
    /// First decoder input (default 58100, the pad id for opus-mt).
    pub decoder_start_token_id: u32,
    /// Forced final token at `max_length` (default `[0]`).
    pub forced_eos_token_id: Vec<u32>,
    /// Multiply token embeddings by `sqrt(d_model)` (default false; true for opus-mt).
    pub scale_embedding: bool,
    /// Rows of the (sinusoidal) position tables (default 1024).
    pub max_position_embeddings: usize,
    /// Pre-LN when true; Marian is post-LN and this crate supports only `false`.
    pub normalize_before: bool,
    /// Encoder and decoder use `model.shared` (default true).
    pub share_encoder_decoder_embeddings: bool,
    /// The output projection is the decoder embedding (default true).
    pub tie_word_embeddings: bool,
}

impl Default for ModelConfig {
    /// Hugging Face `MarianConfig()` with no arguments.
    fn default() -> Self {
        ModelConfig {
            d_model: 1024,
            encoder_layers: 12,
            decoder_layers: 12,
            encoder_attention_heads: 16,
            decoder_attention_heads: 16,
            encoder_ffn_dim: 4096,
            decoder_ffn_dim: 4096,
            activation_function: "gelu".into(),
            vocab_size: 58101,
            decoder_vocab_size: 58101,
            pad_token_id: 58100,
            eos_token_id: vec![0],
            decoder_start_token_id: 58100,
            forced_eos_token_id: vec![0],
            scale_embedding: false,
            max_position_embeddings: 1024,
            normalize_before: false,
            share_encoder_decoder_embeddings: true,
            tie_word_embeddings: true,
        }
    }
}

/// The JSON as written; absent fields are `None` and take the defaults.
#[derive(Deserialize)]
struct RawConfig {
    d_model: Option<usize>,
    encoder_layers: Option<usize>,
    decoder_layers: Option<usize>,
    encoder_attention_heads: Option<usize>,
    decoder_attention_heads: Option<usize>,
    encoder_ffn_dim: Option<usize>,
    decoder_ffn_dim: Option<usize>,
    activation_function: Option<String>,
    vocab_size: Option<usize>,
    decoder_vocab_size: Option<usize>,
    pad_token_id: Option<u32>,
    eos_token_id: Option<IdOrList>,
    decoder_start_token_id: Option<u32>,
    forced_eos_token_id: Option<IdOrList>,
    scale_embedding: Option<bool>,
    max_position_embeddings: Option<usize>,
    normalize_before: Option<bool>,
    share_encoder_decoder_embeddings: Option<bool>,
    tie_word_embeddings: Option<bool>,
    // Legacy BART-style flags that older opus-mt configs carry; only the
    // post-LN Marian values (false) are supported.
    add_final_layer_norm: Option<bool>,
    normalize_embedding: Option<bool>,
}

/// A token id written as an int or a list of ints (Hugging Face accepts both).
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
pub(crate) enum IdOrList {
    One(u32),
    Many(Vec<u32>),
}

impl IdOrList {
    pub(crate) fn into_vec(self) -> Vec<u32> {
        match self {
            IdOrList::One(i) => vec![i],
            IdOrList::Many(v) => v,
        }
    }
}

impl ModelConfig {
    /// Reads and validates `config.json`.
    ///
    /// Errors: [`Error::Io`] if the file cannot be read, [`Error::Json`] if it
    /// is not valid JSON of the expected types, [`Error::Checkpoint`] (naming
    /// the file) for values out of range (zero sizes, sizes above the
    /// `MAX_*` bounds of this module, `d_model` not divisible
    /// by the heads, token ids past the vocabulary, an unknown activation,
    /// pre-LN).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&text, path)
    }

    /// Parses config.json text; `path` names the file in errors.
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|source| Error::Json {
            path: PathBuf::from(path),
            source,
        })?;
        let d = ModelConfig::default();
        let vocab_size = raw.vocab_size.unwrap_or(d.vocab_size);
        let cfg = ModelConfig {
            d_model: raw.d_model.unwrap_or(d.d_model),
            encoder_layers: raw.encoder_layers.unwrap_or(d.encoder_layers),
            decoder_layers: raw.decoder_layers.unwrap_or(d.decoder_layers),
            encoder_attention_heads: raw
                .encoder_attention_heads
                .unwrap_or(d.encoder_attention_heads),
            decoder_attention_heads: raw
                .decoder_attention_heads
                .unwrap_or(d.decoder_attention_heads),
            encoder_ffn_dim: raw.encoder_ffn_dim.unwrap_or(d.encoder_ffn_dim),
            decoder_ffn_dim: raw.decoder_ffn_dim.unwrap_or(d.decoder_ffn_dim),
            activation_function: raw.activation_function.unwrap_or(d.activation_function),
            vocab_size,
            // MarianConfig: decoder_vocab_size = decoder_vocab_size or vocab_size.
            decoder_vocab_size: raw.decoder_vocab_size.unwrap_or(vocab_size),
            pad_token_id: raw.pad_token_id.unwrap_or(d.pad_token_id),
            eos_token_id: raw.eos_token_id.map_or(d.eos_token_id, IdOrList::into_vec),
            decoder_start_token_id: raw
                .decoder_start_token_id
                .unwrap_or(d.decoder_start_token_id),
            forced_eos_token_id: raw
                .forced_eos_token_id
                .map_or(d.forced_eos_token_id, IdOrList::into_vec),
            scale_embedding: raw.scale_embedding.unwrap_or(d.scale_embedding),
            max_position_embeddings: raw
                .max_position_embeddings
                .unwrap_or(d.max_position_embeddings),
            normalize_before: raw.normalize_before.unwrap_or(d.normalize_before),
            share_encoder_decoder_embeddings: raw
                .share_encoder_decoder_embeddings
                .unwrap_or(d.share_encoder_decoder_embeddings),
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(d.tie_word_embeddings),
        };
        let mut problems = cfg.problems();
        if raw.add_final_layer_norm == Some(true) {
            problems.push(
                "add_final_layer_norm = true is not supported (Marian has no final LayerNorm)"
                    .into(),
            );
        }
        if raw.normalize_embedding == Some(true) {
            problems.push(
                "normalize_embedding = true is not supported (Marian has no embedding LayerNorm)"
                    .into(),
            );
        }
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(Error::checkpoint(path, problems.join("; ")))
        }
    }

    /// The parsed FFN activation.
    pub fn activation(&self) -> Result<Activation> {
        Activation::from_name(&self.activation_function)
    }

    /// Vocabulary of the output projection and of the decoder embedding.
    pub fn target_vocab_size(&self) -> usize {
        if self.share_encoder_decoder_embeddings {
            self.vocab_size
        } else {
            self.decoder_vocab_size
        }
    }

    /// `sqrt(d_model)` when `scale_embedding`, else 1 (Marian `embed_scale`).
    pub fn embed_scale(&self) -> f32 {
        if self.scale_embedding {
            (self.d_model as f32).sqrt()
        } else {
            1.0
        }
    }

    /// Checks the values (as [`ModelConfig::from_json_str`] does) for a
    /// config built or edited in code; `path` names the file in the error.
    ///
    /// Errors: [`Error::Checkpoint`] naming `path` and every problem: zero
    /// or absurd sizes (above [`MAX_LAYERS`], [`MAX_D_MODEL`], ...), heads
    /// that do not divide `d_model`, token ids past the vocabulary, an
    /// unknown activation, pre-LN.
    pub fn check(&self, path: &Path) -> Result<()> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::checkpoint(path, problems.join("; ")))
        }
    }

    /// Every inconsistency of the values, one message each.
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let nonzero = [
            ("d_model", self.d_model),
            ("encoder_attention_heads", self.encoder_attention_heads),
            ("decoder_attention_heads", self.decoder_attention_heads),
            ("encoder_ffn_dim", self.encoder_ffn_dim),
            ("decoder_ffn_dim", self.decoder_ffn_dim),
            ("vocab_size", self.vocab_size),
            ("decoder_vocab_size", self.decoder_vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (name, v) in nonzero {
            if v == 0 {
                p.push(format!("{name} must be > 0"));
            }
        }
        let bounded = [
            ("encoder_layers", self.encoder_layers, MAX_LAYERS),
            ("decoder_layers", self.decoder_layers, MAX_LAYERS),
            ("d_model", self.d_model, MAX_D_MODEL),
            (
                "encoder_attention_heads",
                self.encoder_attention_heads,
                MAX_HEADS,
            ),
            (
                "decoder_attention_heads",
                self.decoder_attention_heads,
                MAX_HEADS,
            ),
            ("encoder_ffn_dim", self.encoder_ffn_dim, MAX_FFN_DIM),
            ("decoder_ffn_dim", self.decoder_ffn_dim, MAX_FFN_DIM),
            ("vocab_size", self.vocab_size, MAX_VOCAB_SIZE),
            (
                "decoder_vocab_size",
                self.decoder_vocab_size,
                MAX_VOCAB_SIZE,
            ),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                MAX_POSITION_EMBEDDINGS,
            ),
        ];
        for (name, v, max) in bounded {
            if v > max {
                p.push(format!(
                    "{name} {v} is out of range (at most {max} is accepted)"
                ));
            }
        }
        for (name, h) in [
            ("encoder_attention_heads", self.encoder_attention_heads),
            ("decoder_attention_heads", self.decoder_attention_heads),
        ] {
            if h > 0 && !self.d_model.is_multiple_of(h) {
                p.push(format!(
                    "d_model {} is not divisible by {name} {h}",
                    self.d_model
                ));
            }
        }
        let tv = self.target_vocab_size();
        let ids = [
            ("pad_token_id", self.pad_token_id),
            ("decoder_start_token_id", self.decoder_start_token_id),
        ];
        for (name, id) in ids
            .into_iter()
            .chain(self.eos_token_id.iter().map(|&i| ("eos_token_id", i)))
            .chain(
                self.forced_eos_token_id
                    .iter()
                    .map(|&i| ("forced_eos_token_id", i)),
            )
        {
            if id as usize >= tv {
                p.push(format!("{name} {id} >= target vocabulary size {tv}"));
            }
        }
        if self.eos_token_id.is_empty() {
            p.push("eos_token_id is empty".into());
        }
        if let Err(e) = self.activation() {
            p.push(e.to_string());
        }
        if self.normalize_before {
            p.push("normalize_before = true (pre-LN) is not supported; Marian is post-LN".into());
        }
        p
    }
}
