//! `items.json`: every item of a snapshot with its metadata and where its
//! frames start in the stored stream.

use guest_runner::stream::ItemRecord;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexedItem {
    #[serde(flatten)]
    pub item: ItemRecord,
    /// Byte offset of the item's frame in `stream`.
    pub offset: u64,
}

impl IndexedItem {
    /// Whether this item is `id` or lies below it.
    pub fn is_at_or_below(&self, id: &str) -> bool {
        let i = self.item.id.as_str();
        if i == id || id == "/" {
            return true;
        }
        let base = id.strip_suffix('/').unwrap_or(id);
        i.strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_runner::stream::ItemKind;

    fn at(id: &str) -> IndexedItem {
        IndexedItem {
            item: ItemRecord {
                id: id.into(),
                kind: ItemKind::File,
                size: 0,
                mode: None,
                uid: None,
                gid: None,
                mtime: None,
                symlink_target: None,
                hardlink_target: None,
                attributes: vec![],
            },
            offset: 0,
        }
    }

    #[test]
    fn selection_matches_whole_components() {
        assert!(at("/srv/a").is_at_or_below("/srv/a"));
        assert!(at("/srv/a/b").is_at_or_below("/srv/a"));
        assert!(at("/srv/a/b").is_at_or_below("/srv/a/"));
        assert!(!at("/srv/ab").is_at_or_below("/srv/a"));
        assert!(at("/srv/ab").is_at_or_below("/"));
    }
}
