//! A discovery: what there is to protect in a VM, as its plugins see it.
//!
//! The container is attached, each plugin's `discover` runs in the guest
//! through the runner, and its entries come back over the data channel;
//! then the container is detached and the guest cleaned up, on failure
//! too. The host knows no application: an entry is whatever the plugin
//! listed (an id, a kind, maybe a size, whether more lies below it). The
//! guest is untrusted, so a reply is bounded on the channel and checked
//! here, entry by entry, before anyone prints it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use super::plugin::{checked_plan, RunnerAccess};
use super::{Context, Control};
use crate::hypervisor::session::{RunOptions, Session};
use crate::hypervisor::VmRef;
use guest_runner::stream::ItemKind;

/// The most entries one plugin's reply may hold.
pub(crate) const MAX_ENTRIES: usize = 100_000;

/// A discovery to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiscoverRequest {
    /// The VM: `HYPERVISOR/VM`.
    pub target: String,
    /// Ask this plugin only; without it, every plugin of the container
    /// whose plan the policy allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// List below this item (a path, a database...); without it, each
    /// plugin's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// How many levels below the scope to list (0: its children only).
    #[serde(default)]
    pub depth: u32,
    /// Fail the job, and clean up, when a runner has not finished after
    /// this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// Plugin options, KEY: VALUE, given to every plugin asked. They reach
    /// the runner through its environment; job views show them redacted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// The application's password (a database's); shown redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_password: Option<String>,
    /// A file, on the machine that runs the job, whose first line is the
    /// application's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_password_file: Option<PathBuf>,
}

/// One thing a plugin found, checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Entry {
    /// The id a backup's `--include` takes.
    pub id: String,
    /// What it is (the contract's item kinds).
    pub kind: ItemKind,
    /// Its size in bytes, where the plugin knows it.
    pub size: Option<u64>,
    /// Whether a discovery with this id as scope lists more below it.
    pub has_children: bool,
}

/// What one plugin found, or why it found nothing.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PluginFound {
    pub plugin: String,
    pub entries: Vec<Entry>,
    /// Why this plugin listed nothing (its plan was refused, or it failed
    /// in the guest); only when every plugin was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A discovery's result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Discovery {
    pub target: String,
    /// The container version that ran in the guest.
    pub container: String,
    pub scope: Option<String>,
    pub depth: u32,
    pub plugins: Vec<PluginFound>,
}

/// Checks a plugin's reply from the guest: a JSON array of entries, each
/// with a valid id and a known kind, at most [`MAX_ENTRIES`].
pub(crate) fn parse_reply(reply: &[u8]) -> anyhow::Result<Vec<Entry>> {
    let entries: Vec<Entry> =
        serde_json::from_slice(reply).context("the guest's listing is not a list of entries")?;
    if entries.len() > MAX_ENTRIES {
        bail!(
            "the guest's listing has {} entries, more than the {MAX_ENTRIES} allowed; narrow it with a scope or a smaller depth",
            entries.len()
        );
    }
    for (i, e) in entries.iter().enumerate() {
        guest_runner::stream::check_id(&e.id)
            .map_err(|why| anyhow::anyhow!("the guest's listing, entry {i}: {why}"))?;
    }
    Ok(entries)
}

/// Runs a discovery, recorded in the audit log.
pub(crate) fn run(
    ctx: &Context,
    req: &DiscoverRequest,
    ctl: &Control<'_>,
) -> anyhow::Result<Discovery> {
    let mut shown = req.clone();
    super::redact(&mut shown.app_password, &mut shown.options);
    super::audited(ctx, "discover", serde_json::to_value(&shown)?, |ctx| {
        run_audited(ctx, req, ctl)
    })
}

/// The plugins to ask: the one named, or every plugin of the container.
fn plugins(ctx: &Context, req: &DiscoverRequest) -> anyhow::Result<Vec<String>> {
    if let Some(p) = &req.plugin {
        guest_runner::manifest::check_name(p)?;
        return Ok(vec![p.clone()]);
    }
    let runner = ctx.runner()?;
    Ok(runner
        .manifest
        .plugins
        .iter()
        .map(|p| p.name.clone())
        .collect())
}

