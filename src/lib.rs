//! # transformer-kernels
//!
//! Hand-written CUDA kernels compiled at build time (today: residual +
//! LayerNorm, embedding, logits, bias + activation, dtype conversion; fused
//! attention and GEMM are planned), safe Rust wrappers around them, and a
//! pure-Rust CPU reference of every op and of the whole encoder-decoder
//! Transformer of "Attention Is All You Need" (Vaswani et al., 2017) as
//! Marian / opus-mt checkpoints ship it in Hugging Face format.
//!
//! - [`cpu`]: the reference ops, plain and obviously right; the oracle.
//! - [`cuda`]: device, module loading, [`cuda::DeviceTensor`], one wrapper per kernel.
//! - [`model`]: config, safetensors weights, the `Backend` trait, encoder,
//!   decoder with KV cache, greedy and beam search.
//! - [`tokenizer`]: SentencePiece + vocab.json as `MarianTokenizer` does it.
//!
//! Run status: no kernel has run on a GPU yet (compiled for sm_80 and
//! sm_90a, checked statically); the README's status table is kept current.

pub mod activation;
pub mod cpu;
pub mod cuda;
pub mod dtype;
pub mod error;
pub mod model;
pub mod ops;
pub mod tokenizer;

pub use activation::Activation;
pub use dtype::{DType, Element};
pub use error::{Error, Result};
