//! Replayable steps: the kernel launches of one decode step, recorded once
//! and replayed as one unit (a CUDA graph on a GPU; the same launch list
//! re-issued by the emulator).
//!
//! A step is bracketed by [`Device::begin_step`](super::Device::begin_step)
//! and [`Device::end_step`](super::Device::end_step). The op wrappers run
//! as always; the device sees their launches:
//!
//! - **Matching** (the step has candidate graphs recorded before): each
//!   launch is compared, kernel, grid and every field of its params struct,
//!   with the next launch of each candidate, and is *not* issued. At the
//!   end, a candidate that matched every launch, and has no more, is
//!   launched as one unit. The replay therefore runs exactly the launches
//!   the step would have issued one by one: a step whose launches differ in
//!   anything (a pointer, a size, a position passed by value) does not
//!   replay.
//! - **Eager**: when no candidate matches (or there is none), the launches
//!   matched so far are issued from the candidate's copies, the rest of the
//!   step is issued as it comes, and the step's launch list becomes a new
//!   graph.
//!
//! Params structs compare field by field (`PartialEq`, derived by
//! bindgen): pointers by address, floats by value (a NaN parameter never
//! matches; -0.0 equals 0.0, a difference no kernel parameter of this crate
//! can carry: scales and epsilons are model constants).
//!
//! What a replayed step needs of its caller: everything that changes from
//! step to step lives in device memory written *before* the step's first
//! launch (token ids, the step's position, key lengths). The device keeps
//! the rest safe: a copy between launches, an allocation or a free of a
//! device allocation while launches are deferred issues them first (the
//! step goes on eagerly), and a copy between launches makes the launch list
//! unrecordable (a graph here holds kernels only). The backend's step arena
//! keeps the step's buffers from being freed, so a steady step defers to
//! its end.
//!
//! A step belongs to the thread that opened it: other threads' launches,
//! copies and allocations on the device are not part of it, and a second
//! step cannot open on the device until it ends.
//!
//! Run status: the matching, the deferral and the emulator's re-issue are
//! executed on the emulator (`tests/cuda_step_graph.rs`, the model tests);
//! the CUDA graph itself ([`super::runtime::gpu`]) is compiled, not run.

use std::any::Any;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::ThreadId;

use super::runtime::{
    trampoline, Allocation, GraphNode, KernelRef, LaunchGraph, LaunchParams, LaunchShape, Runtime,
    Trampoline,
};
use crate::{Error, Result};

/// A params struct kept by a recorded launch.
trait RecordedParams: Send + Sync {
    /// Whether `other` is the same params type with equal fields.
    fn same_as(&self, other: &dyn Any) -> bool;
    /// The struct's address and size, for a launch.
    fn raw(&self) -> (*const c_void, usize);
    /// The params type's trampoline (the emulator calls the twin through it).
    fn call(&self) -> Trampoline;
}

/// One params struct, owned.
struct Owned<P>(P);

// SAFETY: a params struct is plain data (sizes and device addresses); the
// addresses are never dereferenced on the host by this wrapper.
unsafe impl<P> Send for Owned<P> {}
// SAFETY: as for Send; it is only read.
unsafe impl<P> Sync for Owned<P> {}

impl<P: LaunchParams> RecordedParams for Owned<P> {
    fn same_as(&self, other: &dyn Any) -> bool {
        other.downcast_ref::<P>().is_some_and(|o| *o == self.0)
    }

    fn raw(&self) -> (*const c_void, usize) {
        (
            (&self.0 as *const P).cast::<c_void>(),
            std::mem::size_of::<P>(),
        )
    }

    fn call(&self) -> Trampoline {
        trampoline::<P>
    }
}

/// One recorded kernel launch.
pub(crate) struct Recorded {
    kernel: KernelRef,
    shape: LaunchShape,
    params: Box<dyn RecordedParams>,
}

impl Recorded {
    fn matches(&self, kernel: KernelRef, shape: LaunchShape, params: &dyn Any) -> bool {
        self.kernel == kernel && self.shape == shape && self.params.same_as(params)
    }

    /// Issues the launch on `runtime`.
    fn issue(&self, runtime: &dyn Runtime) -> Result<()> {
        let (ptr, size) = self.params.raw();
        // SAFETY: the launch was first issued by an op wrapper with these
        // exact params (its safety argument covered them); the buffers it
        // names outlive the step (the step's contract, module docs).
        unsafe { runtime.launch(self.kernel, self.shape, ptr, size, self.params.call()) }
    }
}

