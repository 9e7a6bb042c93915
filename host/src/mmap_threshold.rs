//! Holding glibc's mmap threshold (issue 12: peak memory no higher than
//! restic's).
//!
//! glibc serves an allocation of 128 KiB or more with a mapping of its own,
//! returned to the system when freed, until the first such block is freed:
//! from then on the threshold rises to that block's size, and blocks below
//! it come from the per-thread arenas, which keep what is freed. A backup
//! and a restore pass chunks of up to 8 MiB between threads, so after the
//! first large free their buffers piled up in the arenas of every thread
//! that ever held one.
//!
//! Setting the threshold (`mallopt`) holds it. At 1 MiB, buffers of a
//! chunk's size (1 MiB on average) are mapped and unmapped, smaller ones
//! stay on the heap. Holding it also holds the trim threshold, the free
//! space at the top of a heap that is given back to the system, at its
//! 128 KiB default: right for a restore, whose buffers come from a pool,
//! but a backup allocates a chunk's copies afresh for each chunk, and
//! giving back and faulting in again that often made a first backup of
//! random data 15-30% slower. A backup (and the server, which runs them)
//! keeps up to 4 MiB at the top of a heap.
//!
//! Same run, 3 rounds each, repository in tmpfs (MiB of the whole process
//! tree at its peak; time as wall):
//!
//! | step | glibc's default | held, trim 4 MiB | held, trim 128 KiB |
//! |---|---|---|---|
//! | first backup, 25,519-item tree | 100-107 | 86-87 | 84-88 |
//! | first backup, 1 GiB random | 119-127, 2.5-3.9 s | 90, 2.4-2.9 s | 88-89, 2.8-3.9 s |
//! | full restore, 25,519-item tree | 89-94 | 87-91 | 83-85 |
//!
//! Elsewhere than glibc this does nothing.

/// The threshold held: blocks of this size or more are mapped.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const THRESHOLD: std::os::raw::c_int = 1 << 20;
/// The trim threshold for work that allocates chunks afresh (a backup).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_WHILE_WRITING: std::os::raw::c_int = 4 << 20;

/// Holds the threshold at [`THRESHOLD`], and the trim threshold at
/// [`TRIM_WHILE_WRITING`] when `writing` (a backup, the server); called
/// once, first thing.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(
    unsafe_code,
    reason = "mallopt is a C function; there is no safe binding"
)]
pub(crate) fn hold(writing: bool) {
    /// `M_TRIM_THRESHOLD` and `M_MMAP_THRESHOLD` in glibc's malloc.h.
    const M_TRIM_THRESHOLD: std::os::raw::c_int = -1;
    const M_MMAP_THRESHOLD: std::os::raw::c_int = -3;
    extern "C" {
        fn mallopt(param: std::os::raw::c_int, value: std::os::raw::c_int) -> std::os::raw::c_int;
    }
    // SAFETY: mallopt takes two plain integers and changes only the
    // allocator's own settings, under its lock; blocks allocated before
    // keep how they were allocated and are freed correctly either way. It
    // refuses (returns 0) only a mmap threshold above 32 MiB, which this
    // is not, and a refusal would leave glibc's default in force.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, THRESHOLD);
        if writing {
            mallopt(M_TRIM_THRESHOLD, TRIM_WHILE_WRITING);
        }
    }
}

/// Holds the threshold where the allocator has one; here it has none.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn hold(_writing: bool) {}
