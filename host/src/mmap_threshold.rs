//! Holding glibc's mmap threshold (issue 12: peak memory no higher than
//! restic's).
//!
//! glibc serves an allocation of 128 KiB or more with a mapping of its own,
//! returned to the system when freed, until the first such block is freed:
//! from then on the threshold rises to that block's size, and blocks below
//! it come from the per-thread arenas, which keep what is freed. A backup
//! and a restore pass chunks of up to 8 MiB between threads, so after the
//! first large free their buffers piled up in the arenas of every thread
//! that ever held one. On a 25,519-item tree, same run, three rounds each:
//!
//! | step | dynamic (glibc's default) | held at 1 MiB |
//! |---|---|---|
//! | first backup | 103-105 MiB, 2.11-2.39 s | 79 MiB, 2.26-2.38 s |
//! | full restore | 87-92 MiB, 1.58-2.12 s | 80-81 MiB, 1.39-1.79 s |
//!
//! At 1 MiB, buffers of a chunk's size (1 MiB on average) are mapped and
//! unmapped, smaller ones stay on the heap. `mallopt` setting the threshold
//! also turns its rising off. Elsewhere than glibc this does nothing.

/// The threshold held: blocks of this size or more are mapped.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const THRESHOLD: std::os::raw::c_int = 1 << 20;

/// Holds the threshold at [`THRESHOLD`]; called once, first thing.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(
    unsafe_code,
    reason = "mallopt is a C function; there is no safe binding"
)]
pub(crate) fn hold() {
    /// `M_MMAP_THRESHOLD` in glibc's malloc.h.
    const M_MMAP_THRESHOLD: std::os::raw::c_int = -3;
    extern "C" {
        fn mallopt(param: std::os::raw::c_int, value: std::os::raw::c_int) -> std::os::raw::c_int;
    }
    // SAFETY: mallopt takes two plain integers and changes only the
    // allocator's own settings, under its lock; blocks allocated before
    // keep how they were allocated and are freed correctly either way. It
    // refuses (returns 0) only a value above 32 MiB, which this is not,
    // and a refusal would leave glibc's default in force.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, THRESHOLD);
    }
}

/// Holds the threshold where the allocator has one; here it has none.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn hold() {}
