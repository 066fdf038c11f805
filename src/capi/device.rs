//! `TkDevice`: a GPU or the emulator, with allocation and copy helpers for
//! engines without their own allocator (and for the C example).

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

use super::{guard, non_null, TkStatus};
use crate::cuda::runtime::Allocation;
use crate::cuda::{Device, RuntimeKind};
use crate::Error;

/// A device (opaque): GPU `ordinal` or the SIMT emulator; its allocations
/// made through [`tk_malloc`].
pub struct TkDevice {
    pub(crate) device: Arc<Device>,
    allocations: Mutex<HashMap<u64, Allocation>>,
}

fn boxed(device: Arc<Device>, out: *mut *mut TkDevice) -> crate::Result<()> {
    non_null(out, "out")?;
    let d = Box::new(TkDevice {
        device,
        allocations: Mutex::new(HashMap::new()),
    });
    // SAFETY: `out` is non-null and, by the contract, writable.
    unsafe { *out = Box::into_raw(d) };
    Ok(())
}

/// The device behind a handle, or an error for NULL.
pub(crate) fn device_of<'a>(dev: *const TkDevice) -> crate::Result<&'a TkDevice> {
    non_null(dev, "device")?;
    // SAFETY: non-null, and by the contract a live handle from tk_device_open*.
    Ok(unsafe { &*dev })
}

/// Opens GPU `ordinal` into `*out`.
///
/// # Safety
/// `out` must be a valid pointer to write a handle to.
#[no_mangle]
pub unsafe extern "C" fn tk_device_open(ordinal: i32, out: *mut *mut TkDevice) -> TkStatus {
    guard(|| {
        let n = usize::try_from(ordinal)
            .map_err(|_| Error::invalid("tk_device_open", format!("ordinal {ordinal} < 0")))?;
        boxed(Device::open(n)?, out)
    })
}

/// Opens the SIMT emulator (the kernels run as host code on the CPU;
/// "device" pointers are host addresses) into `*out`.
///
/// # Safety
/// `out` must be a valid pointer to write a handle to.
#[no_mangle]
pub unsafe extern "C" fn tk_device_open_emulator(out: *mut *mut TkDevice) -> TkStatus {
    guard(|| boxed(Device::emulator()?, out))
}

/// Releases a device and every allocation still held by [`tk_malloc`]
/// (after waiting for its stream). NULL is allowed.
///
/// # Safety
/// `dev` is NULL or a handle from `tk_device_open*` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn tk_device_free(dev: *mut TkDevice) {
    if dev.is_null() {
        return;
    }
    let _ = guard(|| {
        // SAFETY: a live handle, by the contract; never used again.
        let d = unsafe { Box::from_raw(dev) };
        let _ = d.device.synchronize();
        Ok(())
    });
}

/// 1 when `dev` is the emulator, 0 for a GPU (or NULL).
///
/// # Safety
/// `dev` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn tk_device_is_emulator(dev: *const TkDevice) -> i32 {
    device_of(dev).map_or(0, |d| i32::from(d.device.kind() == RuntimeKind::Emulator))
}

/// The device's stream (a `CUstream` on a GPU; NULL on the emulator or for
/// NULL): every launch and copy of this device goes to it, in call order.
///
/// # Safety
/// `dev` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn tk_device_stream(dev: *const TkDevice) -> *mut c_void {
    device_of(dev)
        .ok()
        .and_then(|d| d.device.cuda_stream())
        .map_or(std::ptr::null_mut(), |s| s.cu_stream().cast())
}

/// Waits for every queued copy and launch of `dev`; reports asynchronous
/// errors.
///
/// # Safety
/// `dev` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn tk_device_synchronize(dev: *const TkDevice) -> TkStatus {
    guard(|| device_of(dev)?.device.synchronize())
}

