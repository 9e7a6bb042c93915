//! Building an [`AccessPlan`]: `AccessPlan::new().read(path, why)...`.

use crate::{AccessPlan, NetNeed, PathAccess, PathNeed};

impl Default for AccessPlan {
    /// Nothing at all.
    fn default() -> Self {
        AccessPlan {
            paths: Vec::new(),
            connect: Vec::new(),
            ownership: false,
            memory_mib: None,
            deadline_secs: None,
        }
    }
}

impl AccessPlan {
    /// A plan that needs nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks to read `path` (a directory with everything below it, or a
    /// file alone).
    pub fn read(self, path: impl Into<String>, reason: impl Into<String>) -> Self {
        self.path(path.into(), PathAccess::Read, reason.into())
    }

    /// Asks to read and write `path`; the runner creates a missing
    /// directory.
    pub fn read_write(self, path: impl Into<String>, reason: impl Into<String>) -> Self {
        self.path(path.into(), PathAccess::ReadWrite, reason.into())
    }

    /// Asks for `path` with `access`. A path asked for twice is listed
    /// once, read-write if either asked for it.
    pub fn path(mut self, path: String, access: PathAccess, reason: String) -> Self {
        match self.paths.iter_mut().find(|p| p.path == path) {
            Some(p) => {
                if access == PathAccess::ReadWrite && p.access == PathAccess::Read {
                    p.access = PathAccess::ReadWrite;
                    p.reason = reason;
                }
            }
            None => self.paths.push(PathNeed {
                path,
                access,
                reason,
            }),
        }
        self
    }

    /// Asks to connect to one `IP:PORT` (`[IPv6]:PORT`); listed once.
    pub fn connect(mut self, address: impl Into<String>, reason: impl Into<String>) -> Self {
        let address = address.into();
        if !self.connect.iter().any(|n| n.address == address) {
            self.connect.push(NetNeed {
                address,
                reason: reason.into(),
            });
        }
        self
    }

    /// Asks to set owners and permission bits of restored items.
    pub fn ownership(mut self) -> Self {
        self.ownership = true;
        self
    }

    /// Says how much memory the job is expected to need, in MiB.
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = Some(mib);
        self
    }

    /// Says how long the job is expected to take, in seconds.
    pub fn deadline_secs(mut self, secs: u64) -> Self {
        self.deadline_secs = Some(secs);
        self
    }

    /// Adds everything `other` asks for to this plan.
    pub fn merge(mut self, other: AccessPlan) -> Self {
        for p in other.paths {
            self = self.path(p.path, p.access, p.reason);
        }
        for n in other.connect {
            self = self.connect(n.address, n.reason);
        }
        self.ownership |= other.ownership;
        self.memory_mib = self.memory_mib.max(other.memory_mib);
        self.deadline_secs = self.deadline_secs.max(other.deadline_secs);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_addresses_are_listed_once() {
        let p = AccessPlan::new()
            .read("/srv", "data")
            .read_write("/srv", "restore")
            .read("/srv", "again")
            .connect("127.0.0.1:5432", "db")
            .connect("127.0.0.1:5432", "db")
            .ownership()
            .memory_mib(64)
            .deadline_secs(60);
        assert_eq!(p.paths.len(), 1);
        assert_eq!(p.paths[0].access, PathAccess::ReadWrite);
        assert_eq!(p.connect.len(), 1);
        assert!(p.ownership);
        assert_eq!((p.memory_mib, p.deadline_secs), (Some(64), Some(60)));
        let m = AccessPlan::new().read("/a", "x").merge(p);
        assert_eq!(m.paths.len(), 2);
        assert_eq!(m.memory_mib, Some(64));
    }
}
