//! [`Translator`]: a Marian checkpoint, its tokenizer and its generation
//! settings on one backend, translating batches of sentences: the library
//! face of `transformer-kernels translate` for engines (the C API's
//! `tk_translate_batch` is a thin layer over it).
//!
//! Sentences are tokenized, sorted by length into batches of
//! `batch_size` (less padding), generated (greedy or beam search) and
//! detokenized; results come back in input order. A blank sentence gives ""
//! without running the model (CASES.md E1).

use std::path::Path;

use crate::cpu::Cpu;
use crate::cuda::{CudaBackend, Device};
use crate::error::{Error, Result};
use crate::fast_cpu::FastCpu;
use crate::model::weights::checkpoint_dtype;
use crate::model::{Backend, GenerationConfig, MarianModel};
use crate::tokenizer::MarianTokenizer;
use crate::DType;

/// Where a [`Translator`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TranslatorDevice {
    /// The fast CPU backend (f32; [`crate::fast_cpu::FastCpu`]) with this
    /// many worker threads (0: every core).
    Cpu(usize),
    /// The plain CPU reference (f32; the oracle, several times slower).
    Reference,
    /// GPU `ordinal` through the CUDA backend.
    Cuda(usize),
    /// The CUDA backend on the SIMT emulator (slow; small models).
    Emulator,
    /// GPU 0 when one can run the kernels, else the CPU.
    Auto,
}

impl std::str::FromStr for TranslatorDevice {
    type Err = Error;

    /// `cpu` (every core), `cpu:THREADS`, `reference`, `cuda`, `cuda:N`,
    /// `emu`, `auto`.
    fn from_str(s: &str) -> Result<Self> {
        if let Some(t) = s.strip_prefix("cpu:") {
            return t.parse().map(TranslatorDevice::Cpu).map_err(|_| {
                Error::invalid(
                    "translator",
                    format!("device {s:?}: cpu:THREADS needs a number"),
                )
            });
        }
        match s {
            "cpu" => Ok(TranslatorDevice::Cpu(0)),
            "reference" => Ok(TranslatorDevice::Reference),
            "cuda" | "gpu" => Ok(TranslatorDevice::Cuda(0)),
            "emu" | "emulator" => Ok(TranslatorDevice::Emulator),
            "auto" => Ok(TranslatorDevice::Auto),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(TranslatorDevice::Cuda)
                .ok_or_else(|| {
                    Error::invalid(
                        "translator",
                        format!("device {s:?}: expected cpu, cpu:THREADS, reference, cuda, cuda:N, emu or auto"),
                    )
                }),
        }
    }
}

/// Options of one [`Translator::translate`] call; `None` keeps the
/// checkpoint's generation config (beam, max_length) or the default
/// batch size (16).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TranslateOptions {
    /// Beam width (1 = greedy).
    pub beam: Option<usize>,
    /// Maximum decoder length including the start token (Hugging Face `max_length`).
    pub max_length: Option<usize>,
    /// Sentences per batch.
    pub batch_size: Option<usize>,
}

/// The model on one of the backends.
enum Loaded {
    Cpu(MarianModel<FastCpu>),
    Reference(MarianModel<Cpu>),
    F32(MarianModel<CudaBackend<f32>>),
    F16(MarianModel<CudaBackend<half::f16>>),
    Bf16(MarianModel<CudaBackend<half::bf16>>),
}

/// A checkpoint ready to translate.
pub struct Translator {
    tokenizer: MarianTokenizer,
    model: Loaded,
    gen: GenerationConfig,
    dtype: DType,
}

impl std::fmt::Debug for Translator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Translator({} {})", self.backend_name(), self.dtype)
    }
}

