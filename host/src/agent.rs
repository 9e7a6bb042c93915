//! The agent container on the server: the directory holding guest-runner,
//! the plugins and their manifest, exactly as they go into a VM's container,
//! and running that runner on this machine for `local` jobs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use guest_runner::manifest::{MANIFEST_FILE, RUNNER_FILE};

/// The container directory: the flag or `ATTACHE_AGENT_DIR`, else `agent/`
/// next to the `attache` executable (where `make build` puts it).
pub fn find(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = match flag {
        Some(d) => d.to_owned(),
        None => {
            let exe = std::env::current_exe().context("cannot find attache's own path")?;
            exe.parent()
                .map(|p| p.join("agent"))
                .unwrap_or_else(|| PathBuf::from("agent"))
        }
    };
    if !dir.join(MANIFEST_FILE).is_file() || !dir.join(RUNNER_FILE).is_file() {
        bail!(
            "no agent container at {} (it needs {MANIFEST_FILE} and {RUNNER_FILE}); run `make build` or pass --agent-dir",
            dir.display()
        );
    }
    Ok(dir)
}

/// Runs the container's guest-runner on this machine.
pub struct LocalRunner {
    pub dir: PathBuf,
    pub cache_dir: Option<PathBuf>,
}

impl LocalRunner {
    /// A runner command with the container and cache set.
    pub fn command(&self) -> Command {
        let mut c = Command::new(self.dir.join(RUNNER_FILE));
        c.arg("--agent-dir").arg(&self.dir);
        if let Some(cache) = &self.cache_dir {
            c.arg("--cache-dir").arg(cache);
        }
        c.stdin(Stdio::null()).stderr(Stdio::inherit());
        c
    }
}

/// The default local cache: `$XDG_CACHE_HOME/attache` or `~/.cache/attache`.
pub fn default_cache() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("attache"))
}
