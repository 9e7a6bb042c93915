//! guest-runner: Attaché's in-guest agent.
//!
//! The library holds what the server shares with the runner: the backup
//! [`stream`] format and the container [`manifest`]. With the `runtime`
//! feature (the default) it also holds the wasmtime sandbox that runs the
//! plugins, used by the `guest-runner` binary.

pub mod channel;
pub mod manifest;
pub mod plan;
pub mod policy;
pub mod stream;
pub mod trust;
pub mod window;

#[cfg(feature = "runtime")]
pub mod freeze;
#[cfg(feature = "logging")]
pub mod logging;
#[cfg(feature = "runtime")]
pub mod runtime;