impl Translator {
    /// Loads the Hugging Face Marian checkpoint in `dir` (config.json,
    /// model.safetensors, source.spm, target.spm, vocab.json) on `device`,
    /// storing weights and activations as `dtype` on the CUDA backend
    /// (`None`: the checkpoint's own dtype when f16 / bf16, else bf16; the
    /// CPU computes in f32).
    ///
    /// # Errors
    /// [`Error::Io`] / [`Error::Checkpoint`] / [`Error::Tokenizer`] for the
    /// files; [`Error::NoCuda`] / [`Error::KernelsNotBuilt`] when the device
    /// cannot run here; [`Error::InvalidArgument`] for a 16-bit dtype on the CPU.
    pub fn new(dir: &Path, device: TranslatorDevice, dtype: Option<DType>) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "model directory not found"),
            ));
        }
        let tokenizer = MarianTokenizer::from_dir(dir)?;
        let (device, threads) = match device {
            TranslatorDevice::Cpu(t) => (None, Some(t)),
            TranslatorDevice::Reference => (None, None),
            TranslatorDevice::Cuda(n) => (Some(Device::open(n)?), None),
            TranslatorDevice::Emulator => (Some(Device::emulator()?), None),
            TranslatorDevice::Auto => (Device::open(0).ok(), Some(0)),
        };
        let (model, dtype) = match device {
            None => {
                if let Some(d) = dtype.filter(|&d| d != DType::F32) {
                    return Err(Error::invalid(
                        "translator",
                        format!("dtype {d}: the CPU backends compute in f32"),
                    ));
                }
                let model = match threads {
                    Some(t) => Loaded::Cpu(MarianModel::load(FastCpu::new(t)?, dir)?),
                    None => Loaded::Reference(MarianModel::load(Cpu, dir)?),
                };
                (model, DType::F32)
            }
            Some(dev) => {
                let dtype = match dtype {
                    Some(d) => d,
                    None => match checkpoint_dtype(&dir.join("model.safetensors"))? {
                        DType::F32 => DType::BF16,
                        half => half,
                    },
                };
                let model = match dtype {
                    DType::F32 => Loaded::F32(MarianModel::load(CudaBackend::new(dev), dir)?),
                    DType::F16 => Loaded::F16(MarianModel::load(CudaBackend::new(dev), dir)?),
                    DType::BF16 => Loaded::Bf16(MarianModel::load(CudaBackend::new(dev), dir)?),
                };
                (model, dtype)
            }
        };
        let config = match &model {
            Loaded::Cpu(m) => m.config(),
            Loaded::Reference(m) => m.config(),
            Loaded::F32(m) => m.config(),
            Loaded::F16(m) => m.config(),
            Loaded::Bf16(m) => m.config(),
        };
        tokenizer.check_compatible(config.vocab_size)?;
        let gen = GenerationConfig::from_model_dir(dir, config)?;
        Ok(Translator {
            tokenizer,
            model,
            gen,
            dtype,
        })
    }

    /// `"cpu"`, `"reference"` or `"cuda"` (the CUDA backend, on a GPU or
    /// the emulator).
    pub fn backend_name(&self) -> &'static str {
        match &self.model {
            Loaded::Cpu(_) => "cpu",
            Loaded::Reference(_) => "reference",
            _ => "cuda",
        }
    }

    /// The storage dtype (f32 on the CPU).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Translations of `sentences`, in order.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a zero beam or batch size, invalid
    /// settings, or a sentence the model cannot take (longer than
    /// `max_position_embeddings`; the message names its index); the
    /// tokenizer's and the backend's errors.
    pub fn translate(&self, sentences: &[&str], opts: TranslateOptions) -> Result<Vec<String>> {
        match &self.model {
            Loaded::Cpu(m) => self.run(m, sentences, opts),
            Loaded::Reference(m) => self.run(m, sentences, opts),
            Loaded::F32(m) => self.run(m, sentences, opts),
            Loaded::F16(m) => self.run(m, sentences, opts),
            Loaded::Bf16(m) => self.run(m, sentences, opts),
        }
    }

    fn run<B: Backend>(
        &self,
        model: &MarianModel<B>,
        sentences: &[&str],
        opts: TranslateOptions,
    ) -> Result<Vec<String>> {
        let batch = opts.batch_size.unwrap_or(16);
        if batch == 0 || opts.beam == Some(0) {
            return Err(Error::invalid(
                "translate",
                "beam and batch size must be at least 1",
            ));
        }
        let mut gen = self.gen.clone();
        if let Some(b) = opts.beam {
            gen.num_beams = b;
        }
        if let Some(m) = opts.max_length {
            gen.max_length = m;
            gen.max_new_tokens = None;
        }
        gen.num_return_sequences = 1;
        gen.validate(model.config().target_vocab_size())?;
        let max_src = model.config().max_position_embeddings;
        let mut work: Vec<(usize, Vec<u32>)> = Vec::new();
        for (i, s) in sentences.iter().enumerate() {
            if self.tokenizer.is_blank_source(s)? {
                continue;
            }
            let ids = self.tokenizer.encode_source(s)?;
            if ids.len() > max_src {
                return Err(Error::invalid(
                    "translate",
                    format!(
                        "sentence {i} has {} source tokens, more than the model's max_position_embeddings ({max_src})",
                        ids.len()
                    ),
                ));
            }
            work.push((i, ids));
        }
        work.sort_by_key(|(_, ids)| ids.len());
        let mut out = vec![String::new(); sentences.len()];
        for chunk in work.chunks(batch) {
            let sources: Vec<Vec<u32>> = chunk.iter().map(|(_, ids)| ids.clone()).collect();
            for ((i, _), hyps) in chunk.iter().zip(model.generate(&sources, &gen)?) {
                let best = hyps.into_iter().next().map(|h| h.ids).unwrap_or_default();
                out[*i] = self.tokenizer.decode_target(&best)?;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse() {
        let p = |s: &str| s.parse::<TranslatorDevice>();
        assert_eq!(p("cpu").unwrap(), TranslatorDevice::Cpu(0));
        assert_eq!(p("cpu:3").unwrap(), TranslatorDevice::Cpu(3));
        assert_eq!(p("reference").unwrap(), TranslatorDevice::Reference);
        assert_eq!(p("cuda:1").unwrap(), TranslatorDevice::Cuda(1));
        assert_eq!(p("auto").unwrap(), TranslatorDevice::Auto);
        for bad in ["cpu:", "cpu:x", "cpu:-1", "gpu:0", ""] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }
}
