//! The runner's errors: each says which limit or rule stopped a plugin.

use std::time::Duration;

use crate::manifest::ManifestError;
use crate::stream::StreamError;

/// Why a plugin run failed. Each variant says which limit or rule stopped
/// it; the runner prints it once, as the job's error.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)]
pub enum RunnerError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("plugin {plugin:?} could not be compiled or loaded: {message}")]
    Load { plugin: String, message: String },
    #[error("plugin {plugin:?} exceeded its memory limit of {limit_mib} MiB and was stopped")]
    MemoryLimit { plugin: String, limit_mib: u64 },
    #[error("plugin {plugin:?} exceeded its deadline of {deadline:?} and was stopped")]
    Deadline { plugin: String, deadline: Duration },
    #[error("plugin {plugin:?} trapped: {message}")]
    Trap { plugin: String, message: String },
    #[error("plugin {plugin:?} failed: {message}")]
    Plugin { plugin: String, message: String },
    #[error("plugin {plugin:?} reports name {reported:?}; the container is inconsistent")]
    NameMismatch { plugin: String, reported: String },
    #[error("plugin {plugin:?} exceeded its quiesce bound of {limit:?} and was stopped")]
    QuiesceTimeout { plugin: String, limit: Duration },
    #[error("plugin {plugin:?} cannot be called again: it trapped earlier in this job")]
    Poisoned { plugin: String },
    #[error(
        "plugin {plugin:?} is built against contract version {found}; this runner serves {served}"
    )]
    Contract {
        plugin: String,
        found: String,
        served: String,
    },
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error("plugin {plugin:?}: {message}")]
    Options { plugin: String, message: String },
    #[error("cannot grant {path}: {source}")]
    Grant {
        path: String,
        source: std::io::Error,
    },
    #[error("output failed: {0}")]
    Output(String),
    #[error("restore stream is for plugin {found:?}, not {expected:?}")]
    WrongPlugin { expected: String, found: String },
    #[error("{0}")]
    Other(String),
}
