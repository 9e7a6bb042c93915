//! Plugin options (`--option KEY=VALUE`), declared in `info`:
//!
//! - `password` (secret): the PostgreSQL password, as the job passes it.
//! - `password-file`: an absolute path whose first line is the password;
//!   the plan asks to read that file alone.
//! - `server`: `postgresql://USER@HOST:PORT`, what `discover` lists without
//!   a scope.
//!
//! The password is read when a connection is made and kept nowhere else.

use attache_plugin_sdk::wasi::filesystem::types::Descriptor;
use attache_plugin_sdk::{preopens, OptionSpec, Options, PluginError};

/// The option keys the plugin declares.
pub(crate) fn specs() -> Vec<OptionSpec> {
    vec![
        OptionSpec::new("password", "the PostgreSQL password").secret(),
        OptionSpec::new(
            "password-file",
            "absolute path of a file whose first line is the PostgreSQL password",
        ),
        OptionSpec::new(
            "server",
            "postgresql://USER@HOST:PORT, what discover lists without a scope",
        ),
    ]
}

/// Refuses option keys the plugin does not declare, so that a typo is not
/// silently ignored.
pub(crate) fn check(options: &[(String, String)]) -> Result<(), PluginError> {
    Options::new(options).check(&specs())
}

/// The value of `key`, if passed.
pub(crate) fn get<'a>(options: &'a [(String, String)], key: &str) -> Option<&'a str> {
    Options::new(options).get(key)
}

/// The password the job passed, if any.
pub(crate) fn password(options: &[(String, String)]) -> Result<Option<String>, PluginError> {
    if let Some(p) = get(options, "password") {
        return Ok(Some(p.to_owned()));
    }
    let Some(path) = get(options, "password-file") else {
        return Ok(None);
    };
    let text = read_granted(path)?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(PluginError::InvalidRequest(format!(
            "password-file {path} is empty"
        )));
    }
    Ok(Some(line.to_owned()))
}

/// Reads a file the plan asked for: granted alone, as a preopen that is the
/// file, or below a granted directory.
fn read_granted(path: &str) -> Result<String, PluginError> {
    let all = preopens::all();
    let denied =
        |e: String| PluginError::AccessDenied(format!("cannot read password-file {path}: {e}"));
    if let Some(p) = preopens::find(&all, path) {
        let bytes = read_all(&p.dir).map_err(denied)?;
        return String::from_utf8(bytes).map_err(|_| {
            PluginError::InvalidRequest(format!("password-file {path} is not UTF-8"))
        });
    }
    std::fs::read_to_string(path).map_err(|e| denied(e.to_string()))
}

fn read_all(fd: &Descriptor) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let (bytes, eof) = fd
            .read(64 << 10, out.len() as u64)
            .map_err(|e| e.message().to_string())?;
        out.extend_from_slice(&bytes);
        if eof || bytes.is_empty() {
            return Ok(out);
        }
    }
}
