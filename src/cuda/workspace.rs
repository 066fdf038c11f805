//! A reusable f32 scratch buffer on the device (the GEMM's split-K partial
//! sums, attention's split-KV partial outputs), grown on demand, so that a
//! loop of calls (a decode step) allocates only on its first call.

use std::sync::Arc;

use super::device::Device;
use super::tensor::DeviceTensor;
use crate::{Error, Result};

/// Device scratch of f32, grown to the largest request; empty until first used.
#[derive(Debug, Default)]
pub struct Workspace {
    buf: Option<DeviceTensor<f32>>,
}

impl Workspace {
    /// An empty workspace (nothing allocated).
    pub fn new() -> Self {
        Self::default()
    }

    /// Elements currently allocated (0 when empty).
    pub fn capacity(&self) -> usize {
        self.buf.as_ref().map_or(0, DeviceTensor::numel)
    }

    /// At least `elements` f32 on `device`: the current buffer when it is
    /// large enough and on that device, else a new one (allocated before
    /// the old one is freed: inside a replayable step the allocation issues
    /// the deferred launches, which may still name the old buffer; see
    /// [`super::step_graph`]).
    ///
    /// # Errors
    /// [`Error::Cuda`] when the allocation fails (out of device memory).
    pub fn get(&mut self, device: &Arc<Device>, elements: usize) -> Result<&mut DeviceTensor<f32>> {
        let fits = self
            .buf
            .as_ref()
            .is_some_and(|b| b.numel() >= elements && Arc::ptr_eq(b.device(), device));
        if !fits {
            self.buf = Some(DeviceTensor::zeros(device, &[elements.max(1)])?);
        }
        self.buf
            .as_mut()
            .ok_or_else(|| Error::invalid("workspace", "allocation vanished"))
    }
}
