//! CUDA: device and module loading, [`DeviceTensor`], one file per op wrapper.
//!
//! The kernels are compiled by build.rs (nvcc) and embedded in the binary;
//! libcuda is loaded at run time, so a binary built here runs (and reports
//! [`crate::Error::NoCuda`]) on a machine with no GPU. Nothing in this module
//! panics when libcuda is absent.
//!
//! Kernels (one `kernels/<op>.cu`, one wrapper file each; the reference is
//! the same name under [`crate::cpu`]):
//! - [`convert`]: storage dtype conversion;
//! - [`layer_norm`]: residual add + LayerNorm (post-LN sublayer output);
//! - [`embedding`]: token gather · sqrt(d_model) + sinusoidal positions;
//! - [`logits`]: final_logits_bias, pad mask, log-softmax, argmax / top-k;
//! - [`bias_activation`]: bias add + relu / gelu / gelu_tanh / swish.
//!
//! Each safe wrapper checks shapes, devices and sizes before its one
//! `unsafe` launch; each also exposes the raw `unsafe fn launch(device,
//! dtype, params)` for engines with their own buffers. [`numerics`] holds
//! the tolerances and the comparison that the GPU tests and `verify` share.
//!
//! Run status: every kernel here is **compiled, not run**: they build for
//! sm_80 and sm_90a without register spills and their GPU tests exist, but
//! no GPU has executed them yet (the machines they were written on have
//! none). A GPU run is recorded, with its date, in BENCHMARKS.md.

pub mod bias_activation;
pub(crate) mod check;
pub mod convert;
pub mod device;
pub mod embedding;
pub mod kernels;
pub mod layer_norm;
pub mod logits;
pub mod numerics;
pub mod params;
pub mod tensor;

pub use device::{device_count, driver_available, test_device, Device};
pub use tensor::{DeviceElement, DeviceTensor};
