//! The sandbox that runs plugins: a wasmtime engine with epoch interruption,
//! components verified against the container manifest and cached precompiled,
//! and a host implementation of the `attache:plugin` imports, for every
//! contract version served (`since_v0_1` adapts the frozen 0.1.0).

mod bindings;
pub mod convert;
mod engine;
mod error;
mod grants;
mod limits;
mod log;
#[cfg(test)]
mod memory_total_tests;
mod notes;
mod plugin;
mod posix;
mod preopens;
mod previous;
mod readdir;
mod since_v0_1;
mod sink;
mod source;
mod state;

pub use bindings::attache::plugin::types::{
    AccessPlan, ItemKind, Operation, OptionSpec, PathAccess, PlanRequest, PluginInfo,
    RestoreDestination, Selected,
};
pub use bindings::exports::attache::plugin::plugin::{BackupRequest, RestoreRequest, Summary};
pub use engine::Sandbox;
pub use error::RunnerError;
pub use grants::{GrantedPath, Grants};
pub use limits::Limits;
pub use notes::Notes;
pub use plugin::{Contract, Running, SERVED, THAW_DEADLINE};
pub use previous::{Feed, Previous};
pub use sink::Sink;
pub use source::Source;
pub use state::State;
