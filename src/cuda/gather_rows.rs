//! Row gather on the device (`kernels/gather_rows.cu`): positions (and
//! column blocks) of `[rows, positions, width]` tensors copied between
//! rows, with an optional row map. The model's KV cache makes every device
//! copy through it: writing a step's keys (columns of the fused QKV
//! output) into the cache, reordering beams by their
//! surviving indices, dropping finished sentences, expanding the encoder
//! memory per beam, growing the capacity. Only the positions asked for are
//! copied, never a whole capacity.
//!
//! Reference: the CPU backend's `kv_write` / `kv_gather` (the model tests
//! compare the whole model; `tests/cuda_gather_rows.rs` compares this op
//! against a host copy).
//!
//! Run status: executed on the SIMT emulator; not run on a GPU.

use super::check::{grid_for, i64_of, same_device};
use super::device::Device;
use super::params::GatherRowsParams;
use super::runtime::{KernelRef, LaunchParams, LaunchShape};
use super::step_position::StepPosition;
use super::tensor::{DeviceElement, DeviceTensor};
use crate::error::fmt_shape;
use crate::{Error, Result};

/// The module: `kernels/gather_rows.cu`.
pub const MODULE: &str = "gather_rows";

const OP: &str = "gather_rows";

/// Threads per block; matches `kThreads` in gather_rows.cu.
const THREADS: usize = 256;

/// Blocks along a row at most (the kernel's grid-stride loop covers longer rows).
const MAX_BLOCKS_X: usize = 4096;

/// Rows per launch in grid.y at most (the kernel loops over the rest).
const MAX_BLOCKS_Y: usize = 65_535;

/// The symbol copying `unit_bytes`-byte units (16, 4 or 2), if any.
pub const fn kernel(unit_bytes: usize) -> Option<KernelRef> {
    let symbol = match unit_bytes {
        16 => "gather_rows_b16",
        4 => "gather_rows_b4",
        2 => "gather_rows_b2",
        _ => return None,
    };
    Some(KernelRef {
        module: MODULE,
        symbol,
    })
}

/// Every kernel of this op (for the static checks against the fatbin).
pub fn kernels() -> Vec<KernelRef> {
    [16, 4, 2].into_iter().filter_map(kernel).collect()
}

// SAFETY: GatherRowsParams is a `#[repr(C)]` plain-old-data struct
// generated from params.h, layout-checked by bindgen; the kernel takes it
// by value.
unsafe impl LaunchParams for GatherRowsParams {}

/// `(rows, positions, width)` of a 3-D tensor.
fn dims3<T: DeviceElement>(name: &str, t: &DeviceTensor<T>) -> Result<(usize, usize, usize)> {
    match *t.shape() {
        [r, p, w] => Ok((r, p, w)),
        _ => Err(Error::shape(
            OP,
            format!("{name} [rows, positions, width]"),
            format!("{name} {}", fmt_shape(t.shape())),
        )),
    }
}

/// Which positions [`gather_rows_into`] copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PositionRange {
    /// First position read in each source row.
    pub src_at: usize,
    /// First position written in each destination row.
    pub dst_at: usize,
    /// Positions copied per row.
    pub len: usize,
}

/// Which columns [`gather_columns_into`] copies: `width` columns from
/// column `src` of the source into column `dst` of the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColumnRange {
    /// First column read.
    pub src: usize,
    /// First column written.
    pub dst: usize,
    /// Columns copied.
    pub width: usize,
}

