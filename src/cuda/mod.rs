//! CUDA: the device, [`DeviceTensor`], one file per op wrapper, and the
//! launch seam ([`runtime`]) that a second runtime (the SIMT emulator)
//! plugs into.
//!
//! The kernels are compiled by build.rs (nvcc) and embedded in the binary;
//! libcuda is loaded at run time, so a binary built here runs (and reports
//! [`crate::Error::NoCuda`]) on a machine with no GPU. Nothing in this module
//! panics when libcuda is absent.
//!
//! One home per op: `kernels/<op>.cu` holds the kernels; `src/cuda/<op>.rs`
//! holds its variants, its symbols (`kernel(..)` / `kernels()`), its named
//! tolerances, the safe wrapper and the raw `unsafe fn launch(device, ..,
//! params)` for engines with their own buffers; the reference is the same
//! name under `cpu`; the check (random inputs, reference call,
//! tolerance) and the workload (shapes, bytes or FLOPs) that tests, `verify`,
//! `bench` and the criterion benches share are in `crate::ops::<op>`. This
//! module never calls the reference: kernels are judged by tests.
//! - [`convert`]: storage dtype conversion;
//! - [`layer_norm`]: residual add + LayerNorm (post-LN sublayer output);
//! - [`embedding`]: token gather · sqrt(d_model) + sinusoidal positions;
//! - [`logits`]: final_logits_bias, pad mask, log-softmax, argmax / top-k;
//! - [`bias_activation`]: bias add + relu / gelu / gelu_tanh / swish;
//! - [`linear`]: `act(x · wᵀ + bias) + residual`, tensor cores for f16 /
//!   bf16, SIMT for f32, split-K for decode shapes;
//! - [`attention`]: fused multi-head attention (FlashAttention-style
//!   tensor-core prefill, split-KV SIMT decode and f32), masks for key
//!   padding and causal with a KV-cache offset;
//! - [`gather_rows`]: positions copied between `[rows, positions, width]`
//!   tensors through a row map (the KV cache's write, reorder, drop, grow).
//!
//! [`backend::CudaBackend`] assembles them into the model's
//! [`crate::model::Backend`]: the whole encoder-decoder on a device.
//!
//! Each safe wrapper checks shapes, devices and sizes before its one
//! `unsafe` launch. [`numerics`] holds the tolerance type and the
//! comparison that tests and `verify` share.
//!
//! Run status: every kernel here has **executed on the SIMT emulator**
//! ([`runtime::emu`], in CI, every GPU test body and `verify --device emu`)
//! and has **not run on a GPU**: they build for sm_80 and sm_90a without
//! register spills, but no GPU has executed them yet (the machines they
//! were written on have none). A GPU run is recorded, with its date, in
//! BENCHMARKS.md.

pub mod attention;
pub mod backend;
pub mod bias_activation;
pub(crate) mod check;
pub mod convert;
pub mod decode_step;
pub mod device;
pub mod embedding;
pub mod gather_rows;
pub mod kernels;
pub mod layer_norm;
pub mod linear;
pub mod logits;
pub mod numerics;
pub mod params;
pub mod runtime;
pub mod step_graph;
pub mod step_position;
pub mod tensor;
pub mod workspace;

pub use backend::CudaBackend;
pub use device::{device_count, driver_available, test_device, Device};
pub use runtime::{KernelRef, RuntimeKind};
pub use tensor::{DeviceElement, DevicePod, DeviceTensor};
