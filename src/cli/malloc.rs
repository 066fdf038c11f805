//! glibc malloc settings of the command-line tool.
//!
//! A decode step allocates and frees buffers of megabytes (the
//! `[rows, vocab]` logits, the per-layer outputs, the KV caches of each
//! batch). With glibc's defaults such buffers are mapped and unmapped, or
//! the heap top is trimmed and regrown, on every step, and each new page
//! costs a fault and a zero fill: about 5-10% of a beam-4 run of the fast
//! CPU backend on the 2-core test machine (`MALLOC_TRIM_THRESHOLD_` /
//! `MALLOC_MMAP_THRESHOLD_` set by hand: 442-468 vs 485-489 sentences/s).
//! The CLI therefore keeps freed memory for reuse: blocks up to 256 MiB
//! come from the heap and the heap is not trimmed below 1 GiB of free
//! space. This is process-wide, so only the binary does it; an engine
//! linking the library decides for itself (the same two `mallopt` calls).

/// Sets `M_MMAP_THRESHOLD` to 256 MiB and `M_TRIM_THRESHOLD` to 1 GiB
/// (glibc only; elsewhere nothing). A value the C library refuses is
/// ignored: the defaults are correct, only slower.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called
    // first thing in main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
