//! Memory limit and deadline of a plugin run.
//!
//! The memory limit is for the whole instance: the sum of all its linear
//! memories, and its tables by element, since a component can hold many
//! memories, each within a per-memory limit. The deadline is enforced with
//! wasmtime's epoch interruption: one ticker thread per engine advances the
//! epoch every [`TICK`], and each call sets how many ticks it may run.

use std::time::Duration;

use wasmtime::{Engine, ResourceLimiter};

/// Bounds of one plugin run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory the plugin may grow to, in bytes, over all its memories.
    pub memory: usize,
    /// Wall-clock time all calls on the instance may take before the plugin
    /// is interrupted.
    pub deadline: Duration,
    /// Wall-clock time `quiesce` may take.
    pub quiesce: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: 512 << 20,
            deadline: Duration::from_secs(6 * 3600),
            quiesce: Duration::from_secs(300),
        }
    }
}

/// Table elements an instance may hold in all, whatever its memory limit.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Memories and tables an instance may have.
const MAX_MEMORIES: usize = 64;
const MAX_TABLES: usize = 256;

/// Refuses growth that would take the instance's memories past the limit,
/// and remembers that it did so that the error names the limit rather than
/// a bare trap.
pub(crate) struct MemoryLimiter {
    limit: usize,
    used: usize,
    table_elements: usize,
    pub hit: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            used: 0,
            table_elements: 0,
            hit: false,
        }
    }
}

/// The error a refused growth traps with.
#[derive(Debug, thiserror::Error)]
#[error("memory limit reached")]
pub(crate) struct MemoryLimitReached;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.limit {
            self.hit = true;
            return Err(MemoryLimitReached.into());
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .table_elements
            .saturating_sub(current)
            .saturating_add(desired);
        if total > MAX_TABLE_ELEMENTS {
            self.hit = true;
            return Err(MemoryLimitReached.into());
        }
        self.table_elements = total;
        Ok(true)
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

/// How often the epoch advances.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// Starts the thread that advances `engine`'s epoch every [`TICK`] for as
/// long as the process lives.
pub(crate) fn start_ticker(engine: &Engine) {
    let engine = engine.clone();
    let started = std::thread::Builder::new()
        .name("epoch".into())
        .spawn(move || loop {
            std::thread::sleep(TICK);
            engine.increment_epoch();
        });
    if let Err(e) = started {
        tracing::error!("cannot start the deadline ticker: {e}; deadlines will not interrupt");
    }
}

/// Epoch ticks for a duration, at least one.
pub(crate) fn ticks(d: Duration) -> u64 {
    (d.as_millis() / TICK.as_millis()).max(1) as u64
}
