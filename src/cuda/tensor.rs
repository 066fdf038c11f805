//! `DeviceTensor<T>`: a dense, contiguous, row-major device buffer with a shape.

use std::sync::Arc;

use super::device::Device;
use super::runtime::Allocation;
use crate::error::fmt_shape;
use crate::{Element, Error, Result};

/// An element a [`DeviceTensor`] can hold: plain data of a fixed size
/// (the storage floats, `i32` / `u32` for token ids and lengths, `u8` for
/// raw bytes).
pub trait DevicePod: bytemuck::Pod + Default + Send + Sync + std::fmt::Debug + 'static {
    /// The C type name, for messages (`"f32"`, `"bf16"`, `"i32"`).
    const NAME: &'static str;
}

impl DevicePod for f32 {
    const NAME: &'static str = "f32";
}
impl DevicePod for half::f16 {
    const NAME: &'static str = "f16";
}
impl DevicePod for half::bf16 {
    const NAME: &'static str = "bf16";
}
impl DevicePod for i32 {
    const NAME: &'static str = "i32";
}
impl DevicePod for u32 {
    const NAME: &'static str = "u32";
}
impl DevicePod for u8 {
    const NAME: &'static str = "u8";
}

/// A floating storage element the kernels are instantiated for: `f32`,
/// `half::f16`, `half::bf16` (arithmetic is always f32).
pub trait DeviceElement: DevicePod + Element {}
impl<T: DevicePod + Element> DeviceElement for T {}

/// A contiguous row-major tensor in device memory.
///
/// The last dimension is the fastest-varying. Always allocated on one
/// [`Device`] and only used through that device's stream. The buffer holds
/// at least one element (no runtime allocates zero bytes);
/// [`DeviceTensor::numel`] is what the shape says.
pub struct DeviceTensor<T: DevicePod> {
    data: Allocation,
    shape: Vec<usize>,
    device: Arc<Device>,
    _elem: std::marker::PhantomData<T>,
}

impl<T: DevicePod> std::fmt::Debug for DeviceTensor<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceTensor<{}>{}", T::NAME, fmt_shape(&self.shape))
    }
}

fn numel_of(op: &'static str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::invalid(op, format!("shape {} overflows usize", fmt_shape(shape))))
}

impl<T: DevicePod> DeviceTensor<T> {
    /// A tensor of `shape` filled with zeros (all bits zero: +0.0 or 0).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the byte size overflows;
    /// [`Error::Cuda`] when the allocation fails (out of device memory).
    pub fn zeros(device: &Arc<Device>, shape: &[usize]) -> Result<Self> {
        let n = numel_of("DeviceTensor::zeros", shape)?;
        let bytes = n.checked_mul(std::mem::size_of::<T>()).ok_or_else(|| {
            Error::invalid(
                "DeviceTensor::zeros",
                format!("{n} elements of {} overflow usize bytes", T::NAME),
            )
        })?;
        let data = device.alloc_zeroed(bytes.max(std::mem::size_of::<T>()))?;
        Ok(Self {
            data,
            shape: shape.to_vec(),
            device: device.clone(),
            _elem: std::marker::PhantomData,
        })
    }

    /// Bytes of a tensor of `shape` (at least one element's).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the size overflows `usize`.
    pub(crate) fn bytes_for(shape: &[usize]) -> Result<usize> {
        let n = numel_of("DeviceTensor", shape)?;
        n.checked_mul(std::mem::size_of::<T>())
            .map(|b| b.max(std::mem::size_of::<T>()))
            .ok_or_else(|| {
                Error::invalid(
                    "DeviceTensor",
                    format!("{n} elements of {} overflow usize bytes", T::NAME),
                )
            })
    }

