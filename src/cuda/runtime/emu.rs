//! [`EmuRuntime`]: the SIMT emulator behind the launch seam. Device memory
//! is host memory (a device address is a host address), copies are
//! `memcpy`, and a launch runs the kernel's host-compiled twin
//! (build/emu.rs) with every CUDA thread as a fiber
//! (`kernels/emu/runtime.cpp`).
//!
//! What it checks, beyond the numbers: barriers every thread of a block
//! reaches, warp collectives whose masks name present, waiting lanes
//! (emu.h); reads and writes past either end of an allocation (each is
//! fenced by 256 poison bytes: an access into a fence stops the kernel,
//! and the fences are checked again after every launch); data races on
//! `__shared__` and device memory within a block (the race detector of
//! kernels/emu/runtime.cpp); and cp.async stages read before their wait
//! (poison: NaN in every float dtype).
//!
//! What it cannot show: speed, occupancy, bank conflicts, races between
//! blocks (they run one after another), the device's own rounding of
//! fast-math intrinsics (`__expf`, `__sincosf` are the host libm here),
//! memory-model subtleties, and the PTX strings themselves: a GPU run is
//! still the final word.
//!
//! Launches are serialised process-wide (one kernel at a time): `__shared__`
//! variables are statics of the twins.

use std::alloc::Layout;
use std::any::Any;
use std::collections::HashMap;
use std::ffi::c_void;
#[cfg(tk_emu_built)]
use std::ffi::{c_char, CString};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{Allocation, KernelRef, LaunchShape, Runtime, RuntimeKind, Trampoline};
use crate::{Error, Result};

#[cfg(tk_emu_built)]
include!(concat!(env!("OUT_DIR"), "/emu_kernels.rs"));

/// `(module, symbol, host twin)` of every kernel; empty without the emulator.
#[cfg(not(tk_emu_built))]
pub(crate) static EMU_KERNELS: &[(&str, &str, unsafe extern "C" fn())] = &[];

/// Whether this build has the emulator (a C++17 compiler and the CUDA
/// headers were found at build time).
pub const EMULATOR_BUILT: bool = cfg!(tk_emu_built);

#[cfg(tk_emu_built)]
extern "C" {
    fn tk_emu_launch(
        name: *const c_char,
        call: Trampoline,
        kernel: *const c_void,
        params: *const c_void,
        grid: *const u32,
        block: *const u32,
        shared_bytes: u32,
        order: i32,
        seed: u64,
        race_check: i32,
        alloc_ptrs: *const u64,
        alloc_bytes: *const u64,
        n_allocs: usize,
        fence: usize,
        error: *mut c_char,
        error_len: usize,
    ) -> i32;
}

/// Bytes of poison fencing each allocation on both sides.
const FENCE: usize = 256;
/// The poison byte: 0xFFFF.. is NaN as f32, f16 and bf16, and -1 as an integer.
const POISON: u8 = 0xFF;

/// The order in which the scheduler resumes the threads of a block; some
/// synchronisation bugs show only in one order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Thread 0 first.
    Forward,
    /// The last thread first.
    Reverse,
    /// A permutation per block from this seed.
    Shuffle(u64),
    /// Thread order, but threads released from a barrier run again at once
    /// (one warp races ahead): shows missing barriers that round-robin hides.
    Eager,
}

impl Schedule {
    /// Every order the fault tests try (one shuffle seed).
    pub const ALL: [Schedule; 4] = [
        Schedule::Forward,
        Schedule::Reverse,
        Schedule::Shuffle(0x5eed),
        Schedule::Eager,
    ];
}

impl Schedule {
    /// From `TK_EMU_SCHEDULE` (`forward`, `reverse`, `eager`, `shuffle` or
    /// `shuffle:SEED`); forward when unset or unrecognised.
    pub fn from_env() -> Self {
        match std::env::var("TK_EMU_SCHEDULE").ok().as_deref() {
            Some("reverse") => Schedule::Reverse,
            Some("eager") => Schedule::Eager,
            Some(s) if s.starts_with("shuffle") => Schedule::Shuffle(
                s.strip_prefix("shuffle:")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0x5eed),
            ),
            _ => Schedule::Forward,
        }
    }
}

