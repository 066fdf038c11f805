//! [`GpuRuntime`]: the CUDA driver API through cudarc: one context (the
//! device's primary context), one stream, every embedded fatbin loaded once.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr};

use super::{Allocation, KernelRef, LaunchShape, Runtime, RuntimeKind};
use crate::cuda::kernels;
use crate::{Error, Result};

/// Maps a driver error into [`Error::Cuda`] tagged with what we were doing.
pub(crate) fn driver(op: &'static str) -> impl FnOnce(cudarc::driver::DriverError) -> Error {
    move |source| Error::Cuda { op, source }
}

/// One GPU: its primary context, one stream for every copy and launch, the
/// embedded kernel modules, and a cache of looked-up functions.
pub struct GpuRuntime {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    modules: HashMap<&'static str, Arc<CudaModule>>,
    functions: Mutex<HashMap<KernelRef, CudaFunction>>,
    name: String,
    compute_capability: (i32, i32),
    multiprocessors: u32,
}

impl GpuRuntime {
    /// Opens GPU `ordinal` and loads every embedded kernel module.
    ///
    /// Turns cudarc's per-buffer event tracking off for the context: every
    /// buffer, copy and launch of the crate goes to one stream, whose order
    /// is all the synchronisation needed (see [`crate::cuda::Device::open`]).
    ///
    /// # Errors
    /// [`Error::KernelsNotBuilt`] when this build has no kernels;
    /// [`Error::NoCuda`] when libcuda cannot be loaded, the driver fails to
    /// initialise or there is no device `ordinal`; [`Error::Cuda`] when a
    /// module fails to load (e.g. a driver too old for the embedded code).
    pub fn open(ordinal: usize) -> Result<Self> {
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
        // runtime's one stream, so stream order alone serialises all uses of
        // a buffer (including its stream-ordered free); cudarc's per-buffer
        // events would only add two event records per launch. The crate's
        // API takes device memory only as `DeviceTensor`s allocated here, or
        // as raw addresses in the `unsafe` launch API, whose callers must
        // synchronise their own streams with this one (documented there).
        unsafe { ctx.disable_event_tracking() };
        keep_freed_memory_pooled(&ctx);
        let stream = ctx.default_stream();
        let mut modules = HashMap::new();
        for &(stem, image, _) in kernels::FATBINS {
            let ptx = cudarc::nvrtc::Ptx::from_binary(image.to_vec());
            let module = ctx.load_module(ptx).map_err(driver("load kernel module"))?;
            modules.insert(stem, module);
        }
        let name = ctx.name().map_err(driver("device name"))?;
        let compute_capability = ctx
            .compute_capability()
            .map_err(driver("compute capability"))?;
        let multiprocessors = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .map_err(driver("multiprocessor count"))?;
        Ok(GpuRuntime {
            multiprocessors: u32::try_from(multiprocessors).unwrap_or(1).max(1),
            ctx,
            stream,
            modules,
            functions: Mutex::new(HashMap::new()),
            name,
            compute_capability,
        })
    }

    /// The stream every copy and launch goes to (for interop: work of yours
    /// on another stream must be synchronised with this one).
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The CUDA context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The loaded function for `kernel`, looked up once and cached.
    fn function(&self, kernel: KernelRef) -> Result<CudaFunction> {
        let mut cache = self
            .functions
            .lock()
            .map_err(|_| Error::invalid("kernel", "kernel cache poisoned by an earlier panic"))?;
        if let Some(f) = cache.get(&kernel) {
            return Ok(f.clone());
        }
        let module = self
            .modules
            .get(kernel.module)
            .ok_or(Error::KernelsNotBuilt)?;
        let f = module
            .load_function(kernel.symbol)
            .map_err(driver("load kernel function"))?;
        cache.insert(kernel, f.clone());
        Ok(f)
    }
}

impl GpuRuntime {
    /// The function for `kernel`, opted in to `shape`'s dynamic shared
    /// memory when that is above the default 48 KiB.
    fn prepared(&self, kernel: KernelRef, shape: LaunchShape) -> Result<CudaFunction> {
        let func = self.function(kernel)?;
        if shape.shared_mem_bytes > DEFAULT_MAX_DYNAMIC_SHARED {
            // Above 48 KiB a kernel must opt in (CUDA Programming Guide,
            // "Shared Memory": cudaFuncSetAttribute with
            // MaxDynamicSharedMemorySize); setting it again is harmless.
            let bytes = i32::try_from(shape.shared_mem_bytes).unwrap_or(i32::MAX);
            func.set_attribute(
                cudarc::driver::sys::CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                bytes,
            )
            .map_err(driver("set the kernel's dynamic shared memory size"))?;
        }
        Ok(func)
    }
}

