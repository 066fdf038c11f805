//! The fast CPU backend's worker threads: one persistent pool, sized once
//! (`--threads`, or the machine's available parallelism read once), used
//! only where the work pays for the hand-off (large GEMMs, the vocabulary
//! projection, attention over many rows).
//!
//! For `n` threads the pool holds `n - 1` workers and the calling thread
//! computes too: `n` threads compute, never more. Between jobs a worker
//! spins on the job counter for [`SPIN`] (yielding its core every few
//! rounds) before it sleeps on a condition variable, so the many small
//! products of a decode step (a few hundred microseconds apart) start
//! without a kernel wake-up, and an idle translator costs nothing. A job
//! is open to workers only while the caller runs its own share: a worker
//! that joins too late to claim a task (no core of its own right now: more
//! threads than cores, or a busy machine) goes to sleep at once, and the
//! caller waits only for the workers that joined (spinning briefly, then
//! yielding). So extra threads cost little instead of stealing cores from
//! the threads doing the work (measured under load: 60 sentences took
//! 0.31 s on 1 thread, 0.32 s on 8; before this rule, 4.2 s on 8). Why not rayon: its workers yield and
//! sleep within microseconds and the submitting thread only waits, so on
//! the 2-core machine both a 2-worker pool (3 threads on 2 cores) and
//! `in_place_scope` with 1 worker (a sleeping worker per product) made the
//! whole model no faster than 1 thread; this pool's decode step is faster
//! with 2 (BENCHMARKS.md).

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Most threads of one pool (the job word holds the share count in
/// [`SHARE_BITS`] bits).
pub const MAX_THREADS: usize = 1024;

/// Low bits of the job word holding the share count (`MAX_THREADS` fits);
/// the job number wraps after `2^(usize bits - 11)` jobs (2^21 on a 32-bit
/// target: a worker would have to miss two million jobs in a row to
/// mistake an old job word for a new one).
const SHARE_BITS: u32 = 11;

/// Busy-wait rounds of a caller waiting for the workers before it yields.
const WAIT_SPINS: u32 = 2048;

/// How long an idle worker spins for the next job before it sleeps
/// (yielding its core every 64 rounds to any thread that wants it).
pub const SPIN: Duration = Duration::from_micros(500);

/// `n` threads: `n - 1` pool workers and the caller (no worker when
/// `n == 1`: the caller's thread does all the work).
pub struct Threads {
    n: usize,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Held by the thread whose job is running; a second caller meanwhile
    /// runs its own job alone rather than wait.
    submit: Mutex<()>,
}

impl std::fmt::Debug for Threads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Threads({})", self.n)
    }
}

/// One job: `tasks` task indices, claimed by `shares` threads (the caller
/// and workers `1 .. shares`).
#[derive(Clone, Copy)]
struct Job {
    f: *const (dyn Fn(usize) + Sync),
    tasks: usize,
}