/// One fenced host allocation.
struct Fenced {
    base: *mut u8,
    layout: Layout,
}

// SAFETY: the pointer is owned by this value alone (allocated in
// `alloc_zeroed`, freed in `drop`); access goes through the runtime, whose
// launches are serialised.
unsafe impl Send for Fenced {}
// SAFETY: as above; `&Fenced` exposes no interior mutability.
unsafe impl Sync for Fenced {}

/// Live allocations by address: `(bytes, base)`, for the fence checks.
type Registry = Arc<Mutex<HashMap<u64, (usize, usize)>>>;

/// Frees a fenced allocation and forgets it.
struct Owner {
    mem: Fenced,
    registry: Registry,
}

impl Drop for Owner {
    fn drop(&mut self) {
        let ptr = self.mem.base as u64 + FENCE as u64;
        if let Ok(mut r) = self.registry.lock() {
            r.remove(&ptr);
        }
        // SAFETY: `base` was allocated with `layout` and is freed once, here.
        unsafe { std::alloc::dealloc(self.mem.base, self.mem.layout) };
    }
}

/// Launches of every emulator in the process run one at a time.
static LAUNCH_LOCK: Mutex<()> = Mutex::new(());

/// The SIMT emulator runtime.
pub struct EmuRuntime {
    #[cfg_attr(not(tk_emu_built), allow(dead_code))] // read by the launch
    schedule: Schedule,
    race_check: bool,
    registry: Registry,
    kernels: HashMap<(&'static str, &'static str), unsafe extern "C" fn()>,
}

impl EmuRuntime {
    /// An emulator with the scheduling order of `TK_EMU_SCHEDULE`.
    ///
    /// # Errors
    /// [`Error::KernelsNotBuilt`] when this build has no emulator.
    pub fn new() -> Result<Self> {
        Self::with_schedule(Schedule::from_env())
    }

    /// An emulator with a given scheduling order.
    ///
    /// # Errors
    /// [`Error::KernelsNotBuilt`] when this build has no emulator.
    pub fn with_schedule(schedule: Schedule) -> Result<Self> {
        if !EMULATOR_BUILT {
            return Err(Error::KernelsNotBuilt);
        }
        Ok(EmuRuntime {
            schedule,
            race_check: std::env::var("TK_EMU_RACECHECK").map_or(true, |v| v != "0"),
            registry: Arc::new(Mutex::new(HashMap::new())),
            kernels: EMU_KERNELS.iter().map(|&(m, s, f)| ((m, s), f)).collect(),
        })
    }

    /// Turns the race detector on or off (on unless `TK_EMU_RACECHECK=0`):
    /// with it, an access to `__shared__` or device memory that conflicts
    /// with another thread's since the last barrier is a
    /// [`Error::KernelFault`] naming both threads.
    pub fn race_check(mut self, on: bool) -> Self {
        self.race_check = on;
        self
    }

    /// Checks the fences of every live allocation; the first broken one is
    /// an error naming the kernel that ran last.
    fn check_fences(&self, kernel: KernelRef) -> Result<()> {
        let reg = self
            .registry
            .lock()
            .map_err(|_| Error::KernelFault("allocation registry poisoned".into()))?;
        for (&ptr, &(bytes, base)) in reg.iter() {
            // SAFETY: every registered allocation is live (removed before
            // it is freed) and spans FENCE + bytes + FENCE bytes from base.
            let (before, after) = unsafe {
                (
                    std::slice::from_raw_parts(base as *const u8, FENCE),
                    std::slice::from_raw_parts((ptr as usize + bytes) as *const u8, FENCE),
                )
            };
            let bad_before = before.iter().rposition(|&b| b != POISON);
            let bad_after = after.iter().position(|&b| b != POISON);
            if bad_before.is_some() || bad_after.is_some() {
                let at = match (bad_before, bad_after) {
                    (Some(i), _) => format!("{} bytes before its start", FENCE - i),
                    (None, Some(i)) => format!("byte {} past its end", i),
                    (None, None) => unreachable!(),
                };
                return Err(Error::KernelFault(format!(
                    "kernel {}: out-of-bounds write to the {bytes}-byte allocation at {ptr:#x}: {at}",
                    kernel.symbol
                )));
            }
        }
        Ok(())
    }
}

