//! Building an [`Item`].

use crate::{Item, ItemKind, ItemMetadata};

impl Item {
    /// An item with its id, kind and metadata.
    pub fn new(id: impl Into<String>, kind: ItemKind, metadata: ItemMetadata) -> Self {
        Item {
            id: id.into(),
            kind,
            metadata,
        }
    }
}
