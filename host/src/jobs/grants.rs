//! What the runner must be granted for a selection of item ids, beyond
//! paths: the network address of a database server named in a
//! `postgresql://` id, and the directory of an `sqlite:///` database.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// `IP:PORT` of the server a `postgresql://USER@HOST[:PORT]/…` (or
/// `postgres://`) id names; `None` for other ids. The sandbox grants
/// addresses, not names, so HOST must be an IP address.
pub fn net(id: &str) -> anyhow::Result<Option<String>> {
    let Some(rest) = id
        .strip_prefix("postgresql://")
        .or_else(|| id.strip_prefix("postgres://"))
    else {
        return Ok(None);
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .with_context(|| format!("item {id:?}: unclosed '[' in the host"))?;
        (h, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    let ip: std::net::IpAddr = host.parse().map_err(|_| {
        anyhow::anyhow!(
            "item {id:?}: the host must be an IP address (the sandbox grants addresses, not names)"
        )
    })?;
    let port: u16 = match port {
        None | Some("") => 5432,
        Some(p) => p
            .parse()
            .with_context(|| format!("item {id:?}: bad port {p:?}"))?,
    };
    Ok(Some(std::net::SocketAddr::new(ip, port).to_string()))
}

/// The directory of an `sqlite:///PATH` database, where its journal or WAL
/// lives too; `None` for other ids.
pub fn sqlite_dir(id: &str) -> anyhow::Result<Option<PathBuf>> {
    let Some(path) = id.strip_prefix("sqlite://") else {
        return Ok(None);
    };
    if !Path::new(path).is_absolute() {
        bail!("item {id:?}: an SQLite id is sqlite:///ABSOLUTE/PATH");
    }
    Ok(guest_runner::selection::read_grant(id))
}

/// The addresses a list of ids needs, without repeats.
pub fn nets<'a>(ids: impl IntoIterator<Item = &'a String>) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for id in ids {
        if let Some(a) = net(id)? {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    Ok(out)
}

/// What a runner is given beyond its command and the paths it reads: TCP
/// to the database servers its ids name, and the application password,
/// which reaches the plugin as its `password` option through the runner's
/// environment, never its command line (which every user of the machine or
/// guest can read).
pub struct RunnerAccess {
    /// Runner arguments (`--allow-net`, `--option-env`).
    pub args: Vec<String>,
    /// Environment variables for the runner.
    pub env: Vec<(String, String)>,
}

impl RunnerAccess {
    pub fn new(nets: &[String], password: Option<&str>) -> Self {
        let mut args = Vec::new();
        for n in nets {
            args.extend(["--allow-net".into(), n.clone()]);
        }
        let mut env = Vec::new();
        if let Some(p) = password {
            args.extend([
                "--option-env".into(),
                format!("password={}", super::PASSWORD_ENV),
            ]);
            env.push((super::PASSWORD_ENV.to_owned(), p.to_owned()));
        }
        Self { args, env }
    }

    /// The environment as `NAME=VALUE` (the guest agent's form).
    pub fn env_assignments(&self) -> Vec<String> {
        self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_ids_name_what_to_grant() {
        let n = |s: &str| net(s).unwrap();
        assert_eq!(
            n("postgresql://app@127.0.0.1:5433/shop"),
            Some("127.0.0.1:5433".into())
        );
        assert_eq!(
            n("postgresql://app@127.0.0.1/shop/public.t"),
            Some("127.0.0.1:5432".into())
        );
        assert_eq!(n("postgres://u@[::1]:6000/db"), Some("[::1]:6000".into()));
        assert_eq!(n("/data/file"), None);
        assert!(net("postgresql://app@db.example:5432/shop").is_err());
        assert!(net("postgresql://app@127.0.0.1:x/shop").is_err());
        assert_eq!(
            sqlite_dir("sqlite:///srv/app/data.db").unwrap(),
            Some(PathBuf::from("/srv/app"))
        );
        assert!(sqlite_dir("sqlite://relative.db").is_err());
        assert_eq!(sqlite_dir("/srv/app").unwrap(), None);
    }
}
