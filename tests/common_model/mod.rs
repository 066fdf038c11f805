//! Shared helpers of the model tests: a seeded RNG, small random Marian
//! checkpoints written with safetensors, and a float comparison that prints
//! index, got, expected and max |diff|.
#![allow(dead_code)] // each test crate uses a different subset

pub mod naive;

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use transformer_kernels::model::weights::{expected_tensors, Presence};
use transformer_kernels::model::ModelConfig;

/// The parsed `expected.json.gz` of a fixture model directory (gzipped to
/// keep tests/fixtures small; written by scripts/make_fixtures.py).
pub fn read_expected(dir: &Path) -> serde_json::Value {
    read_gz_json(&dir.join("expected.json.gz"))
}

/// Every Hugging Face fixture model directory (`tests/fixtures/models/*`
/// holding a `model.safetensors`), sorted; panics when there is none.
pub fn fixture_model_dirs() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models");
    let mut dirs: Vec<std::path::PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("no fixture models at {}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.safetensors").is_file())
        .collect();
    dirs.sort();
    assert!(
        !dirs.is_empty(),
        "{} holds no fixture model",
        root.display()
    );
    dirs
}

/// A fixture model on the CPU reference and on the CUDA backend (storage
/// `T`, decode-step replay `replay`) of `device`, with its generation config.
pub fn load_cpu_and_cuda<T: transformer_kernels::cuda::DeviceElement>(
    dir: &Path,
    device: &std::sync::Arc<transformer_kernels::cuda::Device>,
    replay: bool,
) -> (
    transformer_kernels::model::MarianModel<transformer_kernels::cpu::Cpu>,
    transformer_kernels::model::MarianModel<transformer_kernels::cuda::CudaBackend<T>>,
    transformer_kernels::model::GenerationConfig,
) {
    use transformer_kernels::model::{GenerationConfig, MarianModel};
    let cpu = MarianModel::load(transformer_kernels::cpu::Cpu, dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let backend =
        transformer_kernels::cuda::CudaBackend::<T>::new(device.clone()).with_step_graphs(replay);
    let dev = MarianModel::load(backend, dir)
        .unwrap_or_else(|e| panic!("{} on {device:?}: {e}", dir.display()));
    let gen = GenerationConfig::from_model_dir(dir, cpu.config()).unwrap();
    (cpu, dev, gen)
}

/// A JSON array of token ids.
pub fn json_ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

/// A gzipped JSON file (the fixtures' format).
pub fn read_gz_json(path: &Path) -> serde_json::Value {
    use std::io::Read;
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// SplitMix64: a tiny, well-known seeded generator (Steele et al., 2014).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-a, a).
    pub fn uniform(&mut self, a: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        (2.0 * u - 1.0) * a
    }
    pub fn vec(&mut self, n: usize, a: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(a)).collect()
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Shape of a tiny random Marian model; head_dim 6 (not a power of two).
#[derive(Clone, Debug)]
pub struct Tiny {
    pub d_model: usize,
    pub heads: usize,
    pub ffn: usize,
    pub encoder_layers: usize,
    pub decoder_layers: usize,
    pub vocab: usize,
    pub activation: &'static str,
    pub scale_embedding: bool,
}

impl Default for Tiny {
    fn default() -> Self {
        Tiny {
            d_model: 12,
            heads: 2,
            ffn: 20,
            encoder_layers: 2,
            decoder_layers: 2,
            vocab: 40,
            activation: "swish",
            scale_embedding: true,
        }
    }
}

pub const EOS: u32 = 0;

impl Tiny {
    pub fn pad(&self) -> u32 {
        self.vocab as u32 - 1
    }

    /// config.json text, opus-mt style (pad = decoder start = vocab - 1, eos = 0).
    pub fn config_json(&self) -> String {
        serde_json::json!({
            "model_type": "marian",
            "architectures": ["MarianMTModel"],
            "d_model": self.d_model,
            "encoder_layers": self.encoder_layers,
            "decoder_layers": self.decoder_layers,
            "encoder_attention_heads": self.heads,
            "decoder_attention_heads": self.heads,
            "encoder_ffn_dim": self.ffn,
            "decoder_ffn_dim": self.ffn,
            "activation_function": self.activation,
            "vocab_size": self.vocab,
            "pad_token_id": self.pad(),
            "eos_token_id": EOS,
            "decoder_start_token_id": self.pad(),
            "forced_eos_token_id": EOS,
            "scale_embedding": self.scale_embedding,
            "max_position_embeddings": 64,
            "normalize_before": false,
        })
        .to_string()
    }

    pub fn model_config(&self) -> ModelConfig {
        ModelConfig::from_json_str(&self.config_json(), Path::new("config.json"))
            .expect("tiny config parses")
    }

    /// Random tensors for every required tensor plus a non-zero
    /// final_logits_bias; every LayerNorm different (CASES D1, D2).
    pub fn random_tensors(&self, seed: u64) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
        let cfg = self.model_config();
        let mut rng = Rng::new(seed);
        let mut out = BTreeMap::new();
        for (name, shape, presence) in expected_tensors(&cfg) {
            if presence == Presence::Optional && name != "final_logits_bias" {
                continue;
            }
            let n: usize = shape.iter().product();
            let data = if name.ends_with("layer_norm.weight") {
                (0..n).map(|_| 1.0 + rng.uniform(0.4)).collect()
            } else if name.ends_with("layer_norm.bias")
                || name.ends_with("proj.bias")
                || name.ends_with("fc1.bias")
                || name.ends_with("fc2.bias")
            {
                rng.vec(n, 0.2)
            } else if name == "final_logits_bias" {
                rng.vec(n, 0.5)
            } else if name == "model.shared.weight" {
                rng.vec(n, 0.6)
            } else {
                let fan_in = *shape.last().unwrap_or(&1) as f32;
                rng.vec(n, 1.7 / fan_in.sqrt())
            };
            out.insert(name, (shape, data));
        }
        out
    }

    /// Writes config.json and model.safetensors (f32) of a random model into `dir`.
    pub fn write(&self, dir: &Path, seed: u64) {
        let tensors = self.random_tensors(seed);
        write_model(dir, &self.config_json(), &tensors, Dtype::F32);
    }
}

/// Writes `config.json` and `model.safetensors` with `dtype` storage.
pub fn write_model(
    dir: &Path,
    config_json: &str,
    tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    dtype: Dtype,
) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), config_json).unwrap();
    write_safetensors(&dir.join("model.safetensors"), tensors, dtype);
}

