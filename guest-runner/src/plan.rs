//! A plugin's access plan as the runner prints it and the server reads it:
//! what one job of that plugin needs (the contract's `access-plan`, plus the
//! contract version that produced it). The runner grants exactly this once
//! the policy has allowed it.

use serde::{Deserialize, Serialize};

/// How a path is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathAccess {
    /// Read only.
    Read,
    /// Read and write (a missing directory is created before it is granted).
    ReadWrite,
}

impl PathAccess {
    /// The policy and log word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            PathAccess::Read => "read",
            PathAccess::ReadWrite => "read-write",
        }
    }
}

/// A path the plugin needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathNeed {
    /// An absolute guest path.
    pub path: String,
    /// Read or read-write.
    pub access: PathAccess,
    /// Why, in the plugin's words.
    pub reason: String,
}

/// An address the plugin needs to connect to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetNeed {
    /// `IP:PORT`, one exact address.
    pub address: String,
    /// Why, in the plugin's words.
    pub reason: String,
}

/// Everything one job of a plugin needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The contract version of the plugin that made the plan (`0.2.0`).
    pub contract: String,
    /// Paths to read or write.
    pub paths: Vec<PathNeed>,
    /// TCP addresses to connect to.
    pub connect: Vec<NetNeed>,
    /// Whether owners and modes of restored items are set.
    pub ownership: bool,
    /// The memory the plugin expects to need, in MiB.
    pub memory_mib: Option<u32>,
    /// The time the plugin expects to need, in seconds.
    pub deadline_secs: Option<u64>,
}

/// Bounds on a plan from an untrusted plugin: beyond them it is refused
/// outright, whatever the policy says.
pub const MAX_PATHS: usize = 4096;
/// The most addresses a plan may list.
pub const MAX_ADDRESSES: usize = 1024;
/// The longest path or reason a plan may carry, in bytes.
pub const MAX_TEXT: usize = 4096;

impl Plan {
    /// Checks the plan's shape: absolute, clean paths; exact `IP:PORT`
    /// addresses with a port; bounded sizes. Returns why not.
    pub fn check_shape(&self) -> Result<(), String> {
        if self.paths.len() > MAX_PATHS || self.connect.len() > MAX_ADDRESSES {
            return Err(format!(
                "the plan lists {} paths and {} addresses (at most {MAX_PATHS} and {MAX_ADDRESSES})",
                self.paths.len(),
                self.connect.len()
            ));
        }
        for p in &self.paths {
            if p.path.len() > MAX_TEXT || p.reason.len() > MAX_TEXT {
                return Err(format!("a path or reason longer than {MAX_TEXT} bytes"));
            }
            clean_path(&p.path).map_err(|why| format!("path {:?}: {why}", p.path))?;
        }
        for n in &self.connect {
            if n.reason.len() > MAX_TEXT {
                return Err(format!("a reason longer than {MAX_TEXT} bytes"));
            }
            let a = n.socket_addr()?;
            if a.port() == 0 {
                return Err(format!(
                    "address {:?}: port 0 would mean every port; a plan names one port",
                    n.address
                ));
            }
        }
        Ok(())
    }
}

impl NetNeed {
    /// The address as a socket address.
    pub fn socket_addr(&self) -> Result<std::net::SocketAddr, String> {
        self.address.parse().map_err(|_| {
            format!(
                "address {:?} is not IP:PORT (the sandbox grants addresses, not names)",
                self.address
            )
        })
    }
}

/// The components of an absolute path that has no `.`, `..` or empty
/// components and no NUL (`/` alone has none).
pub fn clean_path(p: &str) -> Result<Vec<&str>, &'static str> {
    let Some(rest) = p.strip_prefix('/') else {
        return Err("not an absolute path");
    };
    if p.contains('\0') {
        return Err("contains NUL");
    }
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let comps: Vec<&str> = rest.split('/').collect();
    if comps
        .iter()
        .any(|c| c.is_empty() || *c == "." || *c == "..")
    {
        return Err("has an empty, '.' or '..' component");
    }
    Ok(comps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(path: &str, addr: &str) -> Plan {
        Plan {
            contract: "0.2.0".into(),
            paths: vec![PathNeed {
                path: path.into(),
                access: PathAccess::Read,
                reason: "r".into(),
            }],
            connect: vec![NetNeed {
                address: addr.into(),
                reason: "r".into(),
            }],
            ..Plan::default()
        }
    }

    #[test]
    fn shapes() {
        assert!(plan("/srv/a", "127.0.0.1:5432").check_shape().is_ok());
        assert!(plan("/", "[::1]:143").check_shape().is_ok());
        assert!(plan("srv", "127.0.0.1:5432").check_shape().is_err());
        assert!(plan("/srv/../etc", "127.0.0.1:5432").check_shape().is_err());
        assert!(plan("/srv//a", "127.0.0.1:5432").check_shape().is_err());
        assert!(plan("/srv/a/", "127.0.0.1:5432").check_shape().is_err());
        assert!(plan("/srv", "db.example:5432").check_shape().is_err());
        assert!(plan("/srv", "127.0.0.1:0").check_shape().is_err());
        assert_eq!(clean_path("/a/b").unwrap(), vec!["a", "b"]);
    }
}