/// `dst[r, dst_at .. dst_at + len, :] = src[map(r), src_at .. src_at + len, :]`
/// for every destination row `r`, where `map(r)` is `src_rows[r]`, or `r`
/// when `src_rows` is `None`. Other positions of `dst` are left as they are.
///
/// - `src`: `[src_rows, src_positions, width]`; `dst`:
///   `[dst_rows, dst_positions, width]` (any storage dtype, the same on both);
/// - `src_rows`: `[dst_rows]` indices `< src_rows` (host; uploaded for the
///   launch), or `None` when both tensors have the same rows.
///
/// # Errors
/// [`Error::Shape`] for non-3-D tensors, different widths, a range past
/// either tensor's positions, a row map of the wrong length, or different
/// row counts without a map; [`Error::InvalidArgument`] for a row index
/// past `src`'s rows or tensors on different devices; [`Error::Cuda`] on
/// allocation, copy or launch failure.
pub fn gather_rows_into<T: DeviceElement>(
    src: &DeviceTensor<T>,
    src_rows: Option<&[usize]>,
    range: PositionRange,
    dst: &mut DeviceTensor<T>,
) -> Result<()> {
    let (_, _, width) = dims3("src", src)?;
    let (_, _, d_width) = dims3("dst", dst)?;
    if d_width != width {
        return Err(Error::shape(
            OP,
            format!("dst [.., .., {width}] (src's width)"),
            format!("dst {}", fmt_shape(dst.shape())),
        ));
    }
    let cols = ColumnRange {
        src: 0,
        dst: 0,
        width,
    };
    gather_columns_into(src, src_rows, range, cols, dst)
}

/// `rows` as int32 device indices.
fn int32_rows(rows: &[usize]) -> Result<Vec<i32>> {
    rows.iter()
        .map(|&r| {
            i32::try_from(r).map_err(|_| Error::invalid(OP, format!("row {r} does not fit int32")))
        })
        .collect()
}

/// A row map on the device with its host copy: upload once, use for every
/// tensor reordered the same way (beam search reorders 2 × layers KV-cache
/// tensors per step with one map).
#[derive(Debug)]
pub struct RowMap {
    host: Vec<usize>,
    device: DeviceTensor<i32>,
}

impl RowMap {
    /// Uploads `rows` (each must fit int32).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an index past `int32`; [`Error::Cuda`]
    /// on allocation or copy failure.
    pub fn new(device: &std::sync::Arc<super::device::Device>, rows: &[usize]) -> Result<Self> {
        let m = int32_rows(rows)?;
        Ok(RowMap {
            host: rows.to_vec(),
            device: DeviceTensor::from_host(device, &m, &[m.len()])?,
        })
    }

    /// Replaces the map by `rows`, of the same length, without allocating
    /// (the upload is queued after the work that read the old map).
    ///
    /// # Errors
    /// [`Error::Shape`] for another length; [`Error::InvalidArgument`] for
    /// an index past `int32`; [`Error::Cuda`] on copy failure.
    pub fn set(&mut self, rows: &[usize]) -> Result<()> {
        if rows.len() != self.host.len() {
            return Err(Error::shape(
                OP,
                format!("row map [{}]", self.host.len()),
                format!("[{}]", rows.len()),
            ));
        }
        self.device.copy_from_host(&int32_rows(rows)?)?;
        self.host.clear();
        self.host.extend_from_slice(rows);
        Ok(())
    }

    /// The source row of each destination row.
    pub fn rows(&self) -> &[usize] {
        &self.host
    }
}

/// [`gather_columns_into`] with a [`RowMap`] already on the device (no
/// upload; its indices are checked against `src` from the host copy).
///
/// # Errors
/// As [`gather_columns_into`].
pub fn gather_columns_into_map<T: DeviceElement>(
    src: &DeviceTensor<T>,
    map: &RowMap,
    range: PositionRange,
    cols: ColumnRange,
    dst: &mut DeviceTensor<T>,
) -> Result<()> {
    same_device(OP, "row map", src.device(), &map.device)?;
    gather(src, Some((&map.host, Some(&map.device))), range, cols, dst)
}

/// [`gather_rows_into`] for a block of columns:
/// `dst[r, dst_at + p, cols.dst + c] = src[map(r), src_at + p, cols.src + c]`
/// for `p < len`, `c < cols.width` (e.g. the k columns `d..2d` of a fused
/// `[rows, t, 3d]` QKV output into a `[rows, cap, d]` cache). Everything
/// else of `dst` is left as it is.
///
/// # Errors
/// As [`gather_rows_into`], with [`Error::Shape`] for a column range past
/// either tensor's width.
pub fn gather_columns_into<T: DeviceElement>(
    src: &DeviceTensor<T>,
    src_rows: Option<&[usize]>,
    range: PositionRange,
    cols: ColumnRange,
    dst: &mut DeviceTensor<T>,
) -> Result<()> {
    gather(src, src_rows.map(|r| (r, None)), range, cols, dst)
}