/// Serialises f32 tensors as `dtype` (F32, F16 or BF16).
pub fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    dtype: Dtype,
) {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, (shape, data))| {
            let b: Vec<u8> = match dtype {
                Dtype::F32 => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                Dtype::F16 => data
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
                Dtype::BF16 => data
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
                other => panic!("unsupported test dtype {other:?}"),
            };
            (name.clone(), shape.clone(), b)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(n, s, b)| (n.clone(), TensorView::new(dtype, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, &None, path).unwrap();
}

/// Asserts `|got - expected| <= abs + rel * |expected|` element-wise; NaN
/// never passes. The message names the first failing index, got, expected
/// and the max |diff| over all elements.
pub fn assert_close(what: &str, got: &[f32], expected: &[f32], abs: f32, rel: f32) {
    assert_eq!(
        got.len(),
        expected.len(),
        "{what}: length {} vs expected {}",
        got.len(),
        expected.len()
    );
    let mut max_diff = 0.0f32;
    let mut first_bad = None;
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        let diff = (g - e).abs();
        let ok = diff <= abs + rel * e.abs() || (g == e); // g == e covers equal infinities
        if diff.is_finite() {
            max_diff = max_diff.max(diff);
        }
        if (!ok || g.is_nan() || e.is_nan()) && first_bad.is_none() {
            first_bad = Some((i, g, e));
        }
    }
    if let Some((i, g, e)) = first_bad {
        panic!("{what}: index {i}: got {g}, expected {e}; max |diff| {max_diff} (tolerance {abs} + {rel}·|expected|)");
    }
}
