//! `model.safetensors` of a Marian checkpoint: read (f32, f16 or bf16,
//! widened to f32 on the host, the stored dtype recorded), checked against
//! `config.json`, and handed to a backend in the stored dtype.
//!
//! Tensor names and shapes are Hugging Face `MarianMTModel`'s
//! (`model.encoder.layers.N.self_attn.q_proj.weight` `[d_model, d_model]`, ...;
//! linear weights `[out_features, in_features]`). Every expected tensor is
//! checked before use; missing, unexpected, mis-shaped or mis-typed tensors
//! are reported together in one [`Error::Checkpoint`].
//!
//! Optional tensors, as Hugging Face treats them: `final_logits_bias`
//! (zeros when absent), the sinusoidal tables `model.{encoder,decoder}.embed_positions.weight`
//! (accepted when their shape fits, never used: positions are computed), and
//! the tied copies `model.encoder.embed_tokens.weight`,
//! `model.decoder.embed_tokens.weight`, `lm_head.weight` (accepted when their
//! shape fits; the tie makes `model.shared.weight` the one used).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use safetensors::{Dtype, SafeTensors};

use crate::dtype::DType;
use crate::error::{fmt_shape, Error, Result};
use crate::model::backend::Backend;
use crate::model::config::{ModelConfig, MAX_LAYERS};

/// A tensor read from the checkpoint, widened to f32 (exact for f16 and bf16).
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Shape as stored.
    pub shape: Vec<usize>,
    /// Row-major f32 elements.
    pub data: Vec<f32>,
    /// The dtype the checkpoint stores the tensor in; [`ModelWeights::upload`]
    /// hands it to [`Backend::upload`] so that a GPU backend can keep 16-bit
    /// weights 16-bit.
    pub dtype: DType,
}

/// Reads every tensor of a safetensors file, widening f16 / bf16 to f32.
///
/// Errors: [`Error::Io`] if the file cannot be read; [`Error::Checkpoint`]
/// naming the file for a truncated or corrupt file, a tensor of another
/// dtype, or a tensor holding NaN or infinite values (all such tensors listed
/// by name in one message).
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, HostTensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| {
        Error::checkpoint(
            path,
            format!("not a valid safetensors file (truncated or corrupt?): {e}"),
        )
    })?;
    let mut out = BTreeMap::new();
    let mut bad = Vec::new();
    let mut non_finite = Vec::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let raw = view.data();
        let (data, dtype): (Vec<f32>, DType) = match view.dtype() {
            Dtype::F32 => (
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                DType::F32,
            ),
            Dtype::F16 => (
                raw.chunks_exact(2)
                    .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                    .collect(),
                DType::F16,
            ),
            Dtype::BF16 => (
                raw.chunks_exact(2)
                    .map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                    .collect(),
                DType::BF16,
            ),
            other => {
                bad.push(format!(
                    "{name} {}: dtype {other:?} (expected F32, F16 or BF16)",
                    fmt_shape(&shape)
                ));
                continue;
            }
        };
        // A NaN or infinite weight makes every score NaN and the search's
        // output meaningless: reject it here, where the tensor is known.
        if let Some((i, v)) = data.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            let count = data.iter().filter(|v| !v.is_finite()).count();
            non_finite.push(format!(
                "{name} {}: {count} non-finite value(s), the first {v} at flat index {i}",
                fmt_shape(&shape)
            ));
        }
        out.insert(name, HostTensor { shape, data, dtype });
    }
    if !bad.is_empty() {
        return Err(Error::checkpoint(
            path,
            format!("unsupported tensor dtypes: {}", bad.join("; ")),
        ));
    }
    if !non_finite.is_empty() {
        return Err(Error::checkpoint(
            path,
            format!(
                "{} tensor(s) hold NaN or infinite values: {}",
                non_finite.len(),
                non_finite.join("; ")
            ),
        ));
    }
    Ok(out)
}

/// Whether a tensor must be present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// Missing is an error.
    Required,
    /// May be absent; checked when present.
    Optional,
}

