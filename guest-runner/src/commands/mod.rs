//! One file per runner command, and what they share: finding the container,
//! loading the verified plugin, and asking it what it is.

pub mod backup;
pub mod discover;
pub mod info;
pub mod precompile;
pub mod restore;

use std::path::PathBuf;

use anyhow::Context;
use guest_runner::manifest::Manifest;
use guest_runner::runtime::{PluginInfo, RunnerError, Running, Sandbox, State};
use wasmtime::component::Component;
use wasmtime_wasi::WasiCtx;

use crate::options::Cli;

/// The container directory: `--agent-dir`, or where this executable lives.
pub fn agent_dir(cli: &Cli) -> anyhow::Result<PathBuf> {
    if let Some(d) = &cli.agent_dir {
        return Ok(d.clone());
    }
    let exe = std::env::current_exe().context("cannot find the runner's own path")?;
    Ok(exe.parent().map(PathBuf::from).unwrap_or_default())
}

/// A verified, compiled plugin and what it says of itself.
pub struct Prepared {
    pub sandbox: Sandbox,
    pub component: Component,
    pub info: PluginInfo,
    pub manifest: Manifest,
}

/// Loads plugin `name` and asks it for its info in an instance that has
/// been granted nothing.
pub fn prepare(cli: &Cli, name: &str) -> anyhow::Result<Prepared> {
    let dir = agent_dir(cli)?;
    let manifest = Manifest::load(&dir)?;
    let sandbox = Sandbox::new(cli.cache_dir.clone())?;
    let component = sandbox.load(&dir, &manifest, name)?;
    let limits = cli.limits();
    let state = State::new(name, WasiCtx::builder().build(), limits.memory);
    let info = Running::start(&sandbox, &component, state, limits)?.info()?;
    if info.name != name {
        return Err(RunnerError::NameMismatch {
            plugin: name.into(),
            reported: info.name,
        }
        .into());
    }
    Ok(Prepared {
        sandbox,
        component,
        info,
        manifest,
    })
}
