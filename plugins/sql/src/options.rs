//! Plugin options (`guest-runner --option KEY=VALUE`):
//!
//! - `password`: the PostgreSQL password, as the job passes it.
//! - `password-file`: an absolute path, below a directory the job grants
//!   (`--grant-read`; on restore the target), whose first line is the password.
//! - `server`: `postgresql://USER@HOST:PORT`, what `discover` lists without
//!   a scope.
//!
//! The password is read when a connection is made and kept nowhere else.

use crate::attache::plugin::types::PluginError;

pub type Options = [(String, String)];

pub fn get<'a>(options: &'a Options, key: &str) -> Option<&'a str> {
    options
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Refuses option keys the plugin does not know, so that a typo is not
/// silently ignored.
pub fn check(options: &Options) -> Result<(), PluginError> {
    for (k, _) in options {
        if !matches!(k.as_str(), "password" | "password-file" | "server") {
            return Err(PluginError::InvalidRequest(format!(
                "unknown option {k:?} (known: password, password-file, server)"
            )));
        }
    }
    Ok(())
}

/// The password the job passed, if any.
pub fn password(options: &Options) -> Result<Option<String>, PluginError> {
    if let Some(p) = get(options, "password") {
        return Ok(Some(p.to_owned()));
    }
    let Some(path) = get(options, "password-file") else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            " (is its directory granted to the job?)"
        } else {
            ""
        };
        PluginError::AccessDenied(format!("cannot read password-file {path}: {e}{hint}"))
    })?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(PluginError::InvalidRequest(format!(
            "password-file {path} is empty"
        )));
    }
    Ok(Some(line.to_owned()))
}
