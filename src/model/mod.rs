//! The model: config.json, model.safetensors, the Backend trait, encoder, decoder, KV cache, search.
//!
//! [`MarianModel`] is written once against [`Backend`]; the caller picks the
//! backend (`transformer_kernels::cpu::Cpu` is the reference implementation,
//! `transformer_kernels::fast_cpu::FastCpu` the fast CPU one).
//! Nothing in this module depends on a particular backend. Typical use:
//!
//! ```no_run
//! # fn main() -> transformer_kernels::Result<()> {
//! use std::path::Path;
//! use transformer_kernels::cpu::Cpu;
//! use transformer_kernels::model::{GenerationConfig, MarianModel};
//! let dir = Path::new("models/demo-en-de");
//! let model = MarianModel::load(Cpu, dir)?;
//! let gen = GenerationConfig::from_model_dir(dir, model.config())?;
//! let nbest = model.generate(&[vec![12, 34, 0]], &gen)?; // source ids incl. EOS
//! println!("{:?}", nbest[0][0].ids);
//! # Ok(()) }
//! ```

pub mod backend;
pub mod config;
pub mod decoder;
pub mod encoder;
pub mod generation;
pub mod kv_cache;
pub mod marian;
pub mod search;
pub mod weights;

pub use backend::{AttnMask, Backend, Cols, TokenMask, TopK};
pub use config::ModelConfig;
pub use decoder::DecoderState;
pub use encoder::EncoderOutput;
pub use generation::{EarlyStopping, GenerationConfig};
pub use kv_cache::KvCache;
pub use marian::{MarianModel, LAYER_NORM_EPS};
pub use search::Hypothesis;
