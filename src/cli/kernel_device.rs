//! `--device` of `verify` and `bench`: which runtime executes the kernels.

use std::sync::Arc;

use transformer_kernels::cuda::Device;
use transformer_kernels::{Error, Result};

/// A kernel device as the command line names it: `cuda` (GPU 0),
/// `cuda:N` or `N` (GPU N), or `emu` (the SIMT emulator on the CPU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelDevice {
    /// A CUDA GPU by ordinal.
    Cuda(usize),
    /// The SIMT emulator.
    Emu,
}

impl std::str::FromStr for KernelDevice {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let ordinal = |n: &str| {
            n.parse::<usize>()
                .map_err(|_| format!("bad GPU ordinal {n:?} in --device {s:?}"))
        };
        match s {
            "emu" | "emulator" => Ok(KernelDevice::Emu),
            "cuda" | "gpu" => Ok(KernelDevice::Cuda(0)),
            _ => match s.strip_prefix("cuda:") {
                Some(n) => ordinal(n).map(KernelDevice::Cuda),
                None => ordinal(s)
                    .map(KernelDevice::Cuda)
                    .map_err(|_| format!("unknown device {s:?}: expected cuda, cuda:N, N or emu")),
            },
        }
    }
}

impl KernelDevice {
    /// Opens the device; `what` says what the command does, for the
    /// message when there is no GPU.
    ///
    /// # Errors
    /// [`Error::NoCuda`] (with a hint to use `--device emu`) or
    /// [`Error::KernelsNotBuilt`].
    pub fn open(self, what: &str) -> Result<Arc<Device>> {
        match self {
            KernelDevice::Emu => Device::emulator(),
            KernelDevice::Cuda(n) => Device::open(n).map_err(|e| match e {
                Error::NoCuda(why) => Error::NoCuda(format!(
                    "{why}; `{what}` needs a GPU (`--device emu` runs the kernels on the CPU emulator instead)"
                )),
                other => other,
            }),
        }
    }
}
