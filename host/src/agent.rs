//! The agent container on the server: the directory holding guest-runner,
//! the plugins and their manifest, exactly as they go into a VM's container,
//! and running that runner on this machine for `local` jobs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use guest_runner::manifest::{MANIFEST_FILE, RUNNER_FILE};

/// The container directory: the flag or `ATTACHE_AGENT_DIR`, else `agent/`
/// next to the `attache` executable (where `make build` puts it).
pub(crate) fn find(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
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
pub(crate) struct LocalRunner {
    pub dir: PathBuf,
    pub cache_dir: Option<PathBuf>,
    /// The container's manifest, parsed from the bytes that were verified.
    pub manifest: guest_runner::manifest::Manifest,
}

impl LocalRunner {
    /// A runner command with the container and cache set.
    pub(crate) fn command(&self) -> Command {
        let mut c = Command::new(self.dir.join(RUNNER_FILE));
        c.arg("--agent-dir").arg(&self.dir);
        if let Some(cache) = &self.cache_dir {
            c.arg("--cache-dir").arg(cache);
        }
        c.stdin(Stdio::null()).stderr(Stdio::piped());
        c
    }
}

/// A local runner's standard error, read on the side: logged as it comes
/// (target `attache::runner`) and its last lines kept, so that a failed job
/// says why in its own error, also through the server.
pub(crate) struct StderrTail {
    reader: Option<std::thread::JoinHandle<Vec<String>>>,
}

/// How many of the runner's last lines an error quotes.
const TAIL_LINES: usize = 20;

impl StderrTail {
    pub(crate) fn capture(child: &mut std::process::Child) -> Self {
        // The runner's lines are logged in the job's span, so that they
        // carry its id, target and plugin like the host's own.
        let span = tracing::Span::current();
        let reader = child.stderr.take().map(|err| {
            std::thread::spawn(move || {
                let _in = span.entered();
                use std::io::BufRead;
                let mut last = std::collections::VecDeque::new();
                for line in std::io::BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    tracing::info!(target: "attache::runner", "{line}");
                    if last.len() == TAIL_LINES {
                        last.pop_front();
                    }
                    last.push_back(line);
                }
                last.into_iter().collect()
            })
        });
        Self { reader }
    }

    /// The last lines, once the runner has closed its standard error.
    pub(crate) fn finish(mut self) -> String {
        self.reader
            .take()
            .and_then(|r| r.join().ok())
            .unwrap_or_default()
            .join("\n")
    }
}

/// The default local cache: `$XDG_CACHE_HOME/attache` or `~/.cache/attache`.
pub(crate) fn default_cache() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("attache"))
}