/// A CUDA graph built node by node from recorded launches (driver API:
/// `cuGraphCreate`, `cuGraphAddKernelNode`, `cuGraphInstantiateWithFlags`;
/// CUDA Programming Guide, "CUDA Graphs", creation through the graph API)
/// and launched with `cuGraphLaunch` on the runtime's stream. Compiled,
/// not yet run on a GPU.
struct GpuGraph {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    graph: cudarc::driver::sys::CUgraph,
    exec: cudarc::driver::sys::CUgraphExec,
}

// SAFETY: the handles are plain driver handles; the driver API is
// thread-safe, and every launch goes to the runtime's one stream.
unsafe impl Send for GpuGraph {}
// SAFETY: as for Send; `launch` takes `&self` and only queues work.
unsafe impl Sync for GpuGraph {}

impl super::LaunchGraph for GpuGraph {
    fn launch(&self) -> Result<()> {
        use cudarc::driver::sys;
        self.ctx.bind_to_thread().map_err(driver("bind context"))?;
        // SAFETY: `exec` is a live executable graph of this context; the
        // stream belongs to the same context.
        unsafe { sys::cuGraphLaunch(self.exec, self.stream.cu_stream()) }
            .result()
            .map_err(driver("cuGraphLaunch"))
    }
}

impl Drop for GpuGraph {
    fn drop(&mut self) {
        use cudarc::driver::sys;
        let _ = self.ctx.bind_to_thread();
        // SAFETY: both handles were created by `instantiate_graph` and are
        // destroyed once, here; a launch queued earlier keeps its own
        // reference in the driver (cuGraphExecDestroy may be called while
        // a launch is pending).
        unsafe {
            if !self.exec.is_null() {
                let _ = sys::cuGraphExecDestroy(self.exec);
            }
            if !self.graph.is_null() {
                let _ = sys::cuGraphDestroy(self.graph);
            }
        }
    }
}

/// Dynamic shared memory a kernel may use without opting in, bytes.
const DEFAULT_MAX_DYNAMIC_SHARED: u32 = 48 * 1024;

