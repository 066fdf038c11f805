//! [`StepPosition`]: a decode step's position in device memory, so that the
//! kernels of a replayed step (whose parameters are fixed) read it when they
//! run; the host keeps the value it wrote, for the wrappers' bounds checks.

use std::sync::Arc;

use super::device::Device;
use super::tensor::DeviceTensor;
use crate::{Error, Result};

/// One position (`[1]` int32 on the device) and the host's copy of it.
///
/// The two agree by construction: [`StepPosition::set`] queues the upload
/// on the device's stream, so kernels queued before it read the old value
/// and kernels queued after it the new one, as the host copy says.
#[derive(Debug)]
pub struct StepPosition {
    host: usize,
    device: DeviceTensor<i32>,
}

impl StepPosition {
    /// A position holding `value`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `value` does not fit int32; the
    /// device's allocation or copy error.
    pub fn new(device: &Arc<Device>, value: usize) -> Result<Self> {
        let v = Self::int32(value)?;
        Ok(StepPosition {
            host: value,
            device: DeviceTensor::from_host(device, &[v], &[1])?,
        })
    }

    /// Writes `value` (queued on the stream; no allocation).
    ///
    /// # Errors
    /// As [`StepPosition::new`].
    pub fn set(&mut self, value: usize) -> Result<()> {
        let v = Self::int32(value)?;
        self.device.copy_from_host(&[v])?;
        self.host = value;
        Ok(())
    }

    /// The value last written.
    pub fn get(&self) -> usize {
        self.host
    }

    /// The `[1]` int32 device buffer the kernels read.
    pub fn tensor(&self) -> &DeviceTensor<i32> {
        &self.device
    }

    fn int32(value: usize) -> Result<i32> {
        i32::try_from(value).map_err(|_| {
            Error::invalid(
                "step position",
                format!("position {value} does not fit int32"),
            )
        })
    }
}
