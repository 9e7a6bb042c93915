//! One file per `attache` command.

pub(crate) mod audit;
pub(crate) mod backup;
pub(crate) mod container;
pub(crate) mod discover;
pub(crate) mod find;
pub(crate) mod fleet;
pub(crate) mod forget;
pub(crate) mod hypervisor;
pub(crate) mod init;
pub(crate) mod jobs;
pub(crate) mod key;
pub(crate) mod ls;
pub(crate) mod plugin;
pub(crate) mod plugin_new;
pub(crate) mod plugin_test;

pub(crate) mod policy;
pub(crate) mod prune;
pub(crate) mod repair;
pub(crate) mod restore;
pub(crate) mod serve;
pub(crate) mod snapshots;
pub(crate) mod token;
pub(crate) mod verify;
pub(crate) mod vm;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;

use crate::agent;
use crate::cli::Cli;
use crate::client::Client;
use crate::jobs::{Context, Control};
use crate::progress::Display;
use crate::repo::{Password, Repository};

/// Attaché's local cache directory.
pub(crate) fn cache(cli: &Cli) -> PathBuf {
    cli.cache_dir
        .clone()
        .or_else(agent::default_cache)
        .unwrap_or_else(|| PathBuf::from(".attache-cache"))
}

/// Attaché's state directory: hypervisors and the attachment journal.
pub(crate) fn state(cli: &Cli) -> PathBuf {
    if let Some(d) = &cli.state_dir {
        return d.clone();
    }
    std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .map(|d| d.join("attache"))
        .unwrap_or_else(|| PathBuf::from(".attache-state"))
}

/// The state database: `--state-db`'s PostgreSQL, else the state
/// directory's SQLite (`db::open`).
pub(crate) fn db(
    cli: &Cli,
) -> Result<std::sync::Arc<dyn crate::db::StateStore>, crate::db::DbError> {
    crate::db::open(&state(cli), cli.state_db.as_deref())
}

/// Where jobs of this command line find everything.
pub(crate) fn context(cli: &Cli) -> anyhow::Result<Context> {
    let state = state(cli);
    Ok(Context {
        audit: crate::audit::Audit::new(&state, crate::audit::local_actor()),
        repo: cli.repo.clone(),
        password: Password {
            file: cli.password_file.clone(),
        },
        cache: cache(cli),
        agent_dir: cli.agent_dir.clone(),
        state,
        state_db: cli.state_db.clone(),
        policy: policy(cli)?,
        trust: trust(cli)?,
        cluster: None,
    })
}

/// The trust in force: `--trust` (or ATTACHE_TRUST), else `trust.toml` in
/// the state directory when it exists, else `trust.toml` beside the attache
/// executable (installed with it, as a distribution ships its keyring),
/// else none: no key is trusted. `--allow-unsigned` allows unsigned
/// containers on top.
pub(crate) fn trust(cli: &Cli) -> anyhow::Result<guest_runner::trust::Trust> {
    use guest_runner::trust::Trust;
    let beside_exe = || {
        std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("trust.toml")))
            .filter(|f| f.is_file())
    };
    let file = match &cli.trust {
        Some(f) => Some(f.clone()),
        None => Some(state(cli).join("trust.toml"))
            .filter(|f| f.is_file())
            .or_else(beside_exe),
    };
    let trust = match file {
        Some(file) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read the trust file {}", file.display()))?;
            Trust::parse(&text, &file.display().to_string())?
        }
        None => Trust::none(
            "no trust file (--trust, ATTACHE_TRUST, trust.toml in the state directory or beside attache): no publisher is trusted",
        ),
    };
    Ok(if cli.allow_unsigned {
        trust.allowing_unsigned()
    } else {
        trust
    })
}

/// The policy in force: `--policy` (or ATTACHE_POLICY), else
/// `policy.toml` in the state directory when it exists, else the shipped
/// one.
pub(crate) fn policy(cli: &Cli) -> anyhow::Result<guest_runner::policy::Policy> {
    use guest_runner::policy::Policy;
    let file = match &cli.policy {
        Some(f) => Some(f.clone()),
        None => Some(state(cli).join("policy.toml")).filter(|f| f.is_file()),
    };
    let Some(file) = file else {
        return Ok(Policy::shipped());
    };
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read the policy {}", file.display()))?;
    Ok(Policy::parse(&text, &file.display().to_string())?)
}

/// The repository, created if missing when `create` (and a password is set).
pub(crate) fn repository(cli: &Cli, create: bool) -> anyhow::Result<Repository> {
    context(cli)?.repository(create)
}

/// The server client, when `--server` is given.
pub(crate) fn client(cli: &Cli) -> anyhow::Result<Option<Client>> {
    let Some(url) = &cli.server else {
        return Ok(None);
    };
    let token = match &cli.token_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))?
                .trim()
                .to_owned(),
        ),
        None => std::env::var("ATTACHE_TOKEN").ok(),
    };
    Ok(Some(Client::new(url, token, cli.ca_file.as_deref())?))
}

/// Runs a job through the server when `--server` is given, otherwise here
/// with a progress display; returns its result as JSON.
pub(crate) fn run_job<T: serde::Serialize>(
    cli: &Cli,
    kind: &str,
    request: &impl serde::Serialize,
    local: impl FnOnce(&Context, &Control<'_>) -> anyhow::Result<T>,
) -> anyhow::Result<serde_json::Value> {
    if let Some(client) = client(cli)? {
        let job = client.run_job(&serde_json::json!({ "kind": kind, kind: request }), kind)?;
        return Ok(job["result"].clone());
    }
    let display = Display::new(kind);
    let cancel = AtomicBool::new(false);
    let r = local(
        &context(cli)?,
        &Control {
            progress: &|p| display.update(p),
            cancel: &cancel,
        },
    );
    display.finish();
    Ok(serde_json::to_value(r?)?)
}

/// Refuses `--server` for commands that work on the repository directly.
pub(crate) fn local_only(cli: &Cli, what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        cli.server.is_none(),
        "`attache {what}` works on the repository directly; drop --server"
    );
    Ok(())
}