impl Runtime for GpuRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Gpu
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn compute_capability(&self) -> (i32, i32) {
        self.compute_capability
    }

    fn multiprocessor_count(&self) -> u32 {
        self.multiprocessors
    }

    fn alloc_zeroed(&self, bytes: usize) -> Result<Allocation> {
        let bytes = bytes.max(1);
        let slice: CudaSlice<u8> = self.stream.alloc_zeros(bytes).map_err(|e| {
            if e.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
                Error::OutOfMemory {
                    device: self.name.clone(),
                    bytes,
                    hint: String::new(),
                }
            } else {
                driver("alloc_zeros")(e)
            }
        })?;
        let ptr = {
            // Event tracking is off (see `open`): the guard records nothing.
            let (ptr, _sync) = slice.device_ptr(&self.stream);
            ptr
        };
        Ok(Allocation::new(ptr, bytes, Box::new(slice)))
    }

    unsafe fn copy_htod(&self, dst: u64, src: &[u8]) -> Result<()> {
        if src.is_empty() {
            return Ok(());
        }
        // SAFETY: the caller guarantees the destination range; a copy from
        // pageable host memory returns only once `src` has been staged, so
        // `src` may be dropped afterwards.
        unsafe { cudarc::driver::result::memcpy_htod_async(dst, src, self.stream.cu_stream()) }
            .map_err(driver("memcpy_htod"))
    }

    unsafe fn copy_dtoh(&self, dst: &mut [u8], src: u64) -> Result<()> {
        if dst.is_empty() {
            return Ok(());
        }
        // SAFETY: the caller guarantees the source range; `dst` is borrowed
        // mutably until the synchronisation below has completed the copy.
        unsafe { cudarc::driver::result::memcpy_dtoh_async(dst, src, self.stream.cu_stream()) }
            .map_err(driver("memcpy_dtoh"))?;
        self.stream
            .synchronize()
            .map_err(driver("synchronize after memcpy_dtoh"))
    }

    unsafe fn copy_dtod(&self, dst: u64, src: u64, bytes: usize) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        // SAFETY: the caller guarantees both ranges and that they are disjoint.
        unsafe {
            cudarc::driver::result::memcpy_dtod_async(dst, src, bytes, self.stream.cu_stream())
        }
        .map_err(driver("memcpy_dtod"))
    }

    unsafe fn launch(
        &self,
        kernel: KernelRef,
        shape: LaunchShape,
        params: *const core::ffi::c_void,
        _params_size: usize,
        _call: super::Trampoline,
    ) -> Result<()> {
        let func = self.prepared(kernel, shape)?;
        let mut args = [params.cast_mut()];
        // SAFETY: `params` points to the kernel's one by-value parameter (a
        // params.h struct; the driver copies as many bytes as the kernel
        // declares, which is the struct's size); the caller
        // guarantees the addresses inside it. The function belongs to this
        // context and the stream to this context.
        unsafe {
            cudarc::driver::result::launch_kernel(
                func.cu_function(),
                shape.grid,
                shape.block,
                shape.shared_mem_bytes,
                self.stream.cu_stream(),
                &mut args,
            )
        }
        .map_err(driver("launch kernel"))
    }

    unsafe fn instantiate_graph(
        &self,
        nodes: &[super::GraphNode],
    ) -> Result<Option<Box<dyn super::LaunchGraph>>> {
        use cudarc::driver::sys;
        self.ctx.bind_to_thread().map_err(driver("bind context"))?;
        let mut g = GpuGraph {
            ctx: self.ctx.clone(),
            stream: self.stream.clone(),
            graph: std::ptr::null_mut(),
            exec: std::ptr::null_mut(),
        };
        // SAFETY: out-pointer to a graph handle; owned (and destroyed) by `g`.
        unsafe { sys::cuGraphCreate(&mut g.graph, 0) }
            .result()
            .map_err(driver("cuGraphCreate"))?;
        let mut prev: Option<sys::CUgraphNode> = None;
        for node in nodes {
            let func = self.prepared(node.kernel, node.shape)?;
            let mut args = [node.params.cast_mut()];
            let p = sys::CUDA_KERNEL_NODE_PARAMS {
                func: func.cu_function(),
                gridDimX: node.shape.grid.0,
                gridDimY: node.shape.grid.1,
                gridDimZ: node.shape.grid.2,
                blockDimX: node.shape.block.0,
                blockDimY: node.shape.block.1,
                blockDimZ: node.shape.block.2,
                sharedMemBytes: node.shape.shared_mem_bytes,
                kernelParams: args.as_mut_ptr(),
                extra: std::ptr::null_mut(),
                kern: std::ptr::null_mut(),
                ctx: std::ptr::null_mut(),
            };
            let deps: &[sys::CUgraphNode] = prev.as_slice();
            let mut added: sys::CUgraphNode = std::ptr::null_mut();
            // SAFETY: the driver copies the node's parameters (the params
            // struct's bytes, which the caller keeps readable during this
            // call) when the node is added; `deps` are nodes of this graph.
            unsafe {
                sys::cuGraphAddKernelNode_v2(&mut added, g.graph, deps.as_ptr(), deps.len(), &p)
            }
            .result()
            .map_err(driver("cuGraphAddKernelNode"))?;
            prev = Some(added);
        }
        // SAFETY: out-pointer to an executable graph; owned by `g`.
        unsafe { sys::cuGraphInstantiateWithFlags(&mut g.exec, g.graph, 0) }
            .result()
            .map_err(driver("cuGraphInstantiate"))?;
        Ok(Some(Box::new(g)))
    }

    fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(driver("stream synchronize"))
    }

    fn time(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
        self.synchronize()?;
        let flags = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = self
            .stream
            .record_event(flags)
            .map_err(driver("record event"))?;
        f()?;
        let end = self
            .stream
            .record_event(flags)
            .map_err(driver("record event"))?;
        let ms = start.elapsed_ms(&end).map_err(driver("event elapsed"))?;
        Ok(f64::from(ms) / 1e3)
    }

    fn as_any(&self) -> &dyn Any {
        self
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

/// Makes the device's default memory pool keep freed memory instead of
/// returning it to the driver at every synchronisation (release threshold
/// 0 by default). cudarc allocates with `cuMemAllocAsync` from that pool
/// when the device supports it, and the model's decode loop allocates and
/// frees the same activation sizes every step, each step ending with a
/// synchronising top-k download: with the threshold at its maximum those
/// allocations are served from the pool (as PyTorch's caching allocator
/// does). Best effort: a driver without memory pools keeps its default,
/// which is only slower, so errors are ignored. Compiled, not yet run on a
/// GPU.
fn keep_freed_memory_pooled(ctx: &CudaContext) {
    use cudarc::driver::sys;
    if !ctx.has_async_alloc() {
        return;
    }
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    let mut threshold: u64 = u64::MAX;
    // SAFETY: `pool` is a valid out-pointer; the device handle comes from a
    // live context; the attribute takes a pointer to a u64 (cuuint64_t).
    unsafe {
        if sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) == sys::CUresult::CUDA_SUCCESS
        {
            let _ = sys::cuMemPoolSetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                (&mut threshold as *mut u64).cast(),
            );
        }
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