impl Runtime for EmuRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Emulator
    }

    fn name(&self) -> &str {
        "SIMT emulator (CPU)"
    }

    fn multiprocessor_count(&self) -> u32 {
        // An H200's, so that shape heuristics (the GEMM's tile and split-K
        // choice) take on the emulator the paths they take on that GPU.
        132
    }

    fn compute_capability(&self) -> (i32, i32) {
        // The kernels are compiled for sm_80+; the emulator runs their
        // generic (non-Hopper) paths.
        (8, 0)
    }

    fn alloc_zeroed(&self, bytes: usize) -> Result<Allocation> {
        let bytes = bytes.max(1);
        let total = bytes
            .checked_add(2 * FENCE)
            .ok_or_else(|| Error::invalid("emulator alloc", format!("{bytes} bytes overflow")))?;
        let layout = Layout::from_size_align(total, FENCE)
            .map_err(|e| Error::invalid("emulator alloc", format!("{bytes} bytes: {e}")))?;
        // SAFETY: `layout` has a non-zero size.
        let base = unsafe { std::alloc::alloc(layout) };
        if base.is_null() {
            return Err(Error::OutOfMemory {
                device: "the emulator (host memory)".into(),
                bytes,
                hint: String::new(),
            });
        }
        // SAFETY: `base` points to `total` writable bytes.
        unsafe {
            std::ptr::write_bytes(base, POISON, FENCE);
            std::ptr::write_bytes(base.add(FENCE), 0, bytes);
            std::ptr::write_bytes(base.add(FENCE + bytes), POISON, FENCE);
        }
        let ptr = base as u64 + FENCE as u64;
        self.registry
            .lock()
            .map_err(|_| Error::KernelFault("allocation registry poisoned".into()))?
            .insert(ptr, (bytes, base as usize));
        let owner = Owner {
            mem: Fenced { base, layout },
            registry: self.registry.clone(),
        };
        Ok(Allocation::new(ptr, bytes, Box::new(owner)))
    }

    unsafe fn copy_htod(&self, dst: u64, src: &[u8]) -> Result<()> {
        // SAFETY: the caller guarantees the destination range (host memory here).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut u8, src.len()) };
        Ok(())
    }

    unsafe fn copy_dtoh(&self, dst: &mut [u8], src: u64) -> Result<()> {
        // SAFETY: the caller guarantees the source range (host memory here).
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    unsafe fn copy_dtod(&self, dst: u64, src: u64, bytes: usize) -> Result<()> {
        // SAFETY: the caller guarantees both ranges and that they are disjoint.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst as *mut u8, bytes) };
        Ok(())
    }

    unsafe fn launch(
        &self,
        kernel: KernelRef,
        shape: LaunchShape,
        params: *const c_void,
        _params_size: usize,
        call: Trampoline,
    ) -> Result<()> {
        let twin = *self
            .kernels
            .get(&(kernel.module, kernel.symbol))
            .ok_or(Error::KernelsNotBuilt)?;
        let _serial = LAUNCH_LOCK
            .lock()
            .map_err(|_| Error::KernelFault("an earlier launch panicked".into()))?;
        self.run(kernel, shape, params, call, twin as *const c_void)?;
        self.check_fences(kernel)
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn time(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
        let t = Instant::now();
        f()?;
        Ok(t.elapsed().as_secs_f64())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl EmuRuntime {
    #[cfg(tk_emu_built)]
    fn run(
        &self,
        kernel: KernelRef,
        shape: LaunchShape,
        params: *const c_void,
        call: Trampoline,
        twin: *const c_void,
    ) -> Result<()> {
        let (order, seed) = match self.schedule {
            Schedule::Forward => (0, 0),
            Schedule::Reverse => (1, 0),
            Schedule::Shuffle(s) => (2, s),
            Schedule::Eager => (3, 0),
        };
        let name = CString::new(kernel.symbol).unwrap_or_default();
        let grid = [shape.grid.0, shape.grid.1, shape.grid.2];
        let block = [shape.block.0, shape.block.1, shape.block.2];
        let mut err = vec![0 as c_char; 1024];
        // The live allocations, so that the runtime can name an access into a fence.
        let (ptrs, sizes): (Vec<u64>, Vec<u64>) = self
            .registry
            .lock()
            .map_err(|_| Error::KernelFault("allocation registry poisoned".into()))?
            .iter()
            .map(|(&p, &(bytes, _))| (p, bytes as u64))
            .unzip();
        // SAFETY: `twin` is the host twin of `kernel`, whose one parameter
        // is the params type `call` was monomorphised for (the op wrapper
        // pairs them); `params` points to that struct for the duration of
        // this synchronous call; the buffers passed are valid for their lengths.
        let rc = unsafe {
            tk_emu_launch(
                name.as_ptr(),
                call,
                twin,
                params,
                grid.as_ptr(),
                block.as_ptr(),
                shape.shared_mem_bytes,
                order,
                seed,
                i32::from(self.race_check),
                ptrs.as_ptr(),
                sizes.as_ptr(),
                ptrs.len(),
                FENCE,
                err.as_mut_ptr(),
                err.len(),
            )
        };
        if rc == 0 {
            return Ok(());
        }
        // SAFETY: the runtime wrote a NUL-terminated message into `err`.
        let msg = unsafe { std::ffi::CStr::from_ptr(err.as_ptr()) };
        Err(Error::KernelFault(msg.to_string_lossy().into_owned()))
    }

    #[cfg(not(tk_emu_built))]
    fn run(
        &self,
        _kernel: KernelRef,
        _shape: LaunchShape,
        _params: *const c_void,
        _call: Trampoline,
        _twin: *const c_void,
    ) -> Result<()> {
        Err(Error::KernelsNotBuilt)
    }
}

#[cfg(all(test, tk_emu_built))]
mod tests {
    //! The emulator's own checks, held to deliberately broken kernels
    //! (`kernels/emu/faults.cu`) in every scheduling order, so they cannot rot.

    use super::*;
    use crate::cuda::params::EmuFaultParams;
    use crate::cuda::runtime::LaunchParams;
    use crate::cuda::{Device, DeviceTensor};

    // SAFETY: bindgen's `#[repr(C)]` twin of the C struct in params.h.
    unsafe impl LaunchParams for EmuFaultParams {}

    /// Runs `symbol` of faults.cu on one block of 64 threads over `input`
    /// (`n` outputs); returns the launch result and the output.
    fn run(
        symbol: &'static str,
        schedule: Schedule,
        input: &[f32],
        n: usize,
    ) -> (Result<()>, Vec<f32>) {
        launch_raw(
            "emu_faults",
            symbol,
            schedule,
            bytemuck::cast_slice(input),
            n,
            64,
        )
    }

    /// Launches `module`/`symbol` on one block of `threads` threads with
    /// `input` as the bytes of `in` and `n` f32 outputs.
    fn launch_raw(
        module: &'static str,
        symbol: &'static str,
        schedule: Schedule,
        input: &[u8],
        n: usize,
        threads: u32,
    ) -> (Result<()>, Vec<f32>) {
        launch_with(
            EmuRuntime::with_schedule(schedule)
                .unwrap()
                .race_check(true),
            module,
            symbol,
            input,
            n,
            threads,
        )
    }

    fn launch_with(
        emu: EmuRuntime,
        module: &'static str,
        symbol: &'static str,
        input: &[u8],
        n: usize,
        threads: u32,
    ) -> (Result<()>, Vec<f32>) {
        let dev = Device::with_runtime(Box::new(emu));
        let inp = DeviceTensor::from_host(&dev, input, &[input.len()]).unwrap();
        let mut out = DeviceTensor::<f32>::zeros(&dev, &[n]).unwrap();
        let p = EmuFaultParams {
            in_: inp.device_ptr() as *const f32,
            out: out.device_ptr_mut() as *mut f32,
            n: n as i64,
        };
        let kernel = KernelRef { module, symbol };
        // SAFETY: `in` and `out` are allocations of this emulator holding
        // what each kernel reads and writes (the faults' bugs are the point
        // of the tests, and the fences catch them).
        let r = unsafe { dev.launch(kernel, LaunchShape::linear(1, threads), &p) };
        (r, out.to_host().unwrap())
    }

    fn input() -> Vec<f32> {
        (0..64).map(|i| i as f32 + 1.0).collect()
    }

    fn fault(r: Result<()>, symbol: &str, schedule: Schedule, needles: &[&str]) {
        match r {
            Err(Error::KernelFault(msg)) => {
                for n in needles {
                    assert!(
                        msg.contains(n),
                        "{symbol} {schedule:?}: {n:?} not in {msg:?}"
                    );
                }
                assert!(
                    msg.contains(symbol),
                    "{symbol} {schedule:?}: kernel not named: {msg}"
                );
            }
            other => panic!("{symbol} {schedule:?}: expected a KernelFault, got {other:?}"),
        }
    }

    #[test]
    fn correct_kernels_pass_in_every_order() {
        let x = input();
        let total: f32 = x.iter().sum();
        for s in Schedule::ALL {
            let (r, out) = run("emu_ok_copy", s, &x, 64);
            r.unwrap();
            assert_eq!(out, x, "{s:?}");
            let (r, out) = run("emu_ok_two_sums", s, &x, 64);
            r.unwrap();
            assert!(out.iter().all(|&v| v == 3.0 * total), "{s:?}: {out:?}");
        }
    }

    #[test]
    fn off_by_one_tail_write_is_caught() {
        for s in Schedule::ALL {
            let (r, _) = run("emu_fault_off_by_one", s, &input(), 40);
            fault(
                r,
                "emu_fault_off_by_one",
                s,
                &[
                    "out-of-bounds write of 4 bytes",
                    "past the end of the 160-byte allocation",
                ],
            );
        }
    }

    #[test]
    fn out_of_bounds_read_is_caught() {
        for s in Schedule::ALL {
            // n = 64 = the input's length: the last thread reads in[64].
            let (r, _) = run("emu_fault_oob_read", s, &input(), 64);
            fault(
                r,
                "emu_fault_oob_read",
                s,
                &[
                    "out-of-bounds read of 4 bytes",
                    "4 bytes past the end of the 256-byte allocation",
                ],
            );
        }
    }

    #[test]
    fn dynamic_shared_memory_past_the_launch_size_is_caught() {
        for s in Schedule::ALL {
            let (r, _) = run("emu_fault_dynamic_smem_oob", s, &input(), 64);
            fault(
                r,
                "emu_fault_dynamic_smem_oob",
                s,
                &[
                    "out-of-bounds write of 4 bytes",
                    "past the end of the 0-byte dynamic shared memory",
                ],
            );
        }
    }

    #[test]
    fn missing_barrier_before_scratch_reuse_is_a_race_in_every_order() {
        for s in Schedule::ALL {
            let (r, _) = run("emu_fault_missing_sync", s, &input(), 64);
            fault(
                r,
                "emu_fault_missing_sync",
                s,
                &["data race on __shared__ memory", "with no __syncthreads"],
            );
        }
    }

    #[test]
    fn without_the_race_detector_the_eager_order_still_shows_the_missing_barrier() {
        let x = input();
        let total: f32 = x.iter().sum();
        let emu = EmuRuntime::with_schedule(Schedule::Eager)
            .unwrap()
            .race_check(false);
        let (r, out) = launch_with(
            emu,
            "emu_faults",
            "emu_fault_missing_sync",
            bytemuck::cast_slice(&x),
            64,
            64,
        );
        r.unwrap();
        let wrong = out.iter().filter(|&&v| v != 3.0 * total).count();
        assert!(
            wrong > 0,
            "the race went unseen in the eager order: {out:?}"
        );
    }

    #[test]
    fn divergent_barrier_is_an_error_not_a_hang() {
        for s in Schedule::ALL {
            let (r, _) = run("emu_fault_divergent_barrier", s, &input(), 64);
            fault(
                r,
                "emu_fault_divergent_barrier",
                s,
                &[
                    "deadlock",
                    "16 of 64 threads wait at __syncthreads",
                    "48 have exited",
                ],
            );
        }
    }

    #[test]
    fn shuffle_mask_errors_are_caught() {
        for s in Schedule::ALL {
            let (r, _) = run("emu_fault_shuffle_outside_mask", s, &input(), 64);
            fault(
                r,
                "emu_fault_shuffle_outside_mask",
                s,
                &["with mask 0x0000ffff reads lane", "not in it"],
            );
            let (r, _) = run("emu_fault_shuffle_exited_lane", s, &input(), 64);
            fault(
                r,
                "emu_fault_shuffle_exited_lane",
                s,
                &["mask 0xffffffff", "exited"],
            );
            let (r, _) = run("emu_fault_mask_without_caller", s, &input(), 64);
            fault(
                r,
                "emu_fault_mask_without_caller",
                s,
                &["which is not in it"],
            );
        }
    }

    /// A (16x16), W (8x16) and A^T with values k/8, k in -16..=16: exact in
    /// bf16 and f16, and every product and sum of 16 is exact in f32.
    fn mma_inputs() -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut rng = crate::cuda::numerics::SplitMix64::new(0x6d6d61);
        let mut v = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| (rng.below(33) as f32 - 16.0) / 8.0)
                .collect()
        };
        let (a, w) = (v(256), v(128));
        let at: Vec<f32> = (0..256).map(|i| a[(i % 16) * 16 + i / 16]).collect();
        (a, w, at)
    }

    /// The self-test kernels' input: A, W and Aᵀ of [`mma_inputs`] in `T`.
    fn selftest_input<T: crate::Element>() -> Vec<T> {
        let (a, w, at) = mma_inputs();
        a.iter()
            .chain(&w)
            .chain(&at)
            .map(|&x| T::from_f32(x))
            .collect()
    }

    fn mma_selftest<T: crate::Element + bytemuck::Pod>(symbol: &'static str) {
        let (a, w, _) = mma_inputs();
        let host = selftest_input::<T>();
        let want: Vec<f32> = (0..128)
            .map(|i| {
                let (m, n) = (i / 8, i % 8);
                (0..16)
                    .map(|k| f64::from(a[m * 16 + k]) * f64::from(w[n * 16 + k]))
                    .sum::<f64>() as f32
            })
            .collect();
        for s in Schedule::ALL {
            let (r, d) = launch_raw(
                "emu_selftest",
                symbol,
                s,
                bytemuck::cast_slice(&host),
                128,
                32,
            );
            r.unwrap();
            assert_eq!(
                d, want,
                "{symbol} {s:?}: D = A W^T through the emulated fragments"
            );
        }
    }

    #[test]
    fn mma_through_ldmatrix_and_cp_async_equals_a_plain_product() {
        mma_selftest::<half::bf16>("emu_selftest_mma_bf16");
        mma_selftest::<half::f16>("emu_selftest_mma_f16");
        mma_selftest::<half::bf16>("emu_selftest_mma_trans_bf16");
    }

    #[test]
    fn ldmatrix_of_rows_other_lanes_copied_without_a_sync_is_a_race() {
        let host = selftest_input::<half::bf16>();
        for s in Schedule::ALL {
            let (r, _) = launch_raw(
                "emu_selftest",
                "emu_fault_cp_async_no_sync",
                s,
                bytemuck::cast_slice(&host),
                128,
                32,
            );
            fault(
                r,
                "emu_fault_cp_async_no_sync",
                s,
                &["data race on __shared__ memory"],
            );
        }
    }

    #[test]
    fn reading_a_cp_async_stage_before_its_wait_reads_poison() {
        let host = selftest_input::<half::bf16>();
        for s in Schedule::ALL {
            let (r, d) = launch_raw(
                "emu_selftest",
                "emu_fault_cp_async_before_wait",
                s,
                bytemuck::cast_slice(&host),
                128,
                32,
            );
            r.unwrap();
            assert!(
                d.iter().all(|v| v.is_nan()),
                "{s:?}: the unwaited stage was not poison: {d:?}"
            );
        }
    }
}
