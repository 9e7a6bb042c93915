//! Catalog metadata of a database item: its size and engine-specific
//! attributes; none of the POSIX fields a file has.

use crate::attache::plugin::types::ItemMetadata;

pub fn item_metadata(size: u64, attributes: Vec<(String, String)>) -> ItemMetadata {
    ItemMetadata {
        size,
        mode: None,
        uid: None,
        gid: None,
        mtime: None,
        symlink_target: None,
        hardlink_target: None,
        attributes,
        change_token: None,
    }
}
