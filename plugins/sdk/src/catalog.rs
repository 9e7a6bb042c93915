//! Building a [`CatalogEntry`] for `discover`.

use crate::{CatalogEntry, ItemKind};

impl CatalogEntry {
    /// An entry with no known size and nothing below it.
    pub fn new(id: impl Into<String>, kind: ItemKind) -> Self {
        CatalogEntry {
            id: id.into(),
            kind,
            size: None,
            has_children: false,
        }
    }

    /// Sets the size in bytes.
    pub fn size(mut self, size: u64) -> Self {
        self.size = Some(size);
        self
    }

    /// Marks the entry as having items below it.
    pub fn children(mut self) -> Self {
        self.has_children = true;
        self
    }
}
