//! Memory limit and deadline of a plugin run.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use wasmtime::{Engine, ResourceLimiter};

/// Bounds of one plugin run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory the plugin may grow to, in bytes.
    pub memory: usize,
    /// Wall-clock time a call may take before the plugin is interrupted.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: 512 << 20,
            deadline: Duration::from_secs(6 * 3600),
        }
    }
}

/// Refuses memory growth past the limit, and remembers that it did so
/// that the error names the limit rather than a bare trap.
pub struct MemoryLimiter {
    limit: usize,
    pub hit: bool,
}

impl MemoryLimiter {
    pub fn new(limit: usize) -> Self {
        Self { limit, hit: false }
    }
}

/// The error a refused growth traps with.
#[derive(Debug, thiserror::Error)]
#[error("memory limit reached")]
pub struct MemoryLimitReached;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Err(MemoryLimitReached.into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// Interrupts the engine's running code once the deadline passes. Dropping
/// the guard stops the timer.
pub struct DeadlineGuard {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl DeadlineGuard {
    pub fn start(engine: &Engine, deadline: Duration) -> Self {
        let (tx, rx) = mpsc::channel::<()>();
        let engine = engine.clone();
        let thread = thread::Builder::new()
            .name("deadline".into())
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(deadline) {
                    engine.increment_epoch();
                }
            })
            .ok();
        Self {
            stop: Some(tx),
            thread,
        }
    }
}

impl Drop for DeadlineGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
