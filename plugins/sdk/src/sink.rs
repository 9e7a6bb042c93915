//! Where a backup sends its items (`backup-sink`): [`emit`] an item with
//! its content, or [`begin`] one and write its content piece by piece.
//!
//! On a native target these go to the [`crate::mock`] host.

use crate::wasi::filesystem::types::Descriptor;
use crate::{Item, ItemData, ItemMetadata, PluginError};

/// The item's metadata in the previous backup, if the job provides it.
pub fn previous(id: &str) -> Option<ItemMetadata> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::attache::plugin::backup_sink::previous(id);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::mock::previous(id);
}

/// Emits one item with its content.
pub fn emit(item: &Item, data: &ItemData<'_>) -> Result<(), PluginError> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::attache::plugin::backup_sink::emit(item, data);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::mock::emit(item, data);
}

/// Starts an item whose content follows through the returned [`Writer`].
/// Only one item may be open at a time.
pub fn begin(item: &Item) -> Result<Writer, PluginError> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::attache::plugin::backup_sink::begin(item)
        .map(|inner| Writer { inner });
    #[cfg(not(target_arch = "wasm32"))]
    return crate::mock::begin(item).map(|inner| Writer { inner });
}

/// Records that an item could not be backed up, and goes on.
pub fn warn(id: &str, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::attache::plugin::backup_sink::warn(id, message);
    #[cfg(not(target_arch = "wasm32"))]
    crate::mock::sink_warn(id, message);
}

/// The content of an item begun with [`begin`]. Dropping it unfinished
/// aborts the item: the stream records it as failed.
#[derive(Debug)]
pub struct Writer {
    #[cfg(target_arch = "wasm32")]
    inner: crate::bindings::attache::plugin::backup_sink::ItemWriter,
    #[cfg(not(target_arch = "wasm32"))]
    inner: crate::mock::MockWriter,
}

impl Writer {
    /// Appends bytes (keep pieces large, 64 KiB to 1 MiB).
    pub fn write(&self, bytes: &[u8]) -> Result<(), PluginError> {
        self.inner.write(bytes)
    }

    /// Appends `length` bytes of an open file from `offset`, read natively
    /// by the runner; returns how many were appended. Not available under
    /// the mock host, which has no descriptors.
    pub fn write_file(
        &self,
        fd: &Descriptor,
        offset: u64,
        length: u64,
    ) -> Result<u64, PluginError> {
        self.inner.write_file(fd, offset, length)
    }

    /// Completes the item; returns its size in bytes.
    pub fn finish(self) -> Result<u64, PluginError> {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::attache::plugin::backup_sink::ItemWriter::finish(self.inner);
        #[cfg(not(target_arch = "wasm32"))]
        return self.inner.finish();
    }
}
