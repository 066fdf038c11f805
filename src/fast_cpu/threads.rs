//! The fast CPU backend's worker threads: one persistent rayon pool, sized
//! once (`--threads`, or the machine's available parallelism read once),
//! used only where the work pays for the hand-off (large GEMMs, the
//! vocabulary projection, the encoder's attention).

use crate::error::{Error, Result};

/// A pool of `n` worker threads (none when `n == 1`: the caller's thread
/// does all the work).
#[derive(Debug)]
pub struct Threads {
    pool: Option<rayon::ThreadPool>,
    n: usize,
}

impl Threads {
    /// `n` threads; `0` means the machine's available parallelism (read
    /// here, once; 1 if it cannot be read).
    ///
    /// Errors: [`Error::InvalidArgument`] if the pool's threads cannot be
    /// started (the OS refused to spawn them).
    pub fn new(n: usize) -> Result<Self> {
        let n = if n == 0 {
            std::thread::available_parallelism().map_or(1, |p| p.get())
        } else {
            n
        };
        let pool = if n > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("tk-cpu-{i}"))
                    .build()
                    .map_err(|e| {
                        Error::invalid("threads", format!("cannot start {n} threads: {e}"))
                    })?,
            )
        } else {
            None
        };
        Ok(Threads { pool, n })
    }

    /// Number of threads doing the work (the caller's included).
    pub fn count(&self) -> usize {
        self.n
    }

    /// Runs `f(0) .. f(tasks - 1)`, on the pool when `parallel` and there
    /// is more than one task, else in order on this thread. `f` must only
    /// touch disjoint data per task index.
    pub fn run(&self, tasks: usize, parallel: bool, f: impl Fn(usize) + Sync + Send) {
        match &self.pool {
            Some(pool) if parallel && tasks > 1 => pool.install(|| {
                use rayon::prelude::*;
                (0..tasks).into_par_iter().for_each(f)
            }),
            _ => (0..tasks).for_each(f),
        }
    }
}

/// An output slice shared by the tasks of one [`Threads::run`], each of
/// which writes only its own disjoint part (through [`SharedOut::slice`]).
#[derive(Clone, Copy)]
pub(crate) struct SharedOut {
    ptr: *mut f32,
    len: usize,
}

impl SharedOut {
    /// Shares `out` for the duration of one `run`.
    pub(crate) fn new(out: &mut [f32]) -> Self {
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
    pub(crate) unsafe fn slice<'a>(self, at: usize, len: usize) -> &'a mut [f32] {
        assert!(at.checked_add(len).is_some_and(|end| end <= self.len));
        // SAFETY: in range (asserted); exclusivity and lifetime are the
        // caller's contract above.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(at), len) }
    }
}

// SAFETY: a SharedOut is only dereferenced through `slice`, whose contract
// gives each task exclusive, in-bounds, live elements.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}
