//! Checks the op wrappers run before any `unsafe` launch: shapes, devices,
//! sizes that must fit the kernels' `int64_t` / `int32_t` fields, and the
//! grid size of a launch.

use std::sync::Arc;

use super::device::Device;
use super::tensor::{DevicePod, DeviceTensor};
use crate::error::fmt_shape;
use crate::{Error, Result};

/// Largest grid (blocks in x) the wrappers launch; the kernels' grid-stride
/// loops cover any larger problem.
pub(crate) const MAX_GRID: usize = 1 << 20;

/// `Error::Shape` unless `t` has exactly `expected` as its shape.
pub(crate) fn shape_is<T: DevicePod>(
    op: &'static str,
    name: &str,
    t: &DeviceTensor<T>,
    expected: &[usize],
) -> Result<()> {
    if t.shape() == expected {
        Ok(())
    } else {
        Err(Error::shape(
            op,
            format!("{name} {}", fmt_shape(expected)),
            format!("{name} {}", fmt_shape(t.shape())),
        ))
    }
}

/// `Error::InvalidArgument` unless `t` lives on `device` (a device pointer
/// of another context is not valid in this one).
pub(crate) fn same_device<T: DevicePod>(
    op: &'static str,
    name: &str,
    device: &Arc<Device>,
    t: &DeviceTensor<T>,
) -> Result<()> {
    if Arc::ptr_eq(device, t.device()) {
        Ok(())
    } else {
        Err(Error::invalid(
            op,
            format!(
                "{name} is on {:?}, the other operands on {device:?}",
                t.device()
            ),
        ))
    }
}

/// `n` as the kernels' `int64_t`.
pub(crate) fn i64_of(op: &'static str, what: &str, n: usize) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::invalid(op, format!("{what} = {n} does not fit int64")))
}

/// Blocks for `work` units of `per_block` each, at least 1, capped at [`MAX_GRID`].
pub(crate) fn grid_for(work: usize, per_block: usize) -> u32 {
    // MAX_GRID < u32::MAX, so the cast is exact.
    work.div_ceil(per_block.max(1)).clamp(1, MAX_GRID) as u32
}
