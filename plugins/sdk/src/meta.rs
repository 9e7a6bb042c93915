//! Building [`ItemMetadata`] without writing out its nine fields.

use crate::{ItemMetadata, Timestamp};

/// Short name for [`ItemMetadata`], the type its builder methods are on:
/// `Meta::new(size).mode(0o644).owner(uid, gid).mtime(ts).attr("rows", "12")`.
pub type Meta = ItemMetadata;

impl ItemMetadata {
    /// Metadata with a size and nothing else.
    pub fn new(size: u64) -> Self {
        ItemMetadata {
            size,
            mode: None,
            uid: None,
            gid: None,
            mtime: None,
            symlink_target: None,
            hardlink_target: None,
            attributes: Vec::new(),
            change_token: None,
        }
    }

    /// Sets the POSIX type and permission bits (`st_mode`).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Sets the owner user and group ids.
    pub fn owner(mut self, uid: u32, gid: u32) -> Self {
        self.uid = Some(uid);
        self.gid = Some(gid);
        self
    }

    /// Sets the modification time.
    pub fn mtime(mut self, mtime: Timestamp) -> Self {
        self.mtime = Some(mtime);
        self
    }

    /// Sets the target of a symbolic link.
    pub fn symlink(mut self, target: impl Into<String>) -> Self {
        self.symlink_target = Some(target.into());
        self
    }

    /// Sets the item a hard link names.
    pub fn hardlink(mut self, target: impl Into<String>) -> Self {
        self.hardlink_target = Some(target.into());
        self
    }

    /// Adds an application attribute for the catalog.
    pub fn attr(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.attributes.push((key.into(), value.to_string()));
        self
    }

    /// Sets the item's title, its name for people (a message's subject):
    /// the `title` attribute, which `attache ls` shows and `attache find`
    /// searches.
    pub fn title(self, title: impl ToString) -> Self {
        self.attr("title", title)
    }

    /// Sets the change token compared with the previous backup's.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.change_token = Some(token.into());
        self
    }

    /// The value of an attribute, the last one if it was added twice.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the item is unchanged since `previous`: both have a change
    /// token and they are equal.
    pub fn same_as(&self, previous: &ItemMetadata) -> bool {
        self.change_token.is_some() && self.change_token == previous.change_token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_metadata() {
        let ts = Timestamp {
            seconds: 7,
            nanoseconds: 1,
        };
        let m = Meta::new(5)
            .mode(0o100644)
            .owner(1, 2)
            .mtime(ts)
            .attr("rows", 3)
            .token("t");
        assert_eq!(m.size, 5);
        assert_eq!((m.mode, m.uid, m.gid), (Some(0o100644), Some(1), Some(2)));
        assert_eq!(m.mtime, Some(ts));
        assert_eq!(m.attribute("rows"), Some("3"));
        assert!(m.same_as(&Meta::new(0).token("t")));
        assert!(!Meta::new(0).same_as(&Meta::new(0)));
    }
}
