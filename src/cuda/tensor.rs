//! `DeviceTensor<T>`: a dense, contiguous, row-major device buffer with a shape.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, DeviceRepr, ValidAsZeroBits};

use super::device::{driver, Device};
use crate::error::fmt_shape;
use crate::{Element, Error, Result};

/// A storage element that can live on the device: `f32`, `half::f16`, `half::bf16`.
pub trait DeviceElement: Element + DeviceRepr + ValidAsZeroBits {}
impl<T: Element + DeviceRepr + ValidAsZeroBits> DeviceElement for T {}

/// A contiguous row-major tensor in device memory.
///
/// The last dimension is the fastest-varying. Always allocated on one
/// [`Device`] and only used with that device's stream. The buffer holds at
/// least one element (CUDA cannot allocate zero bytes); [`DeviceTensor::numel`]
/// is what the shape says.
pub struct DeviceTensor<T: DeviceElement> {
    data: CudaSlice<T>,
    shape: Vec<usize>,
    device: Arc<Device>,
}

impl<T: DeviceElement> std::fmt::Debug for DeviceTensor<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceTensor<{}>{}", T::DTYPE, fmt_shape(&self.shape))
    }
}

fn numel_of(op: &'static str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::invalid(op, format!("shape {} overflows usize", fmt_shape(shape))))
}

impl<T: DeviceElement> DeviceTensor<T> {
    /// A tensor of `shape` filled with zeros (all bits zero: +0.0).
    ///
    /// # Errors
    /// [`Error::Cuda`] when the allocation fails (out of device memory).
    pub fn zeros(device: &Arc<Device>, shape: &[usize]) -> Result<Self> {
        let n = numel_of("DeviceTensor::zeros", shape)?;
        let data = device
            .stream()
            .alloc_zeros::<T>(n.max(1))
            .map_err(driver("alloc_zeros"))?;
        Ok(Self {
            data,
            shape: shape.to_vec(),
            device: device.clone(),
        })
    }

    /// Copies `host` (row-major, `product(shape)` elements) to the device.
    ///
    /// # Errors
    /// [`Error::Shape`] when `host.len()` is not the product of `shape`;
    /// [`Error::Cuda`] when allocation or the copy fails.
    pub fn from_host(device: &Arc<Device>, host: &[T], shape: &[usize]) -> Result<Self> {
        let n = numel_of("DeviceTensor::from_host", shape)?;
        if host.len() != n {
            return Err(Error::shape(
                "DeviceTensor::from_host",
                format!("{n} elements for shape {}", fmt_shape(shape)),
                format!("{} elements", host.len()),
            ));
        }
        let mut t = Self::zeros(device, shape)?;
        if n > 0 {
            let stream = device.stream().clone();
            let mut dst = t.data.slice_mut(0..n);
            stream
                .memcpy_htod(host, &mut dst)
                .map_err(driver("memcpy_htod"))?;
        }
        Ok(t)
    }

    /// Copies the tensor back to the host (waits for the stream).
    ///
    /// # Errors
    /// [`Error::Cuda`] when the copy fails, including errors of earlier
    /// asynchronous launches on the stream.
    pub fn to_host(&self) -> Result<Vec<T>> {
        let n = self.numel();
        if n == 0 {
            return Ok(Vec::new());
        }
        let stream = self.device.stream();
        let mut out = vec![T::default(); n];
        stream
            .memcpy_dtoh(&self.data.slice(0..n), &mut out[..])
            .map_err(driver("memcpy_dtoh"))?;
        stream
            .synchronize()
            .map_err(driver("synchronize after memcpy_dtoh"))?;
        Ok(out)
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements (product of the shape).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The device this tensor lives on.
    pub fn device(&self) -> &Arc<Device> {
        &self.device
    }

    /// Reinterprets the shape; the element count must not change.
    ///
    /// # Errors
    /// [`Error::Shape`] when the element counts differ.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Self> {
        let n = numel_of("DeviceTensor::reshape", shape)?;
        if n != self.numel() {
            return Err(Error::shape(
                "DeviceTensor::reshape",
                format!("{} elements", self.numel()),
                fmt_shape(shape),
            ));
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    /// Raw device pointer for reading, valid while `self` is borrowed and
    /// only for work queued on the device's stream.
    pub(crate) fn device_ptr(&self) -> u64 {
        let (ptr, _sync) = self.data.device_ptr(self.device.stream());
        ptr
    }

    /// Raw device pointer for writing; see [`DeviceTensor::device_ptr`].
    pub(crate) fn device_ptr_mut(&mut self) -> u64 {
        let stream = self.device.stream().clone();
        let (ptr, _sync) = self.data.device_ptr_mut(&stream);
        ptr
    }

    /// The underlying cudarc buffer (at least one element long), allocated
    /// on [`Device::stream`]. The crate tracks no events for it (see
    /// [`Device::open`]): use it on that stream, or synchronise your stream
    /// with [`Device::stream`] before and after using it on another one.
    pub fn as_cuda_slice(&self) -> &CudaSlice<T> {
        &self.data
    }
}
