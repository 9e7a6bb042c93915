//! The mail plugin. See README.md.

pub mod date;
pub mod error;
pub mod header;
pub mod ids;
pub mod imap;
pub mod rfc2047;
pub mod utf7;