/// [`gather_at`] at the host's `range.dst_at`.
fn gather<T: DeviceElement>(
    src: &DeviceTensor<T>,
    map: Option<(&[usize], Option<&DeviceTensor<i32>>)>,
    range: PositionRange,
    cols: ColumnRange,
    dst: &mut DeviceTensor<T>,
) -> Result<()> {
    gather_at(src, map, range, cols, None, dst)
}

/// [`gather_columns_into`] (no row map) writing at the destination position
/// `dst_at` read from the device when the kernel runs: the KV-cache write
/// of a replayable decode step, whose launch parameters must not change
/// from step to step. `dst_at` holds, on the host, the value the kernel
/// will read; `range.dst_at` is ignored.
///
/// # Errors
/// As [`gather_columns_into`], the bounds checked at `dst_at.get()`;
/// [`Error::InvalidArgument`] when `dst_at` is on another device.
pub fn gather_columns_into_at<T: DeviceElement>(
    src: &DeviceTensor<T>,
    range: PositionRange,
    cols: ColumnRange,
    dst_at: &StepPosition,
    dst: &mut DeviceTensor<T>,
) -> Result<()> {
    same_device(OP, "dst position", src.device(), dst_at.tensor())?;
    gather_at(src, None, range, cols, Some(dst_at), dst)
}

