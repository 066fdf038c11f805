//! The launch seam: the few things an op wrapper needs from a runtime
//! (allocate, copy host↔device and device→device, launch a kernel by name
//! with its one params struct, synchronise, time queued work), behind the
//! [`Runtime`] trait.
//!
//! [`super::Device`] and [`super::DeviceTensor`] go through this trait
//! only, and the op wrappers go through `Device` and `DeviceTensor` only, so
//! a second runtime plugs in here without touching any wrapper. Today there
//! is one: [`gpu::GpuRuntime`], the CUDA driver through cudarc. The next is
//! the SIMT emulator, where "device memory" is host memory, an address is a
//! host address, and a launch runs the kernel's host-compiled twin.
//!
//! Device addresses are plain `u64`s (a `CUdeviceptr` on the GPU). Every
//! copy and launch is ordered on the runtime's one stream; reads back to
//! the host wait for it.

pub mod emu;
pub mod gpu;

use std::any::Any;
use std::ffi::c_void;

use crate::Result;

/// One kernel symbol: the module (`kernels/<module>.cu`, one fatbin) and
/// the `extern "C"` name in it. Both are static strings chosen by a `match`
/// in the op's own wrapper file, never formatted at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelRef {
    /// File stem of the kernel's `.cu` file, as in `kernels::FATBINS`.
    pub module: &'static str,
    /// The `extern "C"` symbol.
    pub symbol: &'static str,
}

/// Grid, block and dynamic shared memory of one launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchShape {
    /// Blocks in x, y, z.
    pub grid: (u32, u32, u32),
    /// Threads per block in x, y, z.
    pub block: (u32, u32, u32),
    /// Dynamic shared memory per block, bytes.
    pub shared_mem_bytes: u32,
}

