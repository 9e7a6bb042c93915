//! Host state of one plugin instance: its WASI context, resource table,
//! limiter, and the sink or source of the running job.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::limits::MemoryLimiter;
use super::{Sink, Source};

pub struct State {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    /// The plugin's name, for log lines and errors.
    pub(crate) plugin: String,
    /// Whether `posix.set-mode` and `posix.set-owner-at` are allowed.
    pub(crate) ownership: bool,
    pub(crate) sink: Option<Sink>,
    pub(crate) source: Option<Source>,
}

impl State {
    pub fn new(plugin: &str, wasi: WasiCtx, memory_limit: usize) -> Self {
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_limit),
            plugin: plugin.into(),
            ownership: false,
            sink: None,
            source: None,
        }
    }

    /// Allows the plugin to change owners and modes below writable grants.
    pub fn with_ownership(mut self, on: bool) -> Self {
        self.ownership = on;
        self
    }

    pub fn with_sink(mut self, sink: Sink) -> Self {
        self.sink = Some(sink);
        self
    }

    pub fn with_source(mut self, source: Source) -> Self {
        self.source = Some(source);
        self
    }

    /// Sets the sink of an instance already started (after quiesce).
    pub fn set_sink(&mut self, sink: Sink) {
        self.sink = Some(sink);
    }

    pub fn take_sink(&mut self) -> Option<Sink> {
        self.sink.take()
    }

    pub fn take_source(&mut self) -> Option<Source> {
        self.source.take()
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