/// The tensors a checkpoint for `cfg` must (or may) contain, with their shapes.
pub fn expected_tensors(cfg: &ModelConfig) -> Vec<(String, Vec<usize>, Presence)> {
    use Presence::{Optional, Required};
    let d = cfg.d_model;
    let tv = cfg.target_vocab_size();
    let mut e: Vec<(String, Vec<usize>, Presence)> = Vec::new();
    let shared = cfg.share_encoder_decoder_embeddings;
    e.push((
        "model.shared.weight".into(),
        vec![cfg.vocab_size, d],
        if shared { Required } else { Optional },
    ));
    e.push((
        "model.encoder.embed_tokens.weight".into(),
        vec![cfg.vocab_size, d],
        if shared { Optional } else { Required },
    ));
    e.push((
        "model.decoder.embed_tokens.weight".into(),
        vec![tv, d],
        if shared { Optional } else { Required },
    ));
    e.push((
        "lm_head.weight".into(),
        vec![tv, d],
        if cfg.tie_word_embeddings {
            Optional
        } else {
            Required
        },
    ));
    e.push(("final_logits_bias".into(), vec![1, tv], Optional));
    for side in ["encoder", "decoder"] {
        e.push((
            format!("model.{side}.embed_positions.weight"),
            vec![cfg.max_position_embeddings, d],
            Optional,
        ));
    }
    let attn = |e: &mut Vec<_>, p: &str| {
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            e.push((format!("{p}.{proj}.weight"), vec![d, d], Required));
            e.push((format!("{p}.{proj}.bias"), vec![d], Required));
        }
    };
    let norm = |e: &mut Vec<_>, p: &str| {
        e.push((format!("{p}.weight"), vec![d], Required));
        e.push((format!("{p}.bias"), vec![d], Required));
    };
    let ffn = |e: &mut Vec<_>, p: &str, f: usize| {
        e.push((format!("{p}.fc1.weight"), vec![f, d], Required));
        e.push((format!("{p}.fc1.bias"), vec![f], Required));
        e.push((format!("{p}.fc2.weight"), vec![d, f], Required));
        e.push((format!("{p}.fc2.bias"), vec![d], Required));
    };
    for i in 0..cfg.encoder_layers {
        let p = format!("model.encoder.layers.{i}");
        attn(&mut e, &format!("{p}.self_attn"));
        norm(&mut e, &format!("{p}.self_attn_layer_norm"));
        ffn(&mut e, &p, cfg.encoder_ffn_dim);
        norm(&mut e, &format!("{p}.final_layer_norm"));
    }
    for i in 0..cfg.decoder_layers {
        let p = format!("model.decoder.layers.{i}");
        attn(&mut e, &format!("{p}.self_attn"));
        norm(&mut e, &format!("{p}.self_attn_layer_norm"));
        attn(&mut e, &format!("{p}.encoder_attn"));
        norm(&mut e, &format!("{p}.encoder_attn_layer_norm"));
        ffn(&mut e, &p, cfg.decoder_ffn_dim);
        norm(&mut e, &format!("{p}.final_layer_norm"));
    }
    e
}

