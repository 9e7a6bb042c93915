//! What a job grants a plugin, turned into a WASI context. Nothing is
//! ambient: no preopen, address, environment variable or argument reaches
//! the plugin unless it is listed here.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

use super::bindings::attache::plugin::types::{Capability, PluginInfo};
use super::RunnerError;

/// Grants of one job.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Directories the plugin may read, each visible at its own absolute path.
    pub read: Vec<PathBuf>,
    /// The restore target: visible read-write as the preopen `/`.
    pub write_root: Option<PathBuf>,
    /// Addresses the plugin may connect to. An address with port 0 allows
    /// every port of that host.
    pub net: Vec<SocketAddr>,
}

impl Grants {
    /// Refuses grants the plugin did not declare a capability for.
    pub fn check(&self, info: &PluginInfo) -> Result<(), RunnerError> {
        let has = |c: Capability| info.capabilities.contains(&c);
        let undeclared = |capability| {
            Err(RunnerError::Undeclared {
                plugin: info.name.clone(),
                capability,
            })
        };
        if !self.read.is_empty() && !has(Capability::FilesystemRead) {
            return undeclared("filesystem-read");
        }
        if self.write_root.is_some() && !has(Capability::FilesystemWrite) {
            return undeclared("filesystem-write");
        }
        if !self.net.is_empty() && !has(Capability::Network) {
            return undeclared("network");
        }
        Ok(())
    }

    /// The WASI context holding exactly these grants.
    pub fn wasi(&self) -> Result<WasiCtx, RunnerError> {
        let mut b = WasiCtxBuilder::new();
        b.allow_blocking_current_thread(true).inherit_stderr();
        for p in &self.read {
            let guest = p.to_string_lossy().into_owned();
            b.preopened_dir(p, &guest, FsPerms::ReadOnly)
                .map_err(|e| grant_err(p, e))?;
        }
        if let Some(p) = &self.write_root {
            b.preopened_dir(p, "/", FsPerms::ReadWrite)
                .map_err(|e| grant_err(p, e))?;
        }
        if !self.net.is_empty() {
            let exact: HashSet<SocketAddr> =
                self.net.iter().copied().filter(|a| a.port() != 0).collect();
            let hosts: HashSet<IpAddr> = self
                .net
                .iter()
                .filter(|a| a.port() == 0)
                .map(|a| a.ip())
                .collect();
            b.allow_tcp(true)
                .allow_udp(false)
                .allow_ip_name_lookup(false);
            b.socket_addr_check(move |addr, use_| {
                let ok = match use_ {
                    // Outbound connections to the granted addresses only.
                    SocketAddrUse::TcpConnect => {
                        exact.contains(&addr) || hosts.contains(&addr.ip())
                    }
                    // The ephemeral bind a connect makes implicitly.
                    SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
                    // No listening, accepting or UDP.
                    _ => false,
                };
                tracing::debug!(%addr, ?use_, ok, "socket address check");
                Box::pin(async move { ok })
            });
        }
        Ok(b.build())
    }
}

fn grant_err(p: &std::path::Path, e: wasmtime::Error) -> RunnerError {
    RunnerError::Grant {
        path: p.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}
