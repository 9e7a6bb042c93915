//! The plugin's typed errors, independent of the WIT bindings so that the
//! IMAP client and the Maildir code are testable natively. `lib.rs` maps
//! them onto the contract's `plugin-error`.

use std::fmt;

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The request is wrong: a bad id, a missing option.
    Invalid(String),
    /// A grant is missing: a path or an address the job did not grant.
    Denied(String),
    /// The mail server or store refused or failed (login, missing mailbox).
    Application(String),
    /// The runner's sink or source failed.
    Transport(String),
    /// The server broke the protocol, or anything else.
    Other(String),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(m)
            | Error::Denied(m)
            | Error::Application(m)
            | Error::Transport(m)
            | Error::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}
