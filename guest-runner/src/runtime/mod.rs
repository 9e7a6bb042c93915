//! The sandbox that runs plugins: a wasmtime engine with epoch interruption,
//! components verified against the container manifest and cached precompiled,
//! and a host implementation of the `attache:plugin` imports.

mod bindings;
pub mod convert;
mod engine;
mod error;
mod grants;
mod limits;
mod log;
mod plugin;
mod posix;
mod sink;
mod source;
mod state;

pub use bindings::attache::plugin::types::{Capability, PluginInfo};
pub use bindings::exports::attache::plugin::plugin::{
    BackupRequest, RestoreDestination, RestoreRequest, Summary,
};
pub use engine::Sandbox;
pub use error::RunnerError;
pub use grants::Grants;
pub use limits::Limits;
pub use plugin::Running;
pub use sink::Sink;
pub use source::Source;
pub use state::State;
