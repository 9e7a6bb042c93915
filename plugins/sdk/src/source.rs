//! Where a restore takes its items from (`restore-source`): [`next`] until
//! it returns `None`, parents before children.
//!
//! On a native target these come from the [`crate::mock`] host.

use crate::wasi::filesystem::types::Descriptor;
use crate::{Item, PluginError};

/// The next item to restore with its content, or `None` at the end. The
/// content is valid until the next call.
pub fn next() -> Result<Option<(Item, Content)>, PluginError> {
    #[cfg(target_arch = "wasm32")]
    let next = crate::bindings::attache::plugin::restore_source::next()?;
    #[cfg(not(target_arch = "wasm32"))]
    let next = crate::mock::next()?;
    Ok(next.map(|(item, inner)| (item, Content { inner })))
}

/// Records that an item could not be restored, and goes on.
pub fn warn(id: &str, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::attache::plugin::restore_source::warn(id, message);
    #[cfg(not(target_arch = "wasm32"))]
    crate::mock::source_warn(id, message);
}

/// The content of one item being restored.
#[derive(Debug)]
pub struct Content {
    #[cfg(target_arch = "wasm32")]
    inner: crate::bindings::attache::plugin::restore_source::ItemContent,
    #[cfg(not(target_arch = "wasm32"))]
    inner: crate::mock::MockContent,
}

impl Content {
    /// Bytes not yet consumed.
    pub fn remaining(&self) -> u64 {
        self.inner.remaining()
    }

    /// Reads up to `max` bytes; an empty result is the end.
    pub fn read(&self, max: u32) -> Result<Vec<u8>, PluginError> {
        self.inner.read(max)
    }

    /// Reads everything that remains.
    pub fn read_all(&self) -> Result<Vec<u8>, PluginError> {
        let mut out = Vec::new();
        loop {
            let piece = self.read(1 << 20)?;
            if piece.is_empty() {
                return Ok(out);
            }
            out.extend_from_slice(&piece);
        }
    }

    /// Writes everything that remains into `fd` from offset 0, natively,
    /// without copying it through the plugin; returns the bytes written.
    /// Not available under the mock host, which has no descriptors.
    pub fn copy_to(&self, fd: &Descriptor) -> Result<u64, PluginError> {
        self.inner.copy_to(fd)
    }
}
