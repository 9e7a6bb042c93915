//! The mail plugin: granular backup and restore of IMAP users, mailboxes
//! and single messages (IMAP4rev1 over the TCP connections its plan asks
//! for), and of Maildir++ stores through file grants. See README.md.
//!
//! Everything but this file is plain Rust on the crate's own types
//! (`model`, `error`), compiled and tested natively too; this file adapts
//! it to the WIT contract 0.2.0.

pub mod backup;
pub mod date;
pub mod error;
pub mod header;
pub mod ids;
pub mod imap;
pub mod job;
pub mod maildir;
pub mod model;
pub mod options;
pub mod plan;
pub mod rename;
pub mod restore;
pub mod rfc2047;
pub mod utf7;

// The component's exports exist only in the WebAssembly build: natively the
// crate is a library for the tests.
#[cfg(target_arch = "wasm32")]
mod component;