/// The launches of one recorded step, replayable as one unit.
pub struct StepGraph {
    launches: Vec<Arc<Recorded>>,
    /// The runtime's executable graph, built at the first replay (`None`
    /// inside: the runtime has none, so the launches are re-issued).
    exec: OnceLock<Option<Box<dyn LaunchGraph>>>,
    replays: AtomicU64,
}

impl std::fmt::Debug for StepGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepGraph")
            .field("launches", &self.launches.len())
            .field("replays", &self.replays())
            .finish()
    }
}

impl StepGraph {
    /// Kernel launches in the step.
    pub fn len(&self) -> usize {
        self.launches.len()
    }

    /// True for a step without launches.
    pub fn is_empty(&self) -> bool {
        self.launches.is_empty()
    }

    /// Times this step was replayed.
    pub fn replays(&self) -> u64 {
        self.replays.load(Ordering::Relaxed)
    }

    /// Issues the whole step: the runtime's graph when it has one (built
    /// at the first replay), else every launch in order.
    fn replay(&self, runtime: &dyn Runtime) -> Result<()> {
        let exec = match self.exec.get() {
            Some(e) => e,
            None => {
                let nodes: Vec<GraphNode> = self
                    .launches
                    .iter()
                    .map(|l| {
                        let (params, params_size) = l.params.raw();
                        GraphNode {
                            kernel: l.kernel,
                            shape: l.shape,
                            params,
                            params_size,
                        }
                    })
                    .collect();
                // SAFETY: every node is a launch an op wrapper issued with
                // these params; the params live in `self` (read during the
                // call); the buffers they name outlive the step's replays
                // (the step's contract).
                let built = unsafe { runtime.instantiate_graph(&nodes) }?;
                // Two threads replaying one graph at once would each build
                // one; the second is dropped here.
                let _ = self.exec.set(built);
                self.exec.get().unwrap_or(&None)
            }
        };
        match exec {
            Some(graph) => graph.launch()?,
            None => {
                for l in &self.launches {
                    l.issue(runtime)?;
                }
            }
        }
        self.replays.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// How a step ended ([`super::Device::end_step`]).
#[derive(Debug)]
pub enum StepEnd {
    /// A candidate matched every launch and was replayed.
    Replayed(Arc<StepGraph>),
    /// The step ran launch by launch; its launches as a new graph, or
    /// `None` when they cannot be one (a copy between launches).
    Recorded(Option<Arc<StepGraph>>),
}

/// The device's state inside a step.
pub(crate) enum StepState {
    /// Launches compared with the candidates' and deferred.
    Matching {
        candidates: Vec<Arc<StepGraph>>,
        matched: usize,
    },
    /// Launches issued as they come and logged.
    Eager {
        log: Vec<Arc<Recorded>>,
        recordable: bool,
    },
    /// Issuing the deferred launches failed where no error could be
    /// returned (a free); every later call of the step reports it.
    Failed(String),
}

impl StepState {
    /// A new step with these candidates (eager at once when there is none).
    pub(crate) fn new(candidates: Vec<Arc<StepGraph>>) -> Self {
        if candidates.is_empty() {
            StepState::Eager {
                log: Vec::new(),
                recordable: true,
            }
        } else {
            StepState::Matching {
                candidates,
                matched: 0,
            }
        }
    }

    /// The error of a failed step.
    fn failed(msg: &str) -> Error {
        Error::invalid("step", format!("the step failed earlier: {msg}"))
    }

    /// True while launches are deferred.
    fn deferring(&self) -> bool {
        matches!(self, StepState::Matching { matched, .. } if *matched > 0)
    }

    /// Leaves matching: issues the `matched` deferred launches from a
    /// candidate's copies and continues eagerly with them as the log.
    fn go_eager(&mut self, runtime: &dyn Runtime) -> Result<()> {
        if let StepState::Matching {
            candidates,
            matched,
        } = self
        {
            let mut log = Vec::with_capacity(*matched + 64);
            if let Some(c) = candidates.first() {
                for l in &c.launches[..*matched] {
                    l.issue(runtime)?;
                    log.push(l.clone());
                }
            }
            *self = StepState::Eager {
                log,
                recordable: true,
            };
        }
        Ok(())
    }

    /// A kernel launch inside the step.
    pub(crate) fn launch<P: LaunchParams>(
        &mut self,
        runtime: &dyn Runtime,
        kernel: KernelRef,
        shape: LaunchShape,
        params: &P,
    ) -> Result<()> {
        if let StepState::Matching {
            candidates,
            matched,
        } = self
        {
            let at = *matched;
            let still: Vec<Arc<StepGraph>> = candidates
                .iter()
                .filter(|c| {
                    c.launches
                        .get(at)
                        .is_some_and(|l| l.matches(kernel, shape, params))
                })
                .cloned()
                .collect();
            if !still.is_empty() {
                *candidates = still;
                *matched += 1;
                return Ok(());
            }
            self.go_eager(runtime)?;
        }
        let log = match self {
            StepState::Eager { log, .. } => log,
            StepState::Failed(msg) => return Err(Self::failed(msg)),
            StepState::Matching { .. } => return Err(Error::invalid("step", "step state lost")),
        };
        let ptr = (params as *const P).cast::<c_void>();
        // SAFETY: as `Device::launch`, whose caller upholds the contract.
        unsafe {
            runtime.launch(
                kernel,
                shape,
                ptr,
                std::mem::size_of::<P>(),
                trampoline::<P>,
            )
        }?;
        log.push(Arc::new(Recorded {
            kernel,
            shape,
            params: Box::new(Owned(*params)),
        }));
        Ok(())
    }

    /// A copy (host or device) inside the step: before the first launch it
    /// is the step's input and changes nothing; after it, the deferred
    /// launches are issued first and the step cannot be recorded.
    pub(crate) fn copy(&mut self, runtime: &dyn Runtime) -> Result<()> {
        match self {
            StepState::Matching { matched: 0, .. } => Ok(()),
            StepState::Matching { .. } => {
                self.go_eager(runtime)?;
                self.copy(runtime)
            }
            StepState::Eager { log, recordable } => {
                if !log.is_empty() {
                    *recordable = false;
                }
                Ok(())
            }
            StepState::Failed(msg) => Err(Self::failed(msg)),
        }
    }

    /// An allocation inside the step: the deferred launches are issued
    /// first (memory is never handed out while a deferred launch may still
    /// name what it replaces).
    pub(crate) fn alloc(&mut self, runtime: &dyn Runtime) -> Result<()> {
        match self {
            StepState::Matching { matched: 0, .. } | StepState::Eager { .. } => Ok(()),
            StepState::Matching { .. } => self.go_eager(runtime),
            StepState::Failed(msg) => Err(Self::failed(msg)),
        }
    }

    /// Ends the step: replays the matching candidate, or returns the log.
    pub(crate) fn finish(mut self, runtime: &dyn Runtime) -> Result<StepEnd> {
        if let StepState::Matching {
            candidates,
            matched,
        } = &self
        {
            if let Some(c) = candidates.iter().find(|c| c.launches.len() == *matched) {
                c.replay(runtime)?;
                return Ok(StepEnd::Replayed(c.clone()));
            }
            self.go_eager(runtime)?;
        }
        match self {
            StepState::Eager { log, recordable } => Ok(StepEnd::Recorded(
                (recordable && !log.is_empty()).then(|| {
                    Arc::new(StepGraph {
                        launches: log,
                        exec: OnceLock::new(),
                        replays: AtomicU64::new(0),
                    })
                }),
            )),
            StepState::Matching { .. } => Err(Error::invalid("step", "step state lost")),
            StepState::Failed(msg) => Err(Self::failed(&msg)),
        }
    }
}

/// The open step of a thread.
struct Open {
    owner: ThreadId,
    state: StepState,
}

/// A device's step: at most one open, owned by the thread that opened it;
/// other threads' launches, copies and allocations are not part of it.
#[derive(Default)]
pub(crate) struct StepSlot {
    open: Mutex<Option<Open>>,
    /// Whether a step is open: every launch, copy, allocation and free of
    /// the device reads it, and only takes the lock when it is set.
    any: AtomicBool,
}

impl StepSlot {
    /// The slot, locked. A panic while it was held (inside a launch)
    /// abandons the step it interrupted; the device stays usable.
    fn lock(&self) -> MutexGuard<'_, Option<Open>> {
        match self.open.lock() {
            Ok(g) => g,
            Err(poisoned) => {
                let mut g = poisoned.into_inner();
                *g = None;
                self.any.store(false, Ordering::Release);
                self.open.clear_poison();
                g
            }
        }
    }

    /// Runs `f` on the calling thread's open step, if there is one.
    fn with_mine<R>(&self, f: impl FnOnce(&mut StepState) -> R) -> Option<R> {
        // Set and cleared by this thread for its own step, so a clear flag
        // means this thread has none (another thread's flag is irrelevant).
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let me = std::thread::current().id();
        self.lock()
            .as_mut()
            .filter(|o| o.owner == me)
            .map(|o| f(&mut o.state))
    }

    /// Opens a step for the calling thread.
    pub(crate) fn begin(&self, candidates: Vec<Arc<StepGraph>>) -> Result<()> {
        let me = std::thread::current().id();
        let mut open = self.lock();
        if let Some(o) = open.as_ref() {
            return Err(Error::invalid(
                "step",
                if o.owner == me {
                    "a step is already open on this device"
                } else {
                    "another thread has a step open on this device"
                },
            ));
        }
        *open = Some(Open {
            owner: me,
            state: StepState::new(candidates),
        });
        self.any.store(true, Ordering::Release);
        Ok(())
    }

    /// Closes the calling thread's step (see [`StepState::finish`]).
    pub(crate) fn end(&self, runtime: &dyn Runtime) -> Result<StepEnd> {
        let me = std::thread::current().id();
        let state = {
            let mut open = self.lock();
            match open.take() {
                Some(o) if o.owner == me => {
                    self.any.store(false, Ordering::Release);
                    o.state
                }
                other => {
                    *open = other;
                    return Err(Error::invalid("step", "no step of this thread is open"));
                }
            }
        };
        state.finish(runtime)
    }

    /// Drops the calling thread's step, deferred launches unissued.
    pub(crate) fn abort(&self) {
        let me = std::thread::current().id();
        let mut open = self.lock();
        if open.as_ref().is_some_and(|o| o.owner == me) {
            *open = None;
            self.any.store(false, Ordering::Release);
        }
    }

    /// Whether the calling thread has a step open.
    pub(crate) fn is_open(&self) -> bool {
        self.with_mine(|_| ()).is_some()
    }

    /// A launch: `None` outside the calling thread's step (issue it as
    /// usual), else what the step made of it.
    pub(crate) fn launch<P: LaunchParams>(
        &self,
        runtime: &dyn Runtime,
        kernel: KernelRef,
        shape: LaunchShape,
        params: &P,
    ) -> Option<Result<()>> {
        self.with_mine(|s| s.launch(runtime, kernel, shape, params))
    }

    /// A copy on the device (see [`StepState::copy`]).
    pub(crate) fn copy(&self, runtime: &dyn Runtime) -> Result<()> {
        self.with_mine(|s| s.copy(runtime)).unwrap_or(Ok(()))
    }

    /// An allocation on the device (see [`StepState::alloc`]).
    pub(crate) fn alloc(&self, runtime: &dyn Runtime) -> Result<()> {
        self.with_mine(|s| s.alloc(runtime)).unwrap_or(Ok(()))
    }

    /// `inner`, freed only after the deferred launches of an open step have
    /// been issued: a deferred launch may name it, and on the emulator a
    /// free is immediate, on a GPU ordered on the stream before a launch
    /// issued later.
    pub(crate) fn guard_free(
        self: &Arc<Self>,
        inner: Allocation,
        runtime: &Arc<dyn Runtime>,
    ) -> Allocation {
        let (ptr, bytes) = (inner.ptr(), inner.bytes());
        let guard = FlushOnFree {
            inner: Some(inner),
            slot: self.clone(),
            runtime: runtime.clone(),
        };
        Allocation::new(ptr, bytes, Box::new(guard))
    }
}

/// Owner of a device allocation that issues a step's deferred launches
/// before the allocation is freed (see [`StepSlot::guard_free`]).
struct FlushOnFree {
    inner: Option<Allocation>,
    slot: Arc<StepSlot>,
    runtime: Arc<dyn Runtime>,
}

impl Drop for FlushOnFree {
    fn drop(&mut self) {
        // `try_lock`: a free inside the slot's own critical sections (none
        // today) must not deadlock. Whatever thread frees, a step that
        // defers launches issues them first.
        if !self.slot.any.load(Ordering::Acquire) {
            self.inner.take();
            return;
        }
        if let Ok(mut open) = self.slot.open.try_lock() {
            if let Some(o) = open.as_mut() {
                if o.state.deferring() {
                    if let Err(e) = o.state.go_eager(&*self.runtime) {
                        o.state = StepState::Failed(e.to_string());
                    }
                }
            }
        }
        self.inner.take();
    }
}