/// Checks `tensors` against [`expected_tensors`]: one [`Error::Checkpoint`]
/// naming `path` and listing every missing, unexpected and mis-shaped tensor
/// by name and shape.
///
/// A layer count of `cfg` above [`MAX_LAYERS`] (possible only in a config
/// built in code; config.json is bounded at load) that the file does not
/// hold is reported before the expected list (about 30 names per layer) is
/// built, so that an absurd `encoder_layers` costs nothing.
pub fn check_tensors(
    path: &Path,
    cfg: &ModelConfig,
    tensors: &BTreeMap<String, HostTensor>,
) -> Result<()> {
    for (side, layers) in [
        ("encoder", cfg.encoder_layers),
        ("decoder", cfg.decoder_layers),
    ] {
        let held = layers_in_file(tensors, side);
        // Up to MAX_LAYERS the full listing below (every missing tensor by
        // name) is cheap and more useful; past it, only the counts.
        if layers > held && layers > MAX_LAYERS {
            return Err(Error::checkpoint(
                path,
                format!(
                    "checkpoint does not match config.json: config.json has {side}_layers = \
                     {layers} but the file holds {held} {side} layer(s)"
                ),
            ));
        }
    }
    let expected = expected_tensors(cfg);
    let mut missing = Vec::new();
    let mut misshaped = Vec::new();
    for (name, shape, presence) in &expected {
        match tensors.get(name) {
            None if *presence == Presence::Required => {
                missing.push(format!("{name} {}", fmt_shape(shape)))
            }
            None => {}
            Some(t) if &t.shape != shape => misshaped.push(format!(
                "{name}: expected {}, got {}",
                fmt_shape(shape),
                fmt_shape(&t.shape)
            )),
            Some(_) => {}
        }
    }
    let known: std::collections::HashSet<&str> =
        expected.iter().map(|(n, _, _)| n.as_str()).collect();
    let unexpected: Vec<String> = tensors
        .iter()
        .filter(|(n, _)| !known.contains(n.as_str()))
        .map(|(n, t)| format!("{n} {}", fmt_shape(&t.shape)))
        .collect();
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "{} missing tensor(s): {}",
            missing.len(),
            missing.join(", ")
        ));
    }
    if !misshaped.is_empty() {
        parts.push(format!(
            "{} mis-shaped tensor(s): {}",
            misshaped.len(),
            misshaped.join(", ")
        ));
    }
    if !unexpected.is_empty() {
        parts.push(format!(
            "{} unexpected tensor(s): {}",
            unexpected.len(),
            unexpected.join(", ")
        ));
    }
    if parts.is_empty() {
        Ok(())
    } else {
        Err(Error::checkpoint(
            path,
            format!(
                "checkpoint does not match config.json: {}",
                parts.join("; ")
            ),
        ))
    }
}

