//! The JSON records carried by header, item, item-end, warning and trailer
//! frames. They mirror the WIT types of `attache:plugin`.

use serde::{Deserialize, Serialize};

/// First frame: who made the stream and for what.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    /// Stream format version (1).
    pub format: u32,
    /// Plugin that produced (backup) or will consume (restore) the items.
    pub plugin: String,
    /// That plugin's version.
    pub plugin_version: String,
    /// Seconds since the Unix epoch when the stream was started.
    pub created: i64,
}

/// A point in time.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    pub seconds: i64,
    /// Nanoseconds past the second.
    pub nanoseconds: u32,
}

/// What an item is; the names are those of the WIT `item-kind`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum ItemKind {
    /// A directory.
    Directory,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A hard link to an item earlier in the stream.
    Hardlink,
    /// A device, FIFO or socket.
    Special,
    /// A database.
    Database,
    /// A database schema.
    Schema,
    /// A table.
    Table,
    /// A mailbox.
    Mailbox,
    /// A message.
    Message,
    /// Any other opaque content.
    Blob,
}

impl ItemKind {
    /// The name of the WIT `item-kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Directory => "directory",
            Self::File => "file",
            Self::Symlink => "symlink",
            Self::Hardlink => "hardlink",
            Self::Special => "special",
            Self::Database => "database",
            Self::Schema => "schema",
            Self::Table => "table",
            Self::Mailbox => "mailbox",
            Self::Message => "message",
            Self::Blob => "blob",
        }
    }
}

/// One item: its id, kind and metadata (the WIT `item`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ItemRecord {
    /// The item's id, in the plugin's scheme.
    pub id: String,
    /// What it is.
    pub kind: ItemKind,
    /// Its content's length in bytes.
    pub size: u64,
    /// POSIX mode bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Modification time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<Timestamp>,
    /// Where a symlink points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symlink_target: Option<String>,
    /// The item a hard link shares its content with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardlink_target: Option<String>,
    /// Application attributes (keys and values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<(String, String)>,
    /// Changes whenever the content may have (see the WIT `change-token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_token: Option<String>,
    /// The content is that of the same item in the previous backup; the
    /// item carries no data.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unchanged: bool,
}

impl ItemRecord {
    /// An item with no metadata but its id, kind and size.
    pub fn new(id: impl Into<String>, kind: ItemKind, size: u64) -> Self {
        Self {
            id: id.into(),
            kind,
            size,
            mode: None,
            uid: None,
            gid: None,
            mtime: None,
            symlink_target: None,
            hardlink_target: None,
            attributes: Vec::new(),
            change_token: None,
            unchanged: false,
        }
    }

    /// Checks the id against the contract: not empty, at most
    /// [`MAX_ID_BYTES`], no NUL, and a path-like id (one that starts with
    /// `/`) has no `.`, `..` or empty components.
    pub fn check_id(&self) -> Result<(), String> {
        check_id(&self.id)
    }
}

/// The longest id, in bytes (Linux's `PATH_MAX`).
pub const MAX_ID_BYTES: usize = 4096;

/// See [`ItemRecord::check_id`].
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("empty id".into());
    }
    if id.len() > MAX_ID_BYTES {
        return Err(format!(
            "id is {} bytes long, more than the limit of {MAX_ID_BYTES}",
            id.len()
        ));
    }
    if id.contains('\0') {
        return Err("id contains a NUL byte".into());
    }
    if let Some(rest) = id.strip_prefix('/') {
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if !rest.is_empty()
            && rest
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err("path id has an empty, '.' or '..' component".into());
        }
    } else if id.split('/').any(|c| c == "..") && !id.contains("://") {
        return Err("id has a '..' component".into());
    }
    Ok(())
}

/// Closes an item: how many content bytes it had.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ItemEnd {
    /// Its content's length in bytes.
    pub size: u64,
}

/// A warning on an item, or the reason an item was aborted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Notice {
    /// The item.
    pub id: String,
    /// What happened.
    pub message: String,
}

/// The attribute key whose value names an item for people (a message's
/// subject, a table's comment): `attache ls` shows it and `attache find`
/// searches it. The contract documents it in `item-metadata.attributes`.
pub const TITLE: &str = "title";

/// An item's title attribute, if it has one.
pub fn title(r: &ItemRecord) -> Option<&str> {
    title_in(&r.attributes)
}

/// The title among `attributes` (an item's), if there is one.
pub fn title_in(attributes: &[(String, String)]) -> Option<&str> {
    attributes
        .iter()
        .find(|(k, _)| k == TITLE)
        .map(|(_, v)| v.as_str())
}

/// Last frame: totals the reader checks against what it saw.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Trailer {
    /// Items in the stream.
    pub items: u64,
    /// Content bytes in the stream.
    pub bytes: u64,
    /// Warnings in the stream.
    pub warnings: u64,
}

#[cfg(test)]
mod tests {
    use super::check_id;

    #[test]
    fn ids() {
        assert!(check_id("/srv/a b/ü").is_ok());
        assert!(check_id("/").is_ok());
        assert!(check_id("app://u@h:5432/db/public.t").is_ok());
        for bad in ["", "/a/../b", "/..", "/a//b", "/./a", "a/../../b", "x\0"] {
            assert!(check_id(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("/{}", "a".repeat(super::MAX_ID_BYTES));
        assert!(check_id(&long).unwrap_err().contains("limit of 4096"));
        assert!(check_id(&long[..super::MAX_ID_BYTES]).is_ok());
    }
}
