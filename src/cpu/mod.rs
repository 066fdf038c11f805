//! The CPU reference: one file per op, f32 arithmetic, plain loops.
//!
//! Each op is a public function over slices with explicit dimensions, so the
//! CUDA tests can use it as the oracle; [`Cpu`] wraps them as a
//! [`crate::model::backend::Backend`].

pub mod activation;
pub mod attention;
pub mod backend;
pub mod bias_activation;
pub mod convert;
pub mod embedding;
pub mod layer_norm;
pub mod linear;
pub mod log_softmax_topk;
pub mod logits;
pub mod residual;
pub mod softmax;

pub use backend::{Cpu, CpuTensor};
