//! The runner's services: the job's log and progress. Under the
//! [`crate::mock`] host they are recorded for the test to inspect, or,
//! with no mock running, logged to standard error and dropped.

use crate::Level;

/// Writes a line to the job's log, tagged with the plugin's name.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::attache::plugin::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    crate::mock::log(level, message);
}

/// Logs at `info`.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Logs at `debug`.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Reports progress of the current call; `None` totals are unknown. Cheap
/// enough to call per item: the runner forwards it a few times a second.
pub fn progress(
    items_done: u64,
    bytes_done: u64,
    items_total: Option<u64>,
    bytes_total: Option<u64>,
) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::attache::plugin::host::progress(
        items_done,
        bytes_done,
        items_total,
        bytes_total,
    );
    #[cfg(not(target_arch = "wasm32"))]
    crate::mock::progress(items_done, bytes_done, items_total, bytes_total);
}
