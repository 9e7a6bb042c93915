//! Host state of one plugin instance: its WASI context, resource table,
//! limiter, and the sink or source of the running job.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::limits::MemoryLimiter;
use super::{Grants, RunnerError, Sink, Source};

/// What a plugin's store holds: its WASI context and resource table, the
/// memory limiter, and the sink or source of the job.
pub struct State {
    pub(crate) wasi: WasiCtx,
    /// The granted paths, as `wasi:filesystem/preopens` lists them.
    pub(crate) preopens: Vec<(Descriptor, String)>,
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
    /// An instance granted nothing.
    pub fn new(plugin: &str, memory_limit: usize) -> Self {
        Self {
            wasi: Grants::default().wasi(),
            preopens: Vec::new(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_limit),
            plugin: plugin.into(),
            ownership: false,
            sink: None,
            source: None,
        }
    }

    /// An instance granted exactly `grants`.
    pub fn granted(
        plugin: &str,
        grants: &Grants,
        memory_limit: usize,
    ) -> Result<Self, RunnerError> {
        let mut s = Self::new(plugin, memory_limit);
        s.wasi = grants.wasi();
        s.preopens = grants.preopens()?;
        s.ownership = grants.ownership;
        Ok(s)
    }

    /// The store with the sink a backup writes to.
    pub fn with_sink(mut self, sink: Sink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// The store with the source a restore reads from.
    pub fn with_source(mut self, source: Source) -> Self {
        self.source = Some(source);
        self
    }

    /// Sets the sink of an instance already started (after quiesce).
    pub fn set_sink(&mut self, sink: Sink) {
        self.sink = Some(sink);
    }

    /// Takes the sink back, to finish the stream.
    pub fn take_sink(&mut self) -> Option<Sink> {
        self.sink.take()
    }

    /// Takes the source back.
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
