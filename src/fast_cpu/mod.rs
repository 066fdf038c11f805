//! The fast CPU backend: the model on the host at production speed.
//!
//! [`FastCpu`] computes the same model as the reference backend
//! ([`crate::cpu::Cpu`], plain loops, the oracle) and is tested against it
//! op by op and on every Hugging Face fixture. What makes it fast:
//!
//! - [`gemm`]: weights packed once at load ([`pack`]) for outer-product FMA
//!   micro-kernels ([`microkernel`]: AVX-512, AVX2 + FMA or portable,
//!   chosen at run time, [`isa`]), bias and activation fused, each output a
//!   fixed-order reduction (a sentence in a batch is bit-identical to the
//!   sentence alone);
//! - [`scoring`]: log-softmax normaliser and top-k in one vectorised sweep
//!   of the raw logits;
//! - [`attention`]: strided in-place operands, vectorised `q·k` and `P·V`;
//! - [`vmath`]: f32 vectorised `exp`, activations, LayerNorm;
//! - [`threads`]: one persistent worker pool, used where it pays;
//! - the KV-cache beam reorder in place, copying only the rows that move
//!   (valid positions only).

pub mod attention;
pub mod backend;
pub mod gemm;
pub mod isa;
pub mod microkernel;
pub mod pack;
pub mod scoring;
pub mod threads;
pub mod vmath;

pub use backend::{FastCpu, FastTensor};