/// The checks and the launch: `map` is the host row map and, when it is
/// already on the device, its device copy (else it is uploaded here);
/// `dst_at_device`, when given, replaces `range.dst_at` by its device value.
fn gather_at<T: DeviceElement>(
    src: &DeviceTensor<T>,
    map: Option<(&[usize], Option<&DeviceTensor<i32>>)>,
    mut range: PositionRange,
    cols: ColumnRange,
    dst_at_device: Option<&StepPosition>,
    dst: &mut DeviceTensor<T>,
) -> Result<()> {
    if let Some(p) = dst_at_device {
        range.dst_at = p.get();
    }
    let src_rows = map.map(|(h, _)| h);
    let on_device = map.and_then(|(_, d)| d);
    let device = src.device().clone();
    same_device(OP, "dst", &device, dst)?;
    let (s_rows, s_pos, s_width) = dims3("src", src)?;
    let (d_rows, d_pos, d_width) = dims3("dst", dst)?;
    let PositionRange {
        src_at,
        dst_at,
        len,
    } = range;
    let fits = |at: usize, n: usize, end: usize| at.checked_add(n).is_some_and(|e| e <= end);
    if !fits(cols.src, cols.width, s_width) || !fits(cols.dst, cols.width, d_width) {
        return Err(Error::shape(
            OP,
            format!(
                "columns {}+{} <= {s_width} (src) and {}+{} <= {d_width} (dst)",
                cols.src, cols.width, cols.dst, cols.width
            ),
            format!(
                "src {}, dst {}",
                fmt_shape(src.shape()),
                fmt_shape(dst.shape())
            ),
        ));
    }
    if !fits(src_at, len, s_pos) || !fits(dst_at, len, d_pos) {
        return Err(Error::shape(
            OP,
            format!(
                "positions {src_at}+{len} <= {s_pos} (src) and {dst_at}+{len} <= {d_pos} (dst)"
            ),
            format!(
                "src {}, dst {}",
                fmt_shape(src.shape()),
                fmt_shape(dst.shape())
            ),
        ));
    }
    let host_map: Option<Vec<i32>> = match src_rows {
        None if s_rows != d_rows => {
            return Err(Error::shape(
                OP,
                format!("dst with src's {s_rows} rows (no row map)"),
                format!("dst {}", fmt_shape(dst.shape())),
            ))
        }
        None => None,
        Some(rows) if rows.len() != d_rows => {
            return Err(Error::shape(
                OP,
                format!("row map [{d_rows}] (dst's rows)"),
                format!("row map [{}]", rows.len()),
            ))
        }
        Some(rows) => Some(
            rows.iter()
                .map(|&r| {
                    i32::try_from(r)
                        .ok()
                        .filter(|_| r < s_rows)
                        .ok_or_else(|| Error::invalid(OP, format!("row {r} >= src rows {s_rows}")))
                })
                .collect::<Result<_>>()?,
        ),
    };
    if d_rows == 0 || len == 0 || cols.width == 0 {
        return Ok(());
    }
    let uploaded = match (&host_map, on_device) {
        (Some(m), None) => Some(DeviceTensor::from_host(&device, m, &[m.len()])?),
        _ => None,
    };
    let map_dev = on_device.or(uploaded.as_ref());
    let elem = std::mem::size_of::<T>();
    // Byte offsets and extents; none overflows: each is within a live
    // allocation of the tensor it describes.
    let src_ptr = src.device_ptr() + ((src_at * s_width + cols.src) * elem) as u64;
    // With a device position the kernel adds it (times the position stride).
    let host_at = if dst_at_device.is_some() { 0 } else { dst_at };
    let dst_ptr = dst.device_ptr_mut() + ((host_at * d_width + cols.dst) * elem) as u64;
    let (src_pos, dst_pos) = (s_width * elem, d_width * elem);
    let (src_row, dst_row) = (s_pos * src_pos, d_pos * dst_pos);
    // Whole-width copies: a row's positions are one contiguous run.
    let (positions, run) = if cols.width == s_width && cols.width == d_width {
        (1, len * cols.width * elem)
    } else {
        (len, cols.width * elem)
    };
    let unit = unit_for(&[
        src_ptr as usize,
        dst_ptr as usize,
        run,
        src_row,
        dst_row,
        src_pos,
        dst_pos,
    ]);
    let params = GatherRowsParams {
        src: src_ptr as *const core::ffi::c_void,
        dst: dst_ptr as *mut core::ffi::c_void,
        src_rows: map_dev.map_or(core::ptr::null(), |m| m.device_ptr() as *const i32),
        rows: i64_of(OP, "rows", d_rows)?,
        positions: i64_of(OP, "positions", positions)?,
        row_elems: i64_of(OP, "run units", run / unit)?,
        src_row_stride: i64_of(OP, "src row stride", src_row / unit)?,
        src_pos_stride: i64_of(OP, "src position stride", src_pos / unit)?,
        dst_row_stride: i64_of(OP, "dst row stride", dst_row / unit)?,
        dst_pos_stride: i64_of(OP, "dst position stride", dst_pos / unit)?,
        dst_pos_device: dst_at_device
            .map_or(core::ptr::null(), |p| p.tensor().device_ptr() as *const i32),
    };
    // SAFETY: the ranges were checked against both shapes: every source row
    // index is < src rows, positions src_at + len <= src positions and
    // dst_at + len <= dst positions, columns within both widths, so each
    // copied unit lies inside its tensor; the unit divides every address,
    // stride and length; `dst` is borrowed mutably, so it does not overlap
    // `src`; the row map lives until the launch is queued and its drop is
    // ordered on the stream.
    unsafe { launch(&device, unit, params) }
}

/// The widest unit (16, 4 or 2 bytes) dividing every value.
fn unit_for(values: &[usize]) -> usize {
    [16, 4, 2]
        .into_iter()
        .find(|u| values.iter().all(|v| v % u == 0))
        .unwrap_or(1)
}