/// `bytes` of zeroed device memory into `*out` (released by [`tk_free`] or
/// with the device).
///
/// # Safety
/// `dev` is a live handle; `out` a valid pointer.
#[no_mangle]
pub unsafe extern "C" fn tk_malloc(
    dev: *const TkDevice,
    bytes: usize,
    out: *mut *mut c_void,
) -> TkStatus {
    guard(|| {
        let d = device_of(dev)?;
        non_null(out, "out")?;
        let a = d.device.alloc_zeroed(bytes)?;
        let ptr = a.ptr();
        d.allocations
            .lock()
            .map_err(|_| Error::invalid("tk_malloc", "allocation table poisoned"))?
            .insert(ptr, a);
        // SAFETY: `out` is non-null and writable by the contract.
        unsafe { *out = ptr as *mut c_void };
        Ok(())
    })
}

/// Frees memory from [`tk_malloc`] (ordered after the queued work that
/// uses it). NULL is allowed.
///
/// # Safety
/// `dev` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn tk_free(dev: *const TkDevice, ptr: *mut c_void) -> TkStatus {
    guard(|| {
        let d = device_of(dev)?;
        if ptr.is_null() {
            return Ok(());
        }
        let removed = d
            .allocations
            .lock()
            .map_err(|_| Error::invalid("tk_free", "allocation table poisoned"))?
            .remove(&(ptr as u64));
        match removed {
            Some(_) => Ok(()),
            None => Err(Error::invalid(
                "tk_free",
                format!("{ptr:p} was not allocated by tk_malloc on this device"),
            )),
        }
    })
}

/// The allocation of `dev` holding `[ptr, ptr + bytes)`, checked.
fn check_range(d: &TkDevice, ptr: u64, bytes: usize, op: &'static str) -> crate::Result<()> {
    let table = d
        .allocations
        .lock()
        .map_err(|_| Error::invalid(op, "allocation table poisoned"))?;
    let inside = table.values().any(|a| {
        ptr >= a.ptr()
            && ptr
                .checked_add(bytes as u64)
                .is_some_and(|end| end <= a.ptr() + a.bytes() as u64)
    });
    if inside {
        Ok(())
    } else {
        Err(Error::invalid(
            op,
            format!("[{ptr:#x}, +{bytes}) is not inside an allocation of tk_malloc on this device"),
        ))
    }
}

/// Copies `bytes` from host `src` to device `dst` (inside a [`tk_malloc`]
/// allocation), queued on the device's stream.
///
/// # Safety
/// `dev` is a live handle; `src` points to `bytes` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn tk_memcpy_htod(
    dev: *const TkDevice,
    dst: *mut c_void,
    src: *const c_void,
    bytes: usize,
) -> TkStatus {
    guard(|| {
        let d = device_of(dev)?;
        non_null(src, "src")?;
        check_range(d, dst as u64, bytes, "tk_memcpy_htod")?;
        // SAFETY: `src` holds `bytes` bytes (contract); `dst` range checked.
        unsafe {
            let host = std::slice::from_raw_parts(src.cast::<u8>(), bytes);
            d.device.copy_htod(dst as u64, host)
        }
    })
}

/// Copies `bytes` from device `src` (inside a [`tk_malloc`] allocation) to
/// host `dst`, after the queued work (waits for the stream).
///
/// # Safety
/// `dev` is a live handle; `dst` points to `bytes` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn tk_memcpy_dtoh(
    dev: *const TkDevice,
    dst: *mut c_void,
    src: *const c_void,
    bytes: usize,
) -> TkStatus {
    guard(|| {
        let d = device_of(dev)?;
        non_null(dst, "dst")?;
        check_range(d, src as u64, bytes, "tk_memcpy_dtoh")?;
        // SAFETY: `dst` holds `bytes` writable bytes (contract); `src` checked.
        unsafe {
            let host = std::slice::from_raw_parts_mut(dst.cast::<u8>(), bytes);
            d.device.copy_dtoh(host, src as u64)
        }
    })
}