    /// A tensor of `shape` over the first bytes of `slot` (shared: the
    /// slot stays allocated while either lives). Its contents are whatever
    /// the slot holds (not zeroed).
    ///
    /// # Errors
    /// [`Error::Shape`] when the slot is smaller than the shape.
    pub(crate) fn in_slot(
        device: &Arc<Device>,
        slot: &Arc<Allocation>,
        shape: &[usize],
    ) -> Result<Self> {
        let bytes = Self::bytes_for(shape)?;
        let data = Allocation::prefix(slot, bytes).ok_or_else(|| {
            Error::shape(
                "DeviceTensor::in_slot",
                format!("a slot of at least {bytes} bytes"),
                format!("{} bytes", slot.bytes()),
            )
        })?;
        Ok(Self {
            data,
            shape: shape.to_vec(),
            device: device.clone(),
            _elem: std::marker::PhantomData,
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
        let t = Self::zeros(device, shape)?;
        // SAFETY: the allocation holds at least `n` elements of T, i.e.
        // `size_of_val(host)` bytes.
        unsafe { device.copy_htod(t.data.ptr(), bytemuck::cast_slice(host)) }?;
        Ok(t)
    }

    /// Copies the tensor back to the host (waits for the stream).
    ///
    /// # Errors
    /// [`Error::Cuda`] when the copy fails, including errors of earlier
    /// asynchronous launches on the stream.
    pub fn to_host(&self) -> Result<Vec<T>> {
        let mut out = vec![T::default(); self.numel()];
        // SAFETY: the allocation holds at least `numel` elements of T.
        unsafe {
            self.device
                .copy_dtoh(bytemuck::cast_slice_mut(&mut out), self.data.ptr())
        }?;
        Ok(out)
    }

    /// Overwrites the whole tensor with `host` (same element count), without
    /// allocating: for buffers reused across steps (ids, lengths).
    ///
    /// # Errors
    /// [`Error::Shape`] when `host.len() != numel`; [`Error::Cuda`] on copy failure.
    pub fn copy_from_host(&mut self, host: &[T]) -> Result<()> {
        if host.len() != self.numel() {
            return Err(Error::shape(
                "DeviceTensor::copy_from_host",
                format!("{} elements ({})", self.numel(), fmt_shape(&self.shape)),
                format!("{} elements", host.len()),
            ));
        }
        // SAFETY: the allocation holds `numel` elements of T (checked above).
        unsafe {
            self.device
                .copy_htod(self.data.ptr(), bytemuck::cast_slice(host))
        }
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

    /// The device address of the first element (a `CUdeviceptr` on a GPU),
    /// for engines that launch kernels of their own or through the raw
    /// `launch` functions. Valid while `self` lives; use it only for work
    /// ordered after the device's stream (see [`Device::open`]).
    pub fn device_ptr(&self) -> u64 {
        self.data.ptr()
    }

    /// The device address for writing; see [`DeviceTensor::device_ptr`].
    /// Taking `&mut self` lets the borrow checker rule out aliasing with
    /// inputs borrowed at the same time.
    pub fn device_ptr_mut(&mut self) -> u64 {
        self.data.ptr()
    }

    /// Copies this tensor into `dst` on the device (same shape), without
    /// allocating.
    ///
    /// # Errors
    /// [`Error::Shape`] on a shape mismatch; [`Error::InvalidArgument`] when
    /// `dst` is on another device; [`Error::Cuda`] on copy failure.
    pub fn copy_to(&self, dst: &mut DeviceTensor<T>) -> Result<()> {
        super::check::shape_is("copy", "dst", dst, self.shape())?;
        super::check::same_device("copy", "dst", &self.device, dst)?;
        let bytes = self.numel() * std::mem::size_of::<T>();
        // SAFETY: both allocations hold `numel` elements of T (same shape),
        // are distinct (`dst` is borrowed mutably while `self` is borrowed)
        // and live on the same device.
        unsafe {
            self.device
                .copy_dtod(dst.device_ptr_mut(), self.data.ptr(), bytes)
        }
    }
}
