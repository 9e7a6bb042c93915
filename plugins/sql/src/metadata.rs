//! Catalog metadata of a database item: its size and engine-specific
//! attributes; none of the POSIX fields a file has.

use attache_plugin_sdk::{ItemMetadata, Meta};

pub(crate) fn item_metadata(size: u64, attributes: Vec<(String, String)>) -> ItemMetadata {
    let mut md = Meta::new(size);
    md.attributes = attributes;
    md
}
