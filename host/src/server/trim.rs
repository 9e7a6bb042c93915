//! Giving freed memory back to the system. After a flood of connections
//! closes, the allocator keeps what they used in its per-thread arenas, and
//! the server's resident memory would stay at the flood's peak; on glibc,
//! `malloc_trim` returns the free pages. Elsewhere this does nothing.

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
pub fn release_free_memory() {}
