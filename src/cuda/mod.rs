//! CUDA: device and module loading, [`DeviceTensor`], one file per op wrapper.
//!
//! The kernels are compiled by build.rs (nvcc) and embedded in the binary;
//! libcuda is loaded at run time, so a binary built here runs (and reports
//! [`crate::Error::NoCuda`]) on a machine with no GPU. Nothing in this module
//! panics when libcuda is absent.
//!
//! Run status: every kernel here is **compiled, not run** until a GPU run is
//! recorded in BENCHMARKS.md.

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
