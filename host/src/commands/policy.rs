//! `attache policy show`: the plugin policy in force, as a security team
//! reads it: for every plugin of the agent container and every plugin the
//! policy names, what it may read, write and reach, and its ceilings; and
//! the trust: which publisher keys may sign what, and whether unsigned
//! containers are allowed.

use crate::cli::{Cli, PolicyShowArgs};

pub(crate) fn show(cli: &Cli, a: &PolicyShowArgs) -> anyhow::Result<()> {
    let policy = super::policy(cli)?;
    if a.raw {
        print!("{}", policy.text);
        return Ok(());
    }
    // The container's plugins, where there is one: each gets its section
    // even when the policy does not name it.
    let plugins: Vec<String> = crate::agent::find(cli.agent_dir.as_deref())
        .ok()
        .and_then(|d| guest_runner::manifest::Manifest::load(&d).ok())
        .map(|m| m.plugins.into_iter().map(|p| p.name).collect())
        .unwrap_or_default();
    print!("{}", policy.describe(&plugins)?);
    let trust = super::trust(cli)?;
    println!();
    print!("{}", trust.describe());
    if let Some(why) = &trust.allow_unsigned {
        tracing::warn!(allowed_by = %why, "unsigned allowed: containers run without signatures that vouch for them");
    }
    Ok(())
}
