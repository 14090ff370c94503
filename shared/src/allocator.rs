//! The allocator settings of a function that handles one large batch after another (every
//! pinpipe function: a consumer's 6-12 MB event, a producer's request of up to 5 MB).
//!
//! glibc's malloc serves an allocation above its mmap threshold (128 KiB to start) with a fresh
//! `mmap` and gives it back with `munmap` when freed, and gives the top of its heap back to the
//! system once more than the trim threshold is free there. A batch's big buffers (the 6-12 MB
//! payload, its decoded records, the Arrow columns, the Parquet pages) are exactly that: every
//! batch mapped them anew and touched every page of them again. glibc raises the threshold by
//! itself as such blocks are freed, which is why a warm consumer took four or five batches to
//! settle (a 10,000-record pin batch: 62, 57, 53 ms before 45). [`keep_batch_memory`] sets both
//! thresholds up front, so the second batch already reuses what the first one touched. Peak
//! memory does not grow: the same buffers are reused, not kept beside new ones.

/// Blocks up to this size come from the heap, not from their own mapping: glibc's largest
/// (half of its 64 MiB heap size on 64-bit systems).
pub const MMAP_THRESHOLD: i32 = 32 << 20;

/// The free memory the heap keeps at its top rather than giving back: more than a batch uses.
/// Only memory a batch has used is kept, so the process stays at its peak of one batch (the
/// producer at 256 MB of memory keeps tens of MB, a consumer 50-90 MB), never at this figure.
pub const TRIM_THRESHOLD: i32 = 256 << 20;

/// Sets the thresholds; call it first thing in `main`. A no-op where the C library is not glibc.
pub fn keep_batch_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes the allocator's parameters; it takes no pointers.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}
