//! The mail plugin: granular backup and restore of IMAP users, mailboxes
//! and single messages (IMAP4rev1 over the TCP connections its plan asks
//! for), and of Maildir++ stores through file grants. See README.md.
//!
//! Everything but `component` is plain Rust on the crate's own types
//! (`model`, `error`); `component` adapts it to the contract 0.2.0 through
//! the plugin SDK. All of it compiles and is tested natively too.

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

// The SDK exports the plugin only in the WebAssembly build; natively the
// crate is a library, and its calls run on the SDK's mock host.
pub mod component;
