//! `attache:plugin/host`: a plugin's log lines and progress, into `tracing`.

use super::bindings::attache::plugin::host::Host;
use super::bindings::attache::plugin::types::{Host as TypesHost, Level};
use super::State;

impl TypesHost for State {}

impl Host for State {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let plugin = self.plugin.as_str();
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
        Ok(())
    }

    fn progress(
        &mut self,
        items_done: u64,
        bytes_done: u64,
        items_total: Option<u64>,
        bytes_total: Option<u64>,
    ) -> wasmtime::Result<()> {
        tracing::debug!(
            plugin = self.plugin.as_str(),
            items_done,
            bytes_done,
            ?items_total,
            ?bytes_total,
            "progress"
        );
        Ok(())
    }
}
