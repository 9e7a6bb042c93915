//! What a job grants a plugin: exactly its plan, once the policy allowed
//! it, turned into WASI preopens and a socket check. Nothing is ambient: no
//! preopen, address, environment variable or argument reaches the plugin
//! unless the plan lists it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use wasmtime_wasi::filesystem::{Descriptor, Dir, File};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, OpenMode, WasiCtx, WasiCtxBuilder};

use super::RunnerError;
use crate::plan::{PathAccess, Plan};

/// One granted path: where it is on this machine and the name the plugin
/// sees it under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedPath {
    /// The path on this machine (below the restore root, for writes of a
    /// restore to an alternate root).
    pub host: PathBuf,
    /// The preopen's name: the path as the plugin's ids name it.
    pub name: String,
    /// Read-write, or read only.
    pub write: bool,
}

/// Grants of one plugin instance.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Paths, each a preopen.
    pub paths: Vec<GrantedPath>,
    /// Addresses the plugin may connect to, exactly.
    pub net: Vec<SocketAddr>,
    /// Whether `posix.set-mode` and `posix.set-owner-at` are allowed.
    pub ownership: bool,
}

impl Grants {
    /// The grants for an allowed plan. Paths the plan writes are granted
    /// below `root` when it is given (a restore to another root), under
    /// their own names.
    pub fn from_plan(plan: &Plan, root: Option<&Path>) -> Result<Self, RunnerError> {
        let mut paths: Vec<GrantedPath> = Vec::new();
        for need in &plan.paths {
            let write = need.access == PathAccess::ReadWrite;
            let host = match root {
                Some(r) if write => r.join(need.path.trim_start_matches('/')),
                _ => PathBuf::from(&need.path),
            };
            match paths.iter_mut().find(|p| p.name == need.path) {
                Some(p) => p.write |= write,
                None => paths.push(GrantedPath {
                    host,
                    name: need.path.clone(),
                    write,
                }),
            }
        }
        let mut net = Vec::new();
        for n in &plan.connect {
            let a = n
                .socket_addr()
                .map_err(|m| RunnerError::Other(format!("plan: {m}")))?;
            if !net.contains(&a) {
                net.push(a);
            }
        }
        Ok(Self {
            paths,
            net,
            ownership: plan.ownership,
        })
    }

    /// The WASI context: network as granted; no preopens (those are
    /// [`Grants::preopens`]), environment, arguments or stdin.
    pub fn wasi(&self) -> WasiCtx {
        let mut b = WasiCtxBuilder::new();
        b.allow_blocking_current_thread(true).inherit_stderr();
        if !self.net.is_empty() {
            let exact: HashSet<SocketAddr> = self.net.iter().copied().collect();
            b.allow_tcp(true)
                .allow_udp(false)
                .allow_ip_name_lookup(false);
            b.socket_addr_check(move |addr, use_| {
                let ok = match use_ {
                    // Outbound connections to the granted addresses only.
                    SocketAddrUse::TcpConnect => exact.contains(&addr),
                    // The ephemeral bind a connect makes implicitly.
                    SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
                    // No listening, accepting or UDP.
                    _ => false,
                };
                tracing::debug!(%addr, ?use_, ok, "socket address check");
                Box::pin(async move { ok })
            });
        } else {
            b.allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false);
        }
        b.build()
    }

    /// Opens the granted paths as preopens: a directory as a directory
    /// descriptor, a file alone as a file descriptor, each named by its
    /// path. A directory to write that does not exist is created first; a
    /// path to read that does not exist is left out (the plugin then finds
    /// it missing and says so).
    pub fn preopens(&self) -> Result<Vec<(Descriptor, String)>, RunnerError> {
        let mut out = Vec::new();
        for g in &self.paths {
            let err = |source: std::io::Error| RunnerError::Grant {
                path: g.host.display().to_string(),
                source,
            };
            let md = match std::fs::symlink_metadata(&g.host) {
                Ok(md) => Some(md),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(err(e)),
            };
            let (perms, mode) = if g.write {
                (FsPerms::ReadWrite, OpenMode::READ | OpenMode::WRITE)
            } else {
                (FsPerms::ReadOnly, OpenMode::READ)
            };
            let md = match md {
                Some(md) => md,
                None if g.write => {
                    std::fs::create_dir_all(&g.host).map_err(err)?;
                    std::fs::symlink_metadata(&g.host).map_err(err)?
                }
                None => {
                    tracing::debug!(path = %g.host.display(), "not granted: it does not exist");
                    continue;
                }
            };
            let descriptor = if md.is_dir() {
                let dir = cap_std::fs::Dir::open_ambient_dir(&g.host, cap_std::ambient_authority())
                    .map_err(err)?;
                Descriptor::Dir(Dir::new(dir.into_std_file(), perms, mode, true))
            } else if md.is_file() {
                use std::os::unix::fs::OpenOptionsExt;
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(g.write)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(&g.host)
                    .map_err(err)?;
                Descriptor::File(File::new(f, perms, mode, true))
            } else {
                return Err(err(std::io::Error::other(
                    "neither a directory nor a regular file (a symbolic link or a special \
                     file cannot be granted alone: select the directory that holds it)",
                )));
            };
            out.push((descriptor, g.name.clone()));
        }
        Ok(out)
    }
}
