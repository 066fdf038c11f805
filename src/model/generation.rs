//! Generation settings, merged as Hugging Face transformers 5.x does it:
//! `generation_config.json` when the checkpoint has one, otherwise the
//! generation fields of `config.json`; then the global defaults of
//! `GenerationConfig._get_default_generation_params()` for what is still
//! unset (max_length 20, num_beams 1, length_penalty 1.0, early_stopping
//! false, num_return_sequences 1, min_length 0). Token ids absent from both
//! files fall back to the model config (MarianConfig's defaults).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::model::config::{IdOrList, ModelConfig};

/// Largest beam width accepted. Memory and time grow linearly with the beam
/// (a KV cache and `num_beams x vocab` scores per source); translation uses
/// 4 to 12 and gains nothing past a few dozen, so 1024 only stops a typo or a
/// hostile config from exhausting memory.
pub const MAX_NUM_BEAMS: usize = 1024;

/// When beam search stops (Hugging Face `early_stopping`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EarlyStopping {
    /// `false` (the default): stop when the best running beam, scored at the
    /// current length, cannot beat the worst finished hypothesis.
    Heuristic,
    /// `true`: stop as soon as `num_beams` hypotheses are finished.
    WhenFull,
    /// `"never"`: canonical beam search; with a positive length penalty the
    /// bound uses `max_length`.
    Never,
}

/// The settings of `generate`; public fields so that a CLI can override them.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationConfig {
    /// Beam width; 1 is greedy search.
    pub num_beams: usize,
    /// Maximum length of the decoder sequence *including* the
    /// decoder_start token (Hugging Face semantics): at most `max_length - 1`
    /// tokens are generated. Ignored when `max_new_tokens` is set.
    pub max_length: usize,
    /// When set, the number of generated tokens allowed (takes precedence
    /// over `max_length`: the effective max_length is `max_new_tokens + 1`).
    pub max_new_tokens: Option<usize>,
    /// EOS is forbidden while the sequence (with the start token) is shorter than this.
    pub min_length: usize,
    /// EOS is forbidden while fewer than this many tokens were generated.
    pub min_new_tokens: Option<usize>,
    /// Finished beams score `sum_logprobs / generated_len^length_penalty`.
    pub length_penalty: f32,
    /// Beam stopping rule.
    pub early_stopping: EarlyStopping,
    /// Token sequences never generated (single ids are masked always, longer
    /// ones when their prefix ends the sequence). EOS alone is never a bad word.
    pub bad_words_ids: Vec<Vec<u32>>,
    /// Forced as the last token when the sequence reaches `max_length - 1`
    /// (empty: none).
    pub forced_eos_token_id: Vec<u32>,
    /// Size of the n-best list returned per source (`<= num_beams`).
    pub num_return_sequences: usize,
    /// The first decoder input (the pad id for opus-mt).
    pub decoder_start_token_id: u32,
    /// End-of-sequence ids.
    pub eos_token_id: Vec<u32>,
    /// Padding id; never generated (masked whatever `bad_words_ids` says,
    /// unless it is also an EOS id).
    pub pad_token_id: u32,
}

/// The generation fields of either JSON file, as written.
#[derive(Deserialize, Default)]
struct RawGeneration {
    num_beams: Option<usize>,
    max_length: Option<usize>,
    max_new_tokens: Option<usize>,
    min_length: Option<usize>,
    min_new_tokens: Option<usize>,
    length_penalty: Option<f32>,
    early_stopping: Option<serde_json::Value>,
    bad_words_ids: Option<Vec<Vec<u32>>>,
    forced_eos_token_id: Option<IdOrList>,
    num_return_sequences: Option<usize>,
    decoder_start_token_id: Option<u32>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<IdOrList>,
    pad_token_id: Option<u32>,
}

impl GenerationConfig {
    /// Hugging Face's global defaults with the model's token ids.
    pub fn defaults_for(cfg: &ModelConfig) -> Self {
        GenerationConfig {
            num_beams: 1,
            max_length: 20,
            max_new_tokens: None,
            min_length: 0,
            min_new_tokens: None,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::Heuristic,
            bad_words_ids: Vec::new(),
            forced_eos_token_id: Vec::new(),
            num_return_sequences: 1,
            decoder_start_token_id: cfg.decoder_start_token_id,
            eos_token_id: cfg.eos_token_id.clone(),
            pad_token_id: cfg.pad_token_id,
        }
    }