impl LaunchShape {
    /// A 1-D launch of `blocks` blocks of `threads` threads, no dynamic shared memory.
    pub const fn linear(blocks: u32, threads: u32) -> Self {
        LaunchShape {
            grid: (blocks, 1, 1),
            block: (threads, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

/// Calls a kernel's host twin with its params struct: `kernel` is the
/// twin's address, `params` points to one `P` (see
/// [`LaunchParams`]). Monomorphised per params type by the device, so that
/// a runtime that executes host code (the emulator) can pass the struct by
/// value, as the kernel's signature wants.
pub type Trampoline = unsafe extern "C" fn(kernel: *const c_void, params: *const c_void);

/// The [`Trampoline`] of params type `P`.
///
/// # Safety
/// `kernel` must be a host function `extern "C" fn(P)` and `params` must
/// point to a valid `P`.
pub(crate) unsafe extern "C" fn trampoline<P: LaunchParams>(
    kernel: *const c_void,
    params: *const c_void,
) {
    // SAFETY: the caller guarantees `kernel`'s signature and `params`.
    unsafe {
        let f: extern "C" fn(P) = std::mem::transmute::<*const c_void, extern "C" fn(P)>(kernel);
        f(std::ptr::read(params.cast::<P>()));
    }
}

/// A launch-parameter struct from `kernels/include/params.h` (bindgen's
/// `#[repr(C)]` twin): every kernel takes exactly one, by value.
///
/// # Safety
/// Implementors must be `#[repr(C)]` plain data whose bytes are exactly the
/// C struct the kernel declares as its one parameter (bindgen checks the
/// layout); the runtime passes `size_of::<Self>()` bytes at its address.
/// `PartialEq` (field by field, derived by bindgen) tells a replayable
/// step's launches apart ([`super::step_graph`]).
pub unsafe trait LaunchParams: Copy + PartialEq + 'static {}

/// A device allocation: its address, its size, and whatever keeps it alive
/// (dropping the owner frees it, ordered on the runtime's stream).
pub struct Allocation {
    ptr: u64,
    bytes: usize,
    _owner: Box<dyn Any + Send + Sync>,
}

impl Allocation {
    /// Wraps an allocation of `bytes` bytes at `ptr`, freed when `owner` drops.
    pub(crate) fn new(ptr: u64, bytes: usize, owner: Box<dyn Any + Send + Sync>) -> Self {
        Allocation {
            ptr,
            bytes,
            _owner: owner,
        }
    }

    /// The first `bytes` (at least 1) of a shared allocation, kept alive by
    /// a clone of it (a step arena's slot handed out as a tensor); `None`
    /// when `bytes` is larger than the allocation.
    pub(crate) fn prefix(of: &std::sync::Arc<Allocation>, bytes: usize) -> Option<Allocation> {
        let bytes = bytes.max(1);
        (bytes <= of.bytes).then(|| Allocation::new(of.ptr, bytes, Box::new(of.clone())))
    }

    /// The device address of the first byte.
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    /// Size in bytes (at least 1: no runtime allocates zero bytes).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// One node of a graph for [`Runtime::instantiate_graph`]: a kernel launch
/// as [`Runtime::launch`] takes it.
#[derive(Clone, Copy, Debug)]
pub struct GraphNode {
    /// The kernel.
    pub kernel: KernelRef,
    /// Grid, block and dynamic shared memory.
    pub shape: LaunchShape,
    /// The kernel's one params struct (read while the graph is built).
    pub params: *const c_void,
    /// Its size in bytes.
    pub params_size: usize,
}

/// An executable graph: a fixed sequence of launches issued as one unit on
/// the runtime's stream (a CUDA graph on a GPU).
pub trait LaunchGraph: Send + Sync {
    /// Queues the whole graph on the runtime's stream.
    ///
    /// # Errors
    /// A launch error from the runtime.
    fn launch(&self) -> Result<()>;
}

/// Which kind of machine a runtime executes kernels on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    /// A CUDA GPU through the driver API.
    Gpu,
    /// The SIMT emulator: the kernels' host-compiled twins on the CPU.
    Emulator,
}

/// The operations every runtime provides. All work goes to one in-order
/// stream; `copy_dtoh` and `synchronize` wait for it.
///
/// The `unsafe` methods take raw device addresses: the caller guarantees
/// that each names a live allocation of this runtime with room for the
/// bytes touched, and that the host slices outlive the call.
pub trait Runtime: Send + Sync {
    /// GPU or emulator.
    fn kind(&self) -> RuntimeKind;

    /// The device's name (e.g. "NVIDIA H200").
    fn name(&self) -> &str;

    /// `(major, minor)` compute capability the kernels run as.
    fn compute_capability(&self) -> (i32, i32);

    /// Streaming multiprocessors (the unit a launch heuristic fills with
    /// CTAs, e.g. 132 on an H200).
    fn multiprocessor_count(&self) -> u32;

    /// `bytes` (at least 1) of zeroed device memory.
    ///
    /// # Errors
    /// [`crate::Error::Cuda`] (or the runtime's equivalent) when the device
    /// is out of memory.
    fn alloc_zeroed(&self, bytes: usize) -> Result<Allocation>;

    /// Queues a copy of `src` to device address `dst`. `src` may be dropped
    /// as soon as this returns.
    ///
    /// # Safety
    /// `dst .. dst + src.len()` lies in a live allocation of this runtime.
    unsafe fn copy_htod(&self, dst: u64, src: &[u8]) -> Result<()>;

    /// Copies `dst.len()` bytes at device address `src` to `dst`, after all
    /// queued work (waits for the stream).
    ///
    /// # Safety
    /// `src .. src + dst.len()` lies in a live allocation of this runtime.
    unsafe fn copy_dtoh(&self, dst: &mut [u8], src: u64) -> Result<()>;

    /// Queues a device-to-device copy of `bytes` bytes.
    ///
    /// # Safety
    /// Both ranges lie in live allocations of this runtime and do not overlap.
    unsafe fn copy_dtod(&self, dst: u64, src: u64, bytes: usize) -> Result<()>;

    /// Queues `kernel` with `shape`, passing the `params_size` bytes at
    /// `params` (one [`LaunchParams`] struct, padding included, hence a raw
    /// pointer rather than a byte slice) as its single by-value argument.
    /// `call` is the params type's [`Trampoline`], for runtimes that call
    /// host twins (a GPU ignores it).
    ///
    /// # Errors
    /// [`crate::Error::KernelsNotBuilt`] or a load error when the symbol is
    /// not in this build; a launch error from the runtime.
    ///
    /// # Safety
    /// `params` points to `params_size` readable bytes for the duration of
    /// the call; every device address inside them satisfies the kernel's
    /// documented extents, alignment and aliasing rules and stays valid
    /// until the stream has run the kernel.
    unsafe fn launch(
        &self,
        kernel: KernelRef,
        shape: LaunchShape,
        params: *const c_void,
        params_size: usize,
        call: Trampoline,
    ) -> Result<()>;

    /// Builds an executable graph of `nodes`, each depending on the one
    /// before (stream order), for replay with [`LaunchGraph::launch`].
    /// `Ok(None)`: this runtime has no graphs, and the caller re-issues the
    /// launches one by one (the emulator; the default).
    ///
    /// # Errors
    /// A load or graph-building error from the runtime.
    ///
    /// # Safety
    /// As [`Runtime::launch`] for every node, for as long as the graph
    /// lives and may be launched: the addresses inside each node's params
    /// stay valid, and each node's params point to `params_size` readable
    /// bytes during this call.
    unsafe fn instantiate_graph(
        &self,
        nodes: &[GraphNode],
    ) -> Result<Option<Box<dyn LaunchGraph>>> {
        let _ = nodes;
        Ok(None)
    }

    /// Blocks until all queued work has finished; reports asynchronous errors.
    fn synchronize(&self) -> Result<()>;

    /// Seconds the device spent on the work `f` queues (GPU: CUDA events
    /// around it; an emulator: wall clock), after waiting for earlier work.
    fn time(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<f64>;

    /// The concrete runtime, for the few callers that need it (GPU interop).
    fn as_any(&self) -> &dyn Any;
}