fn run_audited(
    ctx: &Context,
    req: &DiscoverRequest,
    ctl: &Control<'_>,
) -> anyhow::Result<Discovery> {
    let _span = tracing::info_span!("discover", target = %req.target).entered();
    let vm = VmRef::parse(&req.target)?.with_context(|| {
        format!(
            "discover runs in a VM: HYPERVISOR/VM, not {:?} (on this machine, `attache plugin test` runs a plugin's discover)",
            req.target
        )
    })?;
    let limits = guest_runner::policy::JobLimits::default();
    let password = super::app_password(&req.app_password, &req.app_password_file)?;
    let access = RunnerAccess::new(ctx, &req.options, password.as_deref(), limits)?;
    let one = req.plugin.is_some();
    // Every plan is checked before anything is attached: a plugin the
    // policy refuses never runs in the guest.
    let mut asked = Vec::new();
    let mut found = Vec::new();
    for plugin in plugins(ctx, req)? {
        ctx.audit
            .defer("plugin.grants", super::grants(ctx, &plugin, &limits))?;
        let mut plan_args = vec!["--operation".to_owned(), "discover".to_owned()];
        if let Some(s) = &req.scope {
            plan_args.extend(["--select".into(), s.clone()]);
        }
        match checked_plan(ctx, &plugin, &access, &plan_args) {
            Ok(plan) => {
                ctx.audit.defer(
                    "plugin.plan",
                    serde_json::json!({ "plugin": plugin, "vm": vm.to_string(), "plan": plan }),
                )?;
                asked.push(plugin);
            }
            Err(e) if one => return Err(e.context(format!("discovery in {vm} refused"))),
            Err(e) => found.push(PluginFound {
                plugin,
                entries: Vec::new(),
                error: Some(format!("refused before attaching: {e:#}")),
            }),
        }
    }
    if asked.is_empty() {
        bail!(
            "no plugin of the container may run a discovery in {vm}: {}",
            reasons(&found)
        );
    }
    ctx.audit.sync()?;
    let mut session = Session::open(ctx, &vm)?;
    let opts = RunOptions {
        fsfreeze: None,
        timeout: req.timeout_secs.map(std::time::Duration::from_secs),
        env: access.env_assignments(),
    };
    let mut failed = None;
    for plugin in asked {
        let mut args = vec![
            "discover".to_owned(),
            "--plugin".into(),
            plugin.clone(),
            "--depth".into(),
            req.depth.to_string(),
        ];
        if let Some(s) = &req.scope {
            args.extend(["--scope".into(), s.clone()]);
        }
        args.extend(access.args.iter().cloned());
        let listed = session
            .discover(&args, &opts, ctl.cancel)
            .and_then(|(reply, _)| parse_reply(&reply))
            .with_context(|| format!("discovery by plugin {plugin} in {vm} failed"));
        match listed {
            Ok(entries) => {
                tracing::info!(plugin, entries = entries.len(), "discovered");
                found.push(PluginFound {
                    plugin,
                    entries,
                    error: None,
                });
            }
            Err(e) if one || ctl.cancelled() => {
                failed = Some(e);
                break;
            }
            Err(e) => found.push(PluginFound {
                plugin,
                entries: Vec::new(),
                error: Some(format!("{e:#}")),
            }),
        }
    }
    let container = session.container.clone();
    let closed = session.close();
    if let Some(e) = failed {
        return Err(match closed {
            Ok(()) => e,
            Err(c) => e.context(format!("{c:#}")),
        });
    }
    closed?;
    found.sort_by(|a, b| a.plugin.cmp(&b.plugin));
    Ok(Discovery {
        target: vm.to_string(),
        container,
        scope: req.scope.clone(),
        depth: req.depth,
        plugins: found,
    })
}

fn reasons(found: &[PluginFound]) -> String {
    found
        .iter()
        .map(|f| format!("{}: {}", f.plugin, f.error.as_deref().unwrap_or("?")))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_checked() {
        let ok = br#"[{"id":"/data/a.db","kind":"file","size":8192,"has_children":false},
                      {"id":"x-app://db/a","kind":"database","size":null,"has_children":false}]"#;
        let e = parse_reply(ok).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].kind, ItemKind::Database);
        for (bad, why) in [
            (&br#"{"id":"/x"}"#[..], "not a list"),
            (
                br#"[{"id":"","kind":"file","size":1,"has_children":false}]"#,
                "empty id",
            ),
            (
                br#"[{"id":"/a/../b","kind":"file","size":1,"has_children":false}]"#,
                "'..'",
            ),
            (
                br#"[{"id":"/a","kind":"rootkit","size":1,"has_children":false}]"#,
                "not a list",
            ),
            (
                br#"[{"id":"/a","kind":"file","size":-1,"has_children":false}]"#,
                "not a list",
            ),
            (
                br#"[{"id":"/a","kind":"file","size":1,"has_children":false,"x":1}]"#,
                "not a list",
            ),
        ] {
            let e = format!("{:#}", parse_reply(bad).unwrap_err());
            assert!(e.contains(why), "{e}");
        }
        let long = format!(
            r#"[{{"id":"/{}","kind":"file","size":1,"has_children":false}}]"#,
            "a".repeat(5000)
        );
        assert!(parse_reply(long.as_bytes()).is_err());
        let many = format!(
            "[{}]",
            vec![r#"{"id":"/a","kind":"file","size":null,"has_children":false}"#; MAX_ENTRIES + 1]
                .join(",")
        );
        let e = parse_reply(many.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("more than the 100000 allowed"), "{e}");
    }
}
