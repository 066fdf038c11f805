//! A CUDA device: context, one stream, the loaded kernel modules.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream};

use super::kernels::{self, KernelId, Module};
use crate::{Error, Result};

/// Maps a driver error into [`Error::Cuda`] tagged with what we were doing.
pub(crate) fn driver(op: &'static str) -> impl FnOnce(cudarc::driver::DriverError) -> Error {
    move |source| Error::Cuda { op, source }
}

/// One GPU: a CUDA context (the device's primary context), one stream every
/// launch and copy of this crate goes to, and every embedded kernel module,
/// loaded once when the device is opened.
///
/// Cheap to share: wrap in `Arc` (as [`Device::open`] returns it).
pub struct Device {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    modules: HashMap<Module, Arc<CudaModule>>,
    functions: Mutex<HashMap<KernelId, CudaFunction>>,
    name: String,
    compute_capability: (i32, i32),
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("ordinal", &self.ctx.ordinal())
            .field("name", &self.name)
            .field("compute_capability", &self.compute_capability)
            .finish()
    }
}

impl Device {
    /// Opens GPU `ordinal` and loads every embedded kernel module.
    ///
    /// The device turns cudarc's per-buffer event tracking off for its
    /// context: every buffer, copy and launch of the crate goes to one
    /// stream ([`Device::stream`]), whose order is all the synchronisation
    /// needed. Work of your own on other streams of this context that reads
    /// or writes a crate buffer (or whose buffers the crate reads) gets no
    /// automatic synchronisation: synchronise those streams with
    /// [`Device::stream`] first (e.g. `CudaStream::synchronize`, or an event
    /// recorded on one and waited on by the other).
    ///
    /// # Errors
    /// - [`Error::KernelsNotBuilt`] when this build has no kernels (no nvcc
    ///   at build time), whether or not a GPU is present;
    /// - [`Error::NoCuda`] when libcuda cannot be loaded, the driver fails to
    ///   initialise, or there is no device `ordinal`;
    /// - [`Error::Cuda`] when a module fails to load (e.g. a driver too old
    ///   for the embedded SASS/PTX).
    pub fn open(ordinal: usize) -> Result<Arc<Device>> {
        if !kernels::KERNELS_BUILT {
            return Err(Error::KernelsNotBuilt);
        }
        driver_available()?;
        let count = device_count()?;
        if ordinal >= count {
            return Err(Error::NoCuda(format!(
                "device {ordinal} requested but the driver sees {count} device(s)"
            )));
        }
        let ctx = catch_driver_panic("CudaContext::new", || CudaContext::new(ordinal))?
            .map_err(|e| Error::NoCuda(format!("cannot open device {ordinal}: {e}")))?;
        // SAFETY: every allocation, copy and launch of this crate goes to the
        // device's one stream, so stream order alone serialises all uses of a
        // buffer (including its stream-ordered free); cudarc's per-buffer
        // events would only add two event records per launch. The crate keeps
        // this true: its API takes device buffers only as `DeviceTensor`s
        // (allocated on this stream) or, in
        // `embedding::embedding_from_device_ids`, a `CudaSlice` whose stream
        // is checked to be this one. Callers who touch those buffers from
        // other streams (through `DeviceTensor::as_cuda_slice` or the raw
        // launch API) must synchronise with this stream first (documented
        // on `Device::open`, `Device::stream` and `as_cuda_slice`).
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let mut modules = HashMap::new();
        for &m in Module::ALL {
            let image = kernels::fatbin(m).ok_or(Error::KernelsNotBuilt)?;
            let ptx = cudarc::nvrtc::Ptx::from_binary(image.to_vec());
            let module = ctx.load_module(ptx).map_err(driver("load kernel module"))?;
            modules.insert(m, module);
        }
        let name = ctx.name().map_err(driver("device name"))?;
        let compute_capability = ctx
            .compute_capability()
            .map_err(driver("compute capability"))?;
        Ok(Arc::new(Device {
            ctx,
            stream,
            modules,
            functions: Mutex::new(HashMap::new()),
            name,
            compute_capability,
        }))
    }

    /// The device's name as the driver reports it (e.g. "NVIDIA H200").
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `(major, minor)` compute capability, e.g. `(9, 0)` for Hopper.
    pub fn compute_capability(&self) -> (i32, i32) {
        self.compute_capability
    }

    /// The stream every launch and copy of this device goes to. Work queued
    /// here is ordered with the crate's own; work on any other stream must
    /// be synchronised with this one by the caller (see [`Device::open`]).
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The CUDA context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Blocks until all work queued on [`Device::stream`] has finished and
    /// reports any asynchronous launch error.
    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(driver("stream synchronize"))
    }

    /// The loaded function for `id`, looked up once and cached.
    pub(crate) fn function(&self, id: KernelId) -> Result<CudaFunction> {
        let symbol = id
            .symbol()
            .ok_or_else(|| Error::invalid("kernel", format!("no kernel for {id:?}")))?;
        let mut cache = self
            .functions
            .lock()
            .map_err(|_| Error::invalid("kernel", "kernel cache poisoned by an earlier panic"))?;
        if let Some(f) = cache.get(&id) {
            return Ok(f.clone());
        }
        let module = self
            .modules
            .get(&id.module())
            .ok_or(Error::KernelsNotBuilt)?;
        let f = module
            .load_function(symbol)
            .map_err(driver("load kernel function"))?;
        cache.insert(id, f.clone());
        Ok(f)
    }
}

/// Checks that libcuda can be loaded, without letting cudarc's dynamic
/// loader panic (it panics when the library is absent).
pub fn driver_available() -> Result<()> {
    // SAFETY: `is_culib_present` only tries `dlopen` on the library names and
    // drops the handles; it has no other side effects.
    let present = unsafe { cudarc::driver::sys::is_culib_present() };
    if present {
        Ok(())
    } else {
        Err(Error::NoCuda(
            "the CUDA driver library (libcuda.so) is not installed or not on the loader path"
                .into(),
        ))
    }
}

/// Number of CUDA devices the driver sees.
///
/// # Errors
/// [`Error::NoCuda`] when the driver library is absent or fails to initialise.
pub fn device_count() -> Result<usize> {
    driver_available()?;
    let n = catch_driver_panic("cuDeviceGetCount", || {
        cudarc::driver::result::init()?;
        cudarc::driver::result::device::get_count()
    })?
    .map_err(|e| Error::NoCuda(format!("the CUDA driver failed to initialise: {e}")))?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Runs a driver call, turning a panic of cudarc's loader (a symbol missing
/// from an old driver) into [`Error::NoCuda`].
fn catch_driver_panic<T>(what: &'static str, f: impl FnOnce() -> T) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|_| {
        Error::NoCuda(format!(
            "{what}: the CUDA driver library lacks a required symbol"
        ))
    })
}

/// Opens device 0 for a test or bench, or returns the reason it cannot,
/// so that GPU tests can print one line saying why they were skipped.
pub fn test_device() -> std::result::Result<Arc<Device>, String> {
    Device::open(0).map_err(|e| e.to_string())
}
