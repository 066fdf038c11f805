//! A device: one runtime (a GPU today; the SIMT emulator next) behind the
//! launch seam of [`super::runtime`], shared by every tensor allocated on it.

use std::sync::Arc;

use super::runtime::gpu::GpuRuntime;
use super::runtime::{Allocation, KernelRef, LaunchParams, LaunchShape, Runtime, RuntimeKind};
use super::step_graph::{StepEnd, StepGraph, StepSlot};
use crate::Result;

pub use super::runtime::gpu::{device_count, driver_available};

/// One device: its runtime and one in-order stream that every allocation,
/// copy and launch of the crate goes to.
///
/// Cheap to share: [`Device::open`] returns it in an `Arc`, and every
/// [`super::DeviceTensor`] keeps one.
pub struct Device {
    runtime: Arc<dyn Runtime>,
    /// Process-unique number, so that two devices of the same kind are
    /// told apart in messages.
    id: u64,
    /// The replayable step in progress, if any (see [`super::step_graph`]);
    /// shared with the device's allocations, whose frees consult it.
    step: Arc<StepSlot>,
    /// Allocations made (a counter for tests: a steady decode loop makes none).
    allocations: std::sync::atomic::AtomicU64,
}

static NEXT_DEVICE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("id", &self.id)
            .field("kind", &self.runtime.kind())
            .field("name", &self.runtime.name())
            .field("compute_capability", &self.runtime.compute_capability())
            .finish()
    }
}

impl Device {
    /// Opens GPU `ordinal` and loads every embedded kernel module.
    ///
    /// Every buffer, copy and launch of the crate on this device goes to one
    /// stream (on a GPU: [`Device::cuda_stream`]), whose order is all the
    /// synchronisation needed; cudarc's per-buffer event tracking is off.
    /// Work of your own on other streams that reads or writes a crate
    /// buffer (or whose buffers the crate reads) gets no automatic
    /// synchronisation: synchronise those streams with this one first.
    ///
    /// # Errors
    /// - [`crate::Error::KernelsNotBuilt`] when this build has no kernels
    ///   (no nvcc at build time), whether or not a GPU is present;
    /// - [`crate::Error::NoCuda`] when libcuda cannot be loaded, the driver
    ///   fails to initialise, or there is no device `ordinal`;
    /// - [`crate::Error::Cuda`] when a module fails to load (e.g. a driver too
    ///   old for the embedded SASS/PTX).
    pub fn open(ordinal: usize) -> Result<Arc<Device>> {
        Ok(Self::with_runtime(Box::new(GpuRuntime::open(ordinal)?)))
    }

    /// The SIMT emulator: every kernel's host twin on the CPU, with the
    /// scheduling order of `TK_EMU_SCHEDULE` (see
    /// [`super::runtime::emu`]). For tests and `verify --device emu`; it
    /// proves indexing, tails, masks and synchronisation, not speed.
    ///
    /// # Errors
    /// [`crate::Error::KernelsNotBuilt`] when this build has no emulator.
    pub fn emulator() -> Result<Arc<Device>> {
        Ok(Self::with_runtime(Box::new(
            super::runtime::emu::EmuRuntime::new()?,
        )))
    }