/// One more than the highest `N` of the `model.{side}.layers.N.*` tensors (0 when none).
fn layers_in_file(tensors: &BTreeMap<String, HostTensor>, side: &str) -> usize {
    let prefix = format!("model.{side}.layers.");
    tensors
        .keys()
        .filter_map(|name| {
            name.strip_prefix(&prefix)?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .map(|i| i.saturating_add(1))
        .max()
        .unwrap_or(0)
}

/// A self-attention sublayer: q, k and v fused into one projection (one
/// GEMM per sublayer; the attention reads q, k and v as column views of its
/// output), then `out_proj`.
pub struct SelfAttentionWeights<T> {
    /// `q_proj`, `k_proj`, `v_proj` weights concatenated along
    /// out_features, `[3·d_model, d_model]`, and their biases, `[3·d_model]`:
    /// output columns `0..d` are q, `d..2d` k, `2d..3d` v.
    pub qkv: (T, T),
    /// `out_proj.weight` `[d_model, d_model]`, `out_proj.bias` `[d_model]`.
    pub out: (T, T),
}

/// A cross-attention sublayer: `q_proj` on the decoder state; `k_proj` and
/// `v_proj` fused into one projection of the encoder memory (applied once
/// per batch); `out_proj`.
pub struct CrossAttentionWeights<T> {
    /// `q_proj.weight` `[d_model, d_model]`, `q_proj.bias` `[d_model]`.
    pub q: (T, T),
    /// `k_proj`, `v_proj` concatenated along out_features, `[2·d_model,
    /// d_model]` and `[2·d_model]`: output columns `0..d` are k, `d..2d` v.
    pub kv: (T, T),
    /// `out_proj.weight` `[d_model, d_model]`, `out_proj.bias` `[d_model]`.
    pub out: (T, T),
}

/// A LayerNorm's `weight` (gamma) and `bias` (beta), `[d_model]` each.
pub struct NormWeights<T> {
    /// gamma.
    pub gamma: T,
    /// beta.
    pub beta: T,
}

/// The feed-forward sublayer: `fc1` `[ffn, d_model]` + `[ffn]`, `fc2` `[d_model, ffn]` + `[d_model]`.
pub struct FfnWeights<T> {
    /// `fc1.weight`, `fc1.bias`.
    pub fc1: (T, T),
    /// `fc2.weight`, `fc2.bias`.
    pub fc2: (T, T),
}

/// One encoder layer (post-LN).
pub struct EncoderLayerWeights<T> {
    /// Self-attention.
    pub self_attn: SelfAttentionWeights<T>,
    /// Norm after self-attention.
    pub self_attn_layer_norm: NormWeights<T>,
    /// Feed-forward.
    pub ffn: FfnWeights<T>,
    /// Norm after the FFN.
    pub final_layer_norm: NormWeights<T>,
}

/// One decoder layer (post-LN), each sublayer with its own norm.
pub struct DecoderLayerWeights<T> {
    /// Causal self-attention.
    pub self_attn: SelfAttentionWeights<T>,
    /// Norm after self-attention.
    pub self_attn_layer_norm: NormWeights<T>,
    /// Cross-attention over the encoder output.
    pub encoder_attn: CrossAttentionWeights<T>,
    /// Norm after cross-attention.
    pub encoder_attn_layer_norm: NormWeights<T>,
    /// Feed-forward.
    pub ffn: FfnWeights<T>,
    /// Norm after the FFN.
    pub final_layer_norm: NormWeights<T>,
}

/// All weights of a `MarianMTModel`, on a backend.
pub struct ModelWeights<T> {
    /// Encoder token embedding `[vocab, d_model]`.
    pub encoder_embed: Arc<T>,
    /// Decoder token embedding `[target_vocab, d_model]`.
    pub decoder_embed: Arc<T>,
    /// Output projection `[target_vocab, d_model]` (tied: the same tensor as the embedding).
    pub lm_head: Arc<T>,
    /// `final_logits_bias` as `[target_vocab]`.
    pub final_logits_bias: T,
    /// Encoder layers.
    pub encoder: Vec<EncoderLayerWeights<T>>,
    /// Decoder layers.
    pub decoder: Vec<DecoderLayerWeights<T>>,
}

impl<T> ModelWeights<T> {
    /// Uploads checked host tensors (see [`check_tensors`]) to `backend`,
    /// each in its stored dtype ([`HostTensor::dtype`]); an absent
    /// `final_logits_bias` is zeros in the dtype of the output projection.
    ///
    /// Errors: [`Error::Checkpoint`] naming `path` if a tensor is missing
    /// (call [`check_tensors`] first for the full list), or the backend's
    /// upload error.
    pub fn upload<B: Backend<Tensor = T>>(
        backend: &B,
        path: &Path,
        cfg: &ModelConfig,
        mut t: BTreeMap<String, HostTensor>,
    ) -> Result<Self> {
        let bias_host = t.remove("final_logits_bias");
        let shared = cfg.share_encoder_decoder_embeddings;
        let head_name = if cfg.tie_word_embeddings {
            if shared {
                "model.shared.weight"
            } else {
                "model.decoder.embed_tokens.weight"
            }
        } else {
            "lm_head.weight"
        };
        let head_dtype = t.get(head_name).map_or(DType::F32, |h| h.dtype);
        let mut take_host = |name: &str| -> Result<HostTensor> {
            t.remove(name)
                .ok_or_else(|| Error::checkpoint(path, format!("missing tensor {name}")))
        };
        let up = |h: HostTensor| backend.upload(h.data, &h.shape, h.dtype);
        let up_weight = |h: HostTensor| backend.upload_weight(h.data, &h.shape, h.dtype);
        let mut take = Take {
            host: &mut take_host,
            upload: &up,
            upload_weight: &up_weight,
        };
        let (encoder_embed, decoder_embed) = if shared {
            let s = Arc::new(take.one("model.shared.weight")?);
            (s.clone(), s)
        } else {
            (
                Arc::new(take.one("model.encoder.embed_tokens.weight")?),
                Arc::new(take.one("model.decoder.embed_tokens.weight")?),
            )
        };
        let lm_head = if cfg.tie_word_embeddings {
            decoder_embed.clone()
        } else {
            let h = (take.host)("lm_head.weight")?;
            Arc::new((take.upload_weight)(h)?)
        };
        let tv = cfg.target_vocab_size();
        let (bias_data, bias_dtype) = match bias_host {
            Some(h) => (h.data, h.dtype),
            None => (vec![0.0; tv], head_dtype),
        };
        let final_logits_bias = backend.upload(bias_data, &[tv], bias_dtype)?;
        let mut encoder = Vec::with_capacity(cfg.encoder_layers);
        for i in 0..cfg.encoder_layers {
            let p = format!("model.encoder.layers.{i}");
            encoder.push(EncoderLayerWeights {
                self_attn: self_attn(&mut take, &format!("{p}.self_attn"))?,
                self_attn_layer_norm: norm(&mut take, &format!("{p}.self_attn_layer_norm"))?,
                ffn: ffn(&mut take, &p)?,
                final_layer_norm: norm(&mut take, &format!("{p}.final_layer_norm"))?,
            });
        }
        let mut decoder = Vec::with_capacity(cfg.decoder_layers);
        for i in 0..cfg.decoder_layers {
            let p = format!("model.decoder.layers.{i}");
            decoder.push(DecoderLayerWeights {
                self_attn: self_attn(&mut take, &format!("{p}.self_attn"))?,
                self_attn_layer_norm: norm(&mut take, &format!("{p}.self_attn_layer_norm"))?,
                encoder_attn: cross_attn(&mut take, &format!("{p}.encoder_attn"))?,
                encoder_attn_layer_norm: norm(&mut take, &format!("{p}.encoder_attn_layer_norm"))?,
                ffn: ffn(&mut take, &p)?,
                final_layer_norm: norm(&mut take, &format!("{p}.final_layer_norm"))?,
            });
        }
        Ok(ModelWeights {
            encoder_embed,
            decoder_embed,
            lm_head,
            final_logits_bias,
            encoder,
            decoder,
        })
    }
}

/// Where a fused projection's parts come from: `(weight, bias)` names.
fn fused_names(p: &str, projs: &[&str]) -> Vec<(String, String)> {
    projs
        .iter()
        .map(|proj| (format!("{p}.{proj}.weight"), format!("{p}.{proj}.bias")))
        .collect()
}

/// Host tensors concatenated along their first dimension (out_features of
/// `[n, k]` weights, or `[n]` biases): row-major, so the data are appended.
/// The dtype is the parts' own when they agree, else f32 (exact widening).
fn concat_rows(parts: Vec<HostTensor>) -> HostTensor {
    let dtype = match parts.first() {
        Some(first) if parts.iter().all(|h| h.dtype == first.dtype) => first.dtype,
        _ => DType::F32,
    };
    let mut shape = parts.first().map_or_else(Vec::new, |h| h.shape.clone());
    if let Some(n) = shape.first_mut() {
        *n = parts
            .iter()
            .map(|h| h.shape.first().copied().unwrap_or(0))
            .sum();
    }
    let data = parts.into_iter().flat_map(|h| h.data).collect();
    HostTensor { shape, data, dtype }
}

/// A fused projection: the weights and the biases of `projs`, each
/// concatenated (see [`concat_rows`]).
fn fused<T>(take: &mut Take<'_, T>, p: &str, projs: &[&str]) -> Result<(T, T)> {
    let mut ws = Vec::new();
    let mut bs = Vec::new();
    for (w, b) in fused_names(p, projs) {
        ws.push((take.host)(&w)?);
        bs.push((take.host)(&b)?);
    }
    Ok((
        (take.upload_weight)(concat_rows(ws))?,
        (take.upload)(concat_rows(bs))?,
    ))
}

fn self_attn<T>(take: &mut Take<'_, T>, p: &str) -> Result<SelfAttentionWeights<T>> {
    Ok(SelfAttentionWeights {
        qkv: fused(take, p, &["q_proj", "k_proj", "v_proj"])?,
        out: fused(take, p, &["out_proj"])?,
    })
}

fn cross_attn<T>(take: &mut Take<'_, T>, p: &str) -> Result<CrossAttentionWeights<T>> {
    Ok(CrossAttentionWeights {
        q: fused(take, p, &["q_proj"])?,
        kv: fused(take, p, &["k_proj", "v_proj"])?,
        out: fused(take, p, &["out_proj"])?,
    })
}

/// Takes checkpoint tensors by name, as host tensors or uploaded (as a
/// plain tensor, or as a linear layer's weight: [`Backend::upload_weight`]).
struct Take<'a, T> {
    host: &'a mut dyn FnMut(&str) -> Result<HostTensor>,
    upload: &'a dyn Fn(HostTensor) -> Result<T>,
    upload_weight: &'a dyn Fn(HostTensor) -> Result<T>,
}

impl<T> Take<'_, T> {
    fn one(&mut self, name: &str) -> Result<T> {
        let h = (self.host)(name)?;
        (self.upload)(h)
    }
}