    /// Reads `dir/generation_config.json` if present, else the generation
    /// fields of `dir/config.json`, over the defaults (see the module docs).
    ///
    /// Errors: [`Error::Io`] / [`Error::Json`] naming the file;
    /// [`Error::Checkpoint`] for an invalid `early_stopping` value or a
    /// `generation_config.json` that is not a regular file (a directory).
    pub fn from_model_dir(dir: &Path, cfg: &ModelConfig) -> Result<Self> {
        let gen_path = dir.join("generation_config.json");
        // Absent: use config.json. Present but not a file (a directory, a
        // dangling link): an error, never silently the other file's settings.
        let path = match std::fs::metadata(&gen_path) {
            Ok(m) if m.is_file() => gen_path,
            Ok(_) => {
                return Err(Error::checkpoint(
                    &gen_path,
                    "generation_config.json exists but is not a regular file",
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if gen_path.is_symlink() {
                    return Err(Error::io(&gen_path, e));
                }
                dir.join("config.json")
            }
            Err(e) => return Err(Error::io(&gen_path, e)),
        };
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        Self::from_json_str(&text, &path, cfg)
    }

    /// Parses generation fields from JSON text; `path` names the file in errors.
    pub fn from_json_str(text: &str, path: &Path, cfg: &ModelConfig) -> Result<Self> {
        let raw: RawGeneration = serde_json::from_str(text).map_err(|source| Error::Json {
            path: PathBuf::from(path),
            source,
        })?;
        let mut g = Self::defaults_for(cfg);
        let early_stopping = match raw.early_stopping {
            None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false)) => {
                EarlyStopping::Heuristic
            }
            Some(serde_json::Value::Bool(true)) => EarlyStopping::WhenFull,
            Some(serde_json::Value::String(s)) if s == "never" => EarlyStopping::Never,
            Some(other) => {
                return Err(Error::checkpoint(
                    path,
                    format!("early_stopping must be true, false or \"never\", got {other}"),
                ))
            }
        };
        g.early_stopping = early_stopping;
        g.num_beams = raw.num_beams.unwrap_or(g.num_beams);
        g.max_length = raw.max_length.unwrap_or(g.max_length);
        g.max_new_tokens = raw.max_new_tokens;
        g.min_length = raw.min_length.unwrap_or(g.min_length);
        g.min_new_tokens = raw.min_new_tokens;
        g.length_penalty = raw.length_penalty.unwrap_or(g.length_penalty);
        g.bad_words_ids = raw.bad_words_ids.unwrap_or_default();
        g.forced_eos_token_id = raw
            .forced_eos_token_id
            .map(IdOrList::into_vec)
            .unwrap_or_default();
        g.num_return_sequences = raw.num_return_sequences.unwrap_or(g.num_return_sequences);
        // Hugging Face falls back to bos_token_id for an encoder-decoder's start token.
        g.decoder_start_token_id = raw
            .decoder_start_token_id
            .or(raw.bos_token_id)
            .unwrap_or(g.decoder_start_token_id);
        g.eos_token_id = raw
            .eos_token_id
            .map(IdOrList::into_vec)
            .unwrap_or(g.eos_token_id);
        g.pad_token_id = raw.pad_token_id.unwrap_or(g.pad_token_id);
        Ok(g)
    }

    /// The effective maximum sequence length including the start token:
    /// `max_new_tokens + 1` when `max_new_tokens` is set, else `max_length`.
    pub fn effective_max_length(&self) -> usize {
        self.max_new_tokens
            .map_or(self.max_length, |n| n.saturating_add(1))
    }

    /// Checks the settings against each other and the vocabulary.
    ///
    /// Errors: [`Error::InvalidArgument`] for `num_beams` of 0, above
    /// [`MAX_NUM_BEAMS`] or above `vocab`, `num_return_sequences` of 0 or
    /// above `num_beams` (as Hugging Face), an effective
    /// max_length below 2 (nothing could be generated), or a token id
    /// `>= vocab`.
    pub fn validate(&self, vocab: usize) -> Result<()> {
        let op = "generate";
        if self.num_beams == 0 {
            return Err(Error::invalid(op, "num_beams must be >= 1"));
        }
        if self.num_beams > MAX_NUM_BEAMS {
            return Err(Error::invalid(
                op,
                format!(
                    "num_beams {} is above the limit of {MAX_NUM_BEAMS}",
                    self.num_beams
                ),
            ));
        }
        // More beams than tokens cannot all be distinct continuations.
        if self.num_beams > vocab {
            return Err(Error::invalid(
                op,
                format!(
                    "num_beams {} is larger than the vocabulary size {vocab}",
                    self.num_beams
                ),
            ));
        }
        // Hugging Face raises the same (`num_return_sequences` has to be
        // smaller or equal to `num_beams`).
        if self.num_return_sequences == 0 || self.num_return_sequences > self.num_beams {
            return Err(Error::invalid(
                op,
                format!(
                    "num_return_sequences {} must be in 1..=num_beams ({})",
                    self.num_return_sequences, self.num_beams
                ),
            ));
        }
        if self.effective_max_length() < 2 {
            return Err(Error::invalid(
                op,
                format!(
                    "max_length {} leaves no room to generate (it counts the decoder start token)",
                    self.effective_max_length()
                ),
            ));
        }
        if self.eos_token_id.is_empty() {
            return Err(Error::invalid(op, "eos_token_id is empty"));
        }
        let ids = [self.decoder_start_token_id, self.pad_token_id]
            .into_iter()
            .chain(self.eos_token_id.iter().copied())
            .chain(self.forced_eos_token_id.iter().copied())
            .chain(self.bad_words_ids.iter().flatten().copied());
        for id in ids {
            if id as usize >= vocab {
                return Err(Error::invalid(
                    op,
                    format!("token id {id} >= vocabulary size {vocab}"),
                ));
            }
        }
        if self.bad_words_ids.iter().any(Vec::is_empty) {
            return Err(Error::invalid(
                op,
                "bad_words_ids contains an empty sequence",
            ));
        }
        Ok(())
    }
}