struct Shared {
    /// `(job number << SHARE_BITS) | shares` of the latest job, stored (SeqCst)
    /// after `job` is written; a worker reads `job` only after seeing a new
    /// value (Acquire) whose shares include its own. One word, so a worker
    /// never pairs one job's number with another's shares.
    state: AtomicUsize,
    job: UnsafeCell<Job>,
    /// Workers may join the current job (set after `job` is written,
    /// cleared when the caller's own share is done).
    open: AtomicBool,
    /// Workers inside the current job (joined and not yet left).
    active: AtomicUsize,
    /// The next task index of the current job to claim.
    next: AtomicUsize,
    /// The payload of a panic in a worker's share, re-raised by the caller.
    panicked: Mutex<Option<Box<dyn std::any::Any + Send>>>,
    shutdown: AtomicBool,
    /// Workers asleep (or about to be), guarded by `sleep_lock` for the
    /// wake-up handshake.
    sleepers: AtomicUsize,
    sleep_lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the submitting thread (holding the
// submit lock) while `open` is false and `active` is 0, i.e. while no
// worker is inside a job; a worker reads it only after joining (`active`
// incremented, SeqCst) and then seeing `open` true (SeqCst, set after the
// write), and leaves (`active` decremented) after its last use of it and
// of the closure, which the caller keeps alive until `active` is 0 again.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

impl Threads {
    /// `n` threads; `0` means the machine's available parallelism (read
    /// here, once; 1 if it cannot be read).
    ///
    /// More threads than cores work (an idle worker yields its core while
    /// it spins, the caller too while it waits) but are slower than as
    /// many as the cores.
    ///
    /// Errors: [`Error::InvalidArgument`] for more than [`MAX_THREADS`], or
    /// if a worker thread cannot be started (the OS refused to spawn it).
    pub fn new(n: usize) -> Result<Self> {
        if n > MAX_THREADS {
            return Err(Error::invalid(
                "threads",
                format!("{n} threads: at most {MAX_THREADS}"),
            ));
        }
        let n = if n == 0 {
            std::thread::available_parallelism().map_or(1, |p| p.get())
        } else {
            n
        }
        .min(MAX_THREADS);
        let shared = Arc::new(Shared {
            state: AtomicUsize::new(0),
            job: UnsafeCell::new(Job {
                f: &|_| {},
                tasks: 0,
            }),
            open: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            panicked: Mutex::new(None),
            shutdown: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            sleep_lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut threads = Threads {
            n,
            shared: shared.clone(),
            workers: Vec::with_capacity(n.saturating_sub(1)),
            submit: Mutex::new(()),
        };
        for w in 1..n {
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("tk-cpu-{w}"))
                .spawn(move || worker(&shared, w))
                .map_err(|e| Error::invalid("threads", format!("cannot start {n} threads: {e}")))?;
            threads.workers.push(handle);
        }
        Ok(threads)
    }

    /// Number of threads doing the work (the caller's included; at most
    /// [`MAX_THREADS`]).
    pub fn count(&self) -> usize {
        self.n
    }

    /// Runs `f(0) .. f(tasks - 1)`: when `parallel` and there is more than
    /// one task, on this thread and `min(count(), tasks) - 1` workers, each
    /// claiming the next unclaimed index until none is left; else in order
    /// on this thread. `f` must only touch disjoint data per task index. A
    /// panic in any task is re-raised here after every thread has stopped
    /// (the tasks after a panicking one may or may not have run).
    pub fn run(&self, tasks: usize, parallel: bool, f: impl Fn(usize) + Sync) {
        let shares = self.n.min(tasks);
        let guard = match self.submit.try_lock() {
            Ok(g) if parallel && shares > 1 => g,
            _ => return (0..tasks).for_each(f),
        };
        let sh = &*self.shared;
        let f: &(dyn Fn(usize) + Sync) = &f;
        // SAFETY: erases the closure's lifetime for the workers; this
        // function does not return (or unwind) before every worker share
        // has finished with it (the wait below).
        let f: *const (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(f) };
        // SAFETY: no worker reads `job` now (see `Shared`'s Sync impl).
        unsafe {
            *sh.job.get() = Job { f, tasks };
        }
        sh.next.store(0, Ordering::Relaxed);
        sh.open.store(true, Ordering::SeqCst);
        let next = ((sh.state.load(Ordering::Relaxed) >> SHARE_BITS).wrapping_add(1) << SHARE_BITS)
            | shares;
        sh.state.store(next, Ordering::SeqCst);
        if sh.sleepers.load(Ordering::SeqCst) > 0 {
            let _lock = sh.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
            sh.wake.notify_all();
        }
        // SAFETY: `f` is alive (it is this function's argument).
        let mine = catch_unwind(AssertUnwindSafe(|| unsafe { run_share(sh, &*f, tasks) }));
        // Close the job: a worker that has not joined yet (no core of its
        // own right now) skips it; wait only for those inside, spinning
        // briefly, then yielding this core to them.
        sh.open.store(false, Ordering::SeqCst);
        let mut spins = 0u32;
        while sh.active.load(Ordering::SeqCst) > 0 {
            if spins < WAIT_SPINS {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let theirs = sh.panicked.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(guard);
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if let Some(p) = theirs {
            resume_unwind(p);
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        let next =
            (self.shared.state.load(Ordering::Relaxed) >> SHARE_BITS).wrapping_add(1) << SHARE_BITS;
        self.shared.state.store(next, Ordering::SeqCst);
        {
            let _lock = self
                .shared
                .sleep_lock
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// One thread's part of a job: claims task indices one by one until none
/// is left (a thread that starts late or runs slow takes fewer); returns
/// how many it ran.
fn run_share(sh: &Shared, f: &(dyn Fn(usize) + Sync), tasks: usize) -> usize {
    let mut ran = 0;
    loop {
        let t = sh.next.fetch_add(1, Ordering::Relaxed);
        if t >= tasks {
            return ran;
        }
        f(t);
        ran += 1;
    }
}

/// A worker: waits for each new job (spinning for [`SPIN`], then
/// sleeping), runs its share `w` if the job has one, and reports.
fn worker(sh: &Shared, w: usize) {
    // Job 0 is "none": a worker that starts late still sees job 1.
    let mut seen = 0usize;
    let mut late = false;
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        let state = loop {
            let s = sh.state.load(Ordering::Acquire);
            if s != seen {
                break s;
            }
            spins = spins.wrapping_add(1);
            if late || (spins.is_multiple_of(256) && start.elapsed() > SPIN) {
                late = false;
                let lock = sh.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
                sh.sleepers.fetch_add(1, Ordering::SeqCst);
                let lock = sh
                    .wake
                    .wait_while(lock, |_| sh.state.load(Ordering::SeqCst) == seen)
                    .unwrap_or_else(|e| e.into_inner());
                sh.sleepers.fetch_sub(1, Ordering::SeqCst);
                drop(lock);
            } else if spins.is_multiple_of(64) {
                // Let another thread run if one is waiting for this core.
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        };
        seen = state;
        if sh.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let shares = state & ((1 << SHARE_BITS) - 1);
        if w >= shares {
            continue;
        }
        sh.active.fetch_add(1, Ordering::SeqCst);
        let mut claimed = false;
        if sh.open.load(Ordering::SeqCst) {
            // SAFETY: joined and open: `job` is written and stays so until
            // this worker leaves (see `Shared`).
            let job = unsafe { *sh.job.get() };
            // SAFETY: the caller keeps the closure alive until `active`
            // is 0, which is after this worker leaves.
            let r = catch_unwind(AssertUnwindSafe(|| unsafe {
                run_share(sh, &*job.f, job.tasks)
            }));
            match r {
                Ok(n) => claimed = n > 0,
                Err(p) => *sh.panicked.lock().unwrap_or_else(|e| e.into_inner()) = Some(p),
            }
        }
        sh.active.fetch_sub(1, Ordering::SeqCst);
        // Arrived too late to take a task: this worker is not getting a
        // core promptly (more threads than cores, or a busy machine), so
        // it sleeps now rather than spin against the threads doing work.
        late = !claimed;
    }
}

/// An output slice shared by the tasks of one [`Threads::run`], each of
/// which writes only its own disjoint part (through [`SharedOut::slice`]).
pub(crate) struct SharedOut<T> {
    ptr: *mut T,
    len: usize,
}

impl<T> Clone for SharedOut<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for SharedOut<T> {}

impl<T> SharedOut<T> {
    /// Shares `out` for the duration of one `run`.
    pub(crate) fn new(out: &mut [T]) -> Self {
        SharedOut {
            ptr: out.as_mut_ptr(),
            len: out.len(),
        }
    }

    /// Elements `at .. at + len` of the shared slice.
    ///
    /// # Safety
    /// The slice given to [`SharedOut::new`] must outlive the returned
    /// borrow, and no two live borrows (of any task) may overlap.
    /// Out-of-range requests panic.
    pub(crate) unsafe fn slice<'a>(self, at: usize, len: usize) -> &'a mut [T] {
        assert!(at.checked_add(len).is_some_and(|end| end <= self.len));
        // SAFETY: in range (asserted); exclusivity and lifetime are the
        // caller's contract above.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(at), len) }
    }
}

// SAFETY: a SharedOut is only dereferenced through `slice`, whose contract
// gives each task exclusive, in-bounds, live elements; T is sent between
// threads only as plain data (f32, u32).
unsafe impl<T: Send> Send for SharedOut<T> {}
unsafe impl<T: Send> Sync for SharedOut<T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_task_runs_once_in_every_pool_size_and_after_sleeping() {
        for n in [1, 2, 3, 5] {
            let t = Threads::new(n).unwrap();
            for (round, tasks) in [0usize, 1, 2, 7, 100, 3].into_iter().enumerate() {
                if round == 4 {
                    // Let the workers fall asleep: the next job must wake them.
                    std::thread::sleep(SPIN * 4);
                }
                let hits: Vec<AtomicU64> = (0..tasks).map(|_| AtomicU64::new(0)).collect();
                t.run(tasks, true, |i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(
                    hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                    "n {n} tasks {tasks}"
                );
            }
        }
    }

    #[test]
    fn too_many_threads_is_an_error_and_more_than_cores_still_works() {
        assert!(Threads::new(MAX_THREADS + 1).is_err());
        let cores = std::thread::available_parallelism().map_or(1, |p| p.get());
        let t = Threads::new(cores * 4).unwrap();
        let total = AtomicU64::new(0);
        for _ in 0..200 {
            t.run(8, true, |i| {
                total.fetch_add(i as u64, Ordering::Relaxed);
            });
        }
        assert_eq!(total.load(Ordering::Relaxed), 28 * 200);
    }

    #[test]
    fn two_callers_at_once_both_finish() {
        let t = Arc::new(Threads::new(3).unwrap());
        let sums: Vec<u64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let t = t.clone();
                    s.spawn(move || {
                        let total = AtomicU64::new(0);
                        for _ in 0..200 {
                            t.run(10, true, |i| {
                                total.fetch_add(i as u64, Ordering::Relaxed);
                            });
                        }
                        total.load(Ordering::Relaxed)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(sums, vec![45 * 200; 2]);
    }

    #[test]
    fn a_panic_in_a_worker_share_reaches_the_caller_and_the_pool_survives() {
        let t = Threads::new(2).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            t.run(4, true, |i| {
                if i == 3 {
                    panic!("task 3");
                }
            })
        }));
        let payload = r.expect_err("the panic reaches the caller");
        assert_eq!(
            payload.downcast_ref::<&str>(),
            Some(&"task 3"),
            "its own payload"
        );
        let count = AtomicU64::new(0);
        t.run(4, true, |_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 4);
    }
}