fn norm<T>(take: &mut Take<'_, T>, p: &str) -> Result<NormWeights<T>> {
    Ok(NormWeights {
        gamma: take.one(&format!("{p}.weight"))?,
        beta: take.one(&format!("{p}.bias"))?,
    })
}

fn ffn<T>(take: &mut Take<'_, T>, p: &str) -> Result<FfnWeights<T>> {
    Ok(FfnWeights {
        fc1: fused(take, p, &["fc1"])?,
        fc2: fused(take, p, &["fc2"])?,
    })
}

/// The storage dtype of a safetensors checkpoint, read from its header only
/// (the first `8 + header length` bytes, safetensors format: a little-endian
/// u64 length, then a JSON object of `name: {dtype, shape, data_offsets}`):
/// the dtype of `model.shared.weight` when present, else of the first
/// tensor by name. Used to choose a device backend's storage dtype before
/// the weights are loaded.
///
/// Errors: [`Error::Io`] if the file cannot be read; [`Error::Checkpoint`]
/// for a truncated or malformed header, no tensor, or a dtype other than
/// F32, F16 or BF16.
pub fn checkpoint_dtype(path: &Path) -> Result<DType> {
    use std::io::Read;
    /// Headers past this are not a Marian checkpoint's (a few KB each).
    const MAX_HEADER: u64 = 100 << 20;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|e| Error::checkpoint(path, format!("no safetensors header: {e}")))?;
    let n = u64::from_le_bytes(len);
    if n == 0 || n > MAX_HEADER {
        return Err(Error::checkpoint(
            path,
            format!("safetensors header length {n} is not in 1..={MAX_HEADER}"),
        ));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)
        .map_err(|e| Error::checkpoint(path, format!("truncated safetensors header: {e}")))?;
    let json: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| Error::checkpoint(path, format!("safetensors header is not JSON: {e}")))?;
    let obj = json
        .as_object()
        .ok_or_else(|| Error::checkpoint(path, "safetensors header is not a JSON object"))?;
    let entry = obj
        .get("model.shared.weight")
        .or_else(|| {
            obj.iter()
                .find(|(k, _)| k.as_str() != "__metadata__")
                .map(|(_, v)| v)
        })
        .ok_or_else(|| Error::checkpoint(path, "the checkpoint holds no tensor"))?;
    match entry.get("dtype").and_then(serde_json::Value::as_str) {
        Some("F32") => Ok(DType::F32),
        Some("F16") => Ok(DType::F16),
        Some("BF16") => Ok(DType::BF16),
        other => Err(Error::checkpoint(
            path,
            format!("tensor dtype {other:?} (expected F32, F16 or BF16)"),
        )),
    }
}
