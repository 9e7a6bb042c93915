//! Plugin options (`--option KEY=VALUE`), declared in `plugin-info.options`:
//!
//! - `password` (secret): the IMAP password. attache passes
//!   `ATTACHE_APP_PASSWORD` (or `--app-password-file`) as this option
//!   through the runner's environment, never a command line.
//! - `password-file`: an absolute path whose first line is the password;
//!   the plan asks to read it.
//! - `auth`: `login` or `plain` (AUTHENTICATE PLAIN); by default PLAIN
//!   where the server offers it, else LOGIN.
//! - `connections`: IMAP connections per user for a restore, 1 to
//!   [`MAX_CONNECTIONS`], 2 by default (see `restore.rs`).

use crate::error::{Error, Result};
use crate::imap::Auth;

/// Options as the job passes them.
pub type Options = [(String, String)];

/// The declared keys: name, description, secret.
pub const DECLARED: &[(&str, &str, bool)] = &[
    (
        "password",
        "the IMAP password (attache: ATTACHE_APP_PASSWORD or --app-password-file)",
        true,
    ),
    (
        "password-file",
        "an absolute path whose first line is the IMAP password",
        false,
    ),
    (
        "auth",
        "login or plain (AUTHENTICATE PLAIN); default: plain where offered",
        false,
    ),
    (
        "connections",
        "IMAP connections per user for a restore, 1 to 8 (default 2): batches of messages go to them in turn, so that the server saves one while the next arrives",
        false,
    ),
];

/// Most IMAP connections per user a restore opens.
pub const MAX_CONNECTIONS: usize = 8;

/// The last value of `key`.
pub fn get<'a>(options: &'a Options, key: &str) -> Option<&'a str> {
    options
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Refuses keys the plugin does not declare and bad values.
pub fn check(options: &Options) -> Result<()> {
    for (k, _) in options {
        if !DECLARED.iter().any(|(d, _, _)| d == k) {
            let known: Vec<&str> = DECLARED.iter().map(|(d, _, _)| *d).collect();
            return Err(Error::Invalid(format!(
                "unknown option {k:?} (known: {})",
                known.join(", ")
            )));
        }
    }
    auth(options)?;
    connections(options)?;
    if let Some(p) = get(options, "password-file") {
        if !p.starts_with('/') {
            return Err(Error::Invalid(format!(
                "password-file {p:?} is not an absolute path"
            )));
        }
    }
    Ok(())
}

/// The login mechanism.
pub fn auth(options: &Options) -> Result<Auth> {
    match get(options, "auth") {
        None => Ok(Auth::Auto),
        Some(v) if v.eq_ignore_ascii_case("login") => Ok(Auth::Login),
        Some(v) if v.eq_ignore_ascii_case("plain") => Ok(Auth::Plain),
        Some(v) => Err(Error::Invalid(format!(
            "option auth={v:?}: expected login or plain"
        ))),
    }
}

/// IMAP connections per user for a restore (option `connections`).
pub fn connections(options: &Options) -> Result<usize> {
    match get(options, "connections") {
        None => Ok(2),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_CONNECTIONS).contains(&n) => Ok(n),
            _ => Err(Error::Invalid(format!(
                "option connections={v:?}: expected a number from 1 to {MAX_CONNECTIONS}"
            ))),
        },
    }
}

/// The password: the option, else the first line of password-file.
pub fn password(options: &Options) -> Result<String> {
    if let Some(p) = get(options, "password") {
        return Ok(p.to_owned());
    }
    let Some(path) = get(options, "password-file") else {
        return Err(Error::Invalid(
            "no password: the job gives neither the option password (attache: ATTACHE_APP_PASSWORD or --app-password-file) nor password-file".into(),
        ));
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Denied(format!("cannot read password-file {path}: {e}")))?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(Error::Invalid(format!("password-file {path} is empty")));
    }
    Ok(line.to_owned())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Options of `pairs`, as a job passes them.
    pub(crate) fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn connections_default_to_two_and_are_bounded() {
        assert_eq!(connections(&[]).unwrap(), 2);
        assert_eq!(connections(&opts(&[("connections", "1")])).unwrap(), 1);
        assert_eq!(connections(&opts(&[("connections", "8")])).unwrap(), 8);
        for bad in ["0", "9", "two", "-1", ""] {
            let e = check(&opts(&[("connections", bad)])).unwrap_err();
            assert!(
                e.to_string().contains("expected a number from 1 to 8"),
                "{e}"
            );
        }
    }
}