/// Launches the copy of `unit_bytes`-byte units with caller-built params on
/// `device`'s stream (the raw API).
///
/// # Errors
/// [`Error::InvalidArgument`] for a unit other than 16, 4 or 2 bytes or
/// negative sizes; [`Error::Cuda`] on launch failure.
///
/// # Safety
/// For every destination row `r < p.rows` and position `q < p.positions`:
/// with `s = p.src_rows[r]` (or `r`), the `p.row_elems` units at
/// `s * p.src_row_stride + q * p.src_pos_stride` of `p.src` are readable
/// and those at `r * p.dst_row_stride + q * p.dst_pos_stride` of `p.dst`
/// writable, all aligned to `unit_bytes`;
/// `p.src_rows` (unless null) holds `p.rows` int32 values;
/// `p.dst_pos_device` (unless null) points to one int32 `n >= 0`, and the
/// destination positions above are then counted from `n`; the destination
/// does not overlap the source; all stay valid until the stream has run the
/// kernel.
pub unsafe fn launch(device: &Device, unit_bytes: usize, p: GatherRowsParams) -> Result<()> {
    let Some(kernel) = kernel(unit_bytes) else {
        return Err(Error::invalid(
            OP,
            format!("unit of {unit_bytes} bytes (expected 16, 4 or 2)"),
        ));
    };
    let rows = usize::try_from(p.rows)
        .map_err(|_| Error::invalid(OP, format!("rows = {} is negative", p.rows)))?;
    let units = usize::try_from(p.row_elems)
        .map_err(|_| Error::invalid(OP, format!("row_elems = {} is negative", p.row_elems)))?;
    let positions = usize::try_from(p.positions)
        .map_err(|_| Error::invalid(OP, format!("positions = {} is negative", p.positions)))?;
    let runs = rows.checked_mul(positions).ok_or_else(|| {
        Error::invalid(OP, format!("rows {rows} x positions {positions} overflow"))
    })?;
    if runs == 0 || units == 0 {
        return Ok(());
    }
    let shape = LaunchShape {
        grid: (
            grid_for(units, THREADS).min(MAX_BLOCKS_X as u32),
            runs.min(MAX_BLOCKS_Y) as u32,
            1,
        ),
        block: (THREADS as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: the caller guarantees the pointers (see `# Safety`); the
    // block size matches the kernel's __launch_bounds__.
    unsafe { device.launch(kernel, shape, &p) }
}

/// [`gather_rows`] with a [`RowMap`] already on the device.
///
/// # Errors
/// As [`gather_rows`].
pub fn gather_rows_map<T: DeviceElement>(
    src: &DeviceTensor<T>,
    map: &RowMap,
    len: usize,
    cap: usize,
) -> Result<DeviceTensor<T>> {
    let (_, _, width) = dims3("src", src)?;
    let mut out = DeviceTensor::zeros(src.device(), &[map.rows().len(), cap, width])?;
    gather_rows_map_into(src, map, len, &mut out)?;
    Ok(out)
}

/// Positions `0..len` of `src` row `map[r]` into `dst` row `r`, whole
/// width (`dst`: `[map.rows().len(), cap, width]`, e.g. a reused spare
/// cache buffer); the rest of `dst` is left as it is.
///
/// # Errors
/// As [`gather_columns_into_map`].
pub fn gather_rows_map_into<T: DeviceElement>(
    src: &DeviceTensor<T>,
    map: &RowMap,
    len: usize,
    dst: &mut DeviceTensor<T>,
) -> Result<()> {
    let (_, _, width) = dims3("src", src)?;
    let range = PositionRange {
        src_at: 0,
        dst_at: 0,
        len,
    };
    let cols = ColumnRange {
        src: 0,
        dst: 0,
        width,
    };
    gather_columns_into_map(src, map, range, cols, dst)
}

/// A `[rows.len(), cap, width]` tensor whose row `r` holds positions
/// `0..len` of `src` row `rows[r]` (zeros past `len`): the KV cache's
/// reorder / drop / grow in one allocation (zero-filled whole) and one
/// launch that copies only the `len` valid positions.
///
/// # Errors
/// As [`gather_rows_into`]; [`Error::Cuda`] when the allocation fails.
pub fn gather_rows<T: DeviceElement>(
    src: &DeviceTensor<T>,
    rows: &[usize],
    len: usize,
    cap: usize,
) -> Result<DeviceTensor<T>> {
    let (_, _, width) = dims3("src", src)?;
    let mut out = DeviceTensor::zeros(src.device(), &[rows.len(), cap, width])?;
    gather_rows_into(
        src,
        Some(rows),
        PositionRange {
            src_at: 0,
            dst_at: 0,
            len,
        },
        &mut out,
    )?;
    Ok(out)
}
