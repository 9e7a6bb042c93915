//! Giving freed memory back to the system. After a flood of connections
//! closes, the allocator keeps what they used in its per-thread arenas, and
//! the server's resident memory would stay at the flood's peak; on glibc,
//! `malloc_trim` returns the free pages. Elsewhere this does nothing.
//!
//! `malloc_trim` alone is not enough on glibc. It gives back the free
//! chunks of every arena, but the free space at the top of a per-thread
//! arena (where the runtime's workers allocate) only in the main one. And
//! with glibc's fast bins, a connection's small blocks are freed without
//! being merged with their neighbours; they are merged, into that top, only
//! when something consolidates the arena. When the last frees after a flood
//! were small, that something was `malloc_trim` itself, so the flood's
//! memory ended in a top it does not give back: in 6 of 66 runs of
//! `tests/flood.rs`, 9.6 to 12 MiB more than the baseline stayed resident,
//! in one worker's arena (`malloc_info`: one free top of 16.6 MiB, 1.4 MB
//! in use in the whole process). With fast bins off, each free merges at
//! once, and a merge into a top above the trim threshold gives it back
//! then: 32 runs in a row ended within 1.2 MiB of the baseline.

/// Turns glibc's fast bins off, so that each free merges with its free
/// neighbours at once and a heap's free top is given back as it grows
/// past the trim threshold (see the module's notes); called once, as the
/// server starts. Small blocks are still cached per thread (glibc's
/// tcache), which is where the fast bins' speed mostly went.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(
    unsafe_code,
    reason = "mallopt is a C function; there is no safe binding"
)]
pub(super) fn merge_every_free() {
    /// `M_MXFAST` in glibc's malloc.h: the largest block kept in a fast bin.
    const M_MXFAST: std::os::raw::c_int = 1;
    extern "C" {
        fn mallopt(param: std::os::raw::c_int, value: std::os::raw::c_int) -> std::os::raw::c_int;
    }
    // SAFETY: mallopt takes two plain integers and changes only the
    // allocator's own settings, under its lock; 0 is in M_MXFAST's range,
    // and blocks already in fast bins are merged when the arena next
    // consolidates.
    unsafe {
        mallopt(M_MXFAST, 0);
    }
}

/// Turns fast bins off where the allocator has them; here it has none.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(super) fn merge_every_free() {}

/// Returns free heap pages to the system, where the allocator can.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(
    unsafe_code,
    reason = "malloc_trim is a C function; there is no safe binding"
)]
pub(super) fn release_free_memory() {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::os::raw::c_int;
    }
    // SAFETY: malloc_trim takes a plain integer, touches only the
    // allocator's own state under its locks, and is safe to call from any
    // thread at any time.
    unsafe {
        malloc_trim(0);
    }
}

/// Returns free heap pages to the system, where the allocator can.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(super) fn release_free_memory() {}
