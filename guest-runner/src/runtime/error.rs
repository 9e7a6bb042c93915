//! The runner's errors: each says which limit or rule stopped a plugin.

use std::time::Duration;

use crate::manifest::ManifestError;
use crate::stream::StreamError;

/// Why a plugin run failed. Each variant says which limit or rule stopped
/// it; the runner prints it once, as the job's error.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The container's manifest, or a file it names, is wrong.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The stream is malformed or could not be written.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The plugin's component does not compile, link or instantiate.
    #[error("plugin {plugin:?} could not be compiled or loaded: {source:#}")]
    Load {
        /// The plugin.
        plugin: String,
        /// What wasmtime said.
        #[source]
        source: wasmtime::Error,
    },
    /// The plugin's memories grew past its limit.
    #[error("plugin {plugin:?} exceeded its memory limit of {limit_mib} MiB and was stopped")]
    MemoryLimit {
        /// The plugin.
        plugin: String,
        /// The limit.
        limit_mib: u64,
    },
    /// The plugin ran past its deadline.
    #[error("plugin {plugin:?} exceeded its deadline of {deadline:?} and was stopped")]
    Deadline {
        /// The plugin.
        plugin: String,
        /// The deadline.
        deadline: Duration,
    },
    /// The plugin trapped (a panic, an `unreachable`, a bad access).
    #[error("plugin {plugin:?} trapped: {message}")]
    Trap {
        /// The plugin.
        plugin: String,
        /// The trap and the plugin's own functions on the way to it,
        /// demangled: what the message shows.
        message: String,
        /// The trap itself, with wasmtime's whole backtrace. Not a
        /// `#[source]`: the message already renders it, and a source would
        /// print it a second time, mangled, in every `{:#}`.
        trap: wasmtime::Error,
    },
    /// The plugin returned an error.
    #[error("plugin {plugin:?} failed: {message}")]
    Plugin {
        /// The plugin.
        plugin: String,
        /// Its error, as it reported it.
        message: String,
    },
    /// The plugin calls itself by another name than the manifest's.
    #[error("plugin {plugin:?} reports name {reported:?}; the container is inconsistent")]
    NameMismatch {
        /// The manifest's name.
        plugin: String,
        /// The name it reports.
        reported: String,
    },
    /// The plugin's quiesce took longer than its bound.
    #[error("plugin {plugin:?} exceeded its quiesce bound of {limit:?} and was stopped")]
    QuiesceTimeout {
        /// The plugin.
        plugin: String,
        /// The bound.
        limit: Duration,
    },
    /// The plugin trapped earlier in this job; its instance is not used again.
    #[error("plugin {plugin:?} cannot be called again: it trapped earlier in this job")]
    Poisoned {
        /// The plugin.
        plugin: String,
    },
    /// The plugin is built against a contract version this runner does not serve.
    #[error(
        "plugin {plugin:?} is built against contract version {found}; this runner serves {served}"
    )]
    Contract {
        /// The plugin.
        plugin: String,
        /// Its contract version.
        found: String,
        /// The versions served.
        served: String,
    },
    /// The job's plan breaks the policy.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// The job's options do not fit what the plugin declares.
    #[error("plugin {plugin:?}: {message}")]
    Options {
        /// The plugin.
        plugin: String,
        /// What is wrong.
        message: String,
    },
    /// The job asks a 0.1.0 plugin for what that contract cannot do.
    #[error("plugin {plugin:?} (contract 0.1.0): {message}")]
    Capability {
        /// The plugin.
        plugin: String,
        /// What it cannot do.
        message: String,
    },
    /// A path the plan needs could not be opened for the plugin.
    #[error("cannot grant {path}: {source}")]
    Grant {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Writing the job's output failed.
    #[error("output failed: {0}")]
    Output(String),
    /// The restore stream was written by another plugin.
    #[error("restore stream is for plugin {found:?}, not {expected:?}")]
    WrongPlugin {
        /// The plugin asked for.
        expected: String,
        /// The stream's plugin.
        found: String,
    },
    /// The WebAssembly engine failed outside a plugin's own code.
    #[error("{0:#}")]
    Engine(#[source] wasmtime::Error),
    /// Anything else, said in words.
    #[error("{0}")]
    Other(String),
}