    /// A device over any runtime (the seam a second runtime plugs into).
    pub fn with_runtime(runtime: Box<dyn Runtime>) -> Arc<Device> {
        Arc::new(Device {
            runtime: Arc::from(runtime),
            id: NEXT_DEVICE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            step: Arc::new(StepSlot::default()),
            allocations: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// GPU or emulator.
    pub fn kind(&self) -> RuntimeKind {
        self.runtime.kind()
    }

    /// The device's name (e.g. "NVIDIA H200").
    pub fn name(&self) -> &str {
        self.runtime.name()
    }

    /// `(major, minor)` compute capability, e.g. `(9, 0)` for Hopper.
    pub fn compute_capability(&self) -> (i32, i32) {
        self.runtime.compute_capability()
    }

    /// Streaming multiprocessors (132 on an H200; the emulator reports an
    /// H200's count, so that launch heuristics choose as they would there).
    pub fn multiprocessor_count(&self) -> u32 {
        self.runtime.multiprocessor_count()
    }

    /// Blocks until all queued work has finished and reports any
    /// asynchronous launch error.
    pub fn synchronize(&self) -> Result<()> {
        self.runtime.synchronize()
    }

    /// Seconds the device spends on the work `f` queues (GPU: CUDA events
    /// around it, after earlier work has finished). For benchmarks.
    ///
    /// # Errors
    /// Whatever `f` returns, or a runtime error.
    pub fn time(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
        self.runtime.time(f)
    }

    /// On a GPU, the CUDA stream every copy and launch goes to (for engines
    /// that interoperate on their own streams); `None` on other runtimes.
    pub fn cuda_stream(&self) -> Option<&Arc<cudarc::driver::CudaStream>> {
        self.runtime
            .as_any()
            .downcast_ref::<GpuRuntime>()
            .map(GpuRuntime::stream)
    }

    /// Device allocations made so far through this device (tensors,
    /// workspaces, caches): a steady decode loop makes none.
    pub fn allocation_count(&self) -> u64 {
        self.allocations.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Starts a replayable step on the calling thread (see
    /// [`super::step_graph`]): until [`Device::end_step`], the thread's
    /// launches are compared with the `candidates`' and deferred, or issued
    /// and logged. Other threads' work on the device is not part of it.
    ///
    /// # Errors
    /// [`crate::Error::InvalidArgument`] when a step is already open on
    /// this device.
    pub fn begin_step(&self, candidates: Vec<Arc<StepGraph>>) -> Result<()> {
        self.step.begin(candidates)
    }

    /// Ends the calling thread's step: replays the candidate that matched
    /// every launch, or returns the step's launches as a new graph.
    ///
    /// # Errors
    /// [`crate::Error::InvalidArgument`] without a step of this thread; a
    /// launch error (the step is closed either way).
    pub fn end_step(&self) -> Result<StepEnd> {
        self.step.end(&*self.runtime)
    }

    /// Abandons the calling thread's step (after an error inside it):
    /// launches deferred so far are dropped, not issued. Does nothing
    /// without one.
    pub fn abort_step(&self) {
        self.step.abort();
    }

    /// True between [`Device::begin_step`] and its end, on the thread that
    /// began it.
    pub fn in_step(&self) -> bool {
        self.step.is_open()
    }

    pub(crate) fn alloc_zeroed(&self, bytes: usize) -> Result<Allocation> {
        self.step.alloc(&*self.runtime)?;
        self.allocations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let inner = self.runtime.alloc_zeroed(bytes)?;
        // Its free issues a step's deferred launches first (they may name it).
        Ok(self.step.guard_free(inner, &self.runtime))
    }

    /// Lets an open step see a copy (see [`super::step_graph`]).
    fn step_copy(&self) -> Result<()> {
        self.step.copy(&*self.runtime)
    }

    /// See [`Runtime::copy_htod`].
    pub(crate) unsafe fn copy_htod(&self, dst: u64, src: &[u8]) -> Result<()> {
        self.step_copy()?;
        // SAFETY: forwarded; the caller upholds the runtime's contract.
        unsafe { self.runtime.copy_htod(dst, src) }
    }

    /// See [`Runtime::copy_dtoh`].
    pub(crate) unsafe fn copy_dtoh(&self, dst: &mut [u8], src: u64) -> Result<()> {
        self.step_copy()?;
        // SAFETY: forwarded; the caller upholds the runtime's contract.
        unsafe { self.runtime.copy_dtoh(dst, src) }
    }

    /// See [`Runtime::copy_dtod`].
    pub(crate) unsafe fn copy_dtod(&self, dst: u64, src: u64, bytes: usize) -> Result<()> {
        self.step_copy()?;
        // SAFETY: forwarded; the caller upholds the runtime's contract.
        unsafe { self.runtime.copy_dtod(dst, src, bytes) }
    }

    /// Queues `kernel` with `shape` and its one params struct.
    ///
    /// # Safety
    /// As [`Runtime::launch`]: the addresses in `params` satisfy the
    /// kernel's extents, alignment and aliasing rules until it has run.
    pub(crate) unsafe fn launch<P: LaunchParams>(
        &self,
        kernel: KernelRef,
        shape: LaunchShape,
        params: &P,
    ) -> Result<()> {
        if let Some(done) = self.step.launch(&*self.runtime, kernel, shape, params) {
            return done;
        }
        let ptr = (params as *const P).cast::<core::ffi::c_void>();
        // SAFETY: `P: LaunchParams` is the kernel's `#[repr(C)]` parameter
        // struct, readable at `ptr` for `size_of::<P>()` bytes while
        // `params` is borrowed; the caller upholds the addresses' contract.
        unsafe {
            self.runtime.launch(
                kernel,
                shape,
                ptr,
                std::mem::size_of::<P>(),
                super::runtime::trampoline::<P>,
            )
        }
    }
}

/// Opens device 0 for a test or bench, or returns the reason it cannot,
/// so that GPU tests can print one line saying why they were skipped.
pub fn test_device() -> std::result::Result<Arc<Device>, String> {
    Device::open(0).map_err(|e| e.to_string())
}
