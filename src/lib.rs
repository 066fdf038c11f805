//! # transformer-kernels
//!
//! Hand-written CUDA kernels compiled at build time (tensor-core GEMM with a
//! fused epilogue, fused attention, residual + LayerNorm, embedding, logits,
//! bias + activation, dtype conversion, row gather), safe Rust wrappers
//! around them, the whole encoder-decoder Transformer of "Attention Is All
//! You Need" (Vaswani et al., 2017) assembled from them
//! ([`cuda::CudaBackend`]), and a pure-Rust CPU reference of every op and
//! of the whole model, as Marian / opus-mt checkpoints ship it in Hugging
//! Face format.
//!
//! - [`activation`]: the FFN activations (config vocabulary, kernel ABI).
//! - [`cpu`]: the reference ops, plain and obviously right; the oracle.
//! - [`fast_cpu`]: the fast CPU backend (packed FMA GEMMs, one-pass
//!   scoring, vectorised attention, a worker pool), held to the reference.
//! - [`cuda`]: the launch seam ([`cuda::runtime`]: a GPU through cudarc, or
//!   the SIMT emulator), [`cuda::Device`], [`cuda::DeviceTensor`], one
//!   wrapper per kernel, and [`cuda::CudaBackend`], the model on a device.
//! - [`ops`]: each op's check against the reference and its workload,
//!   shared by tests, `verify`, `bench` and the criterion benches.
//! - [`model`]: config, safetensors weights, the `Backend` trait, encoder,
//!   decoder with KV cache, greedy and beam search.
//! - [`tokenizer`]: SentencePiece + vocab.json as `MarianTokenizer` does it.
//! - [`translator`]: checkpoint + tokenizer + generation settings on one
//!   backend, translating batches of sentences (the library face of the CLI).
//! - [`capi`]: the C ABI (`include/transformer_kernels.h`): raw kernels,
//!   devices, a translator; status codes, last error, panics caught.
//!
//! Run status: every kernel and the whole model on the CUDA backend have
//! executed on the SIMT emulator (in CI); none has run on a GPU yet
//! (compiled for sm_80 and sm_90a, checked statically); the README's status
//! table is kept current.

pub mod activation;
pub mod capi;
pub mod cpu;
pub mod cuda;
pub mod dtype;
pub mod error;
pub mod fast_cpu;
pub mod model;
pub mod ops;
pub mod tokenizer;
pub mod translator;

pub use activation::Activation;
pub use dtype::{DType, Element};
pub use error::{Error, Result};
