//! One file per runner command, and what they share: finding the container,
//! loading the verified plugin, and asking it what it is.

pub(crate) mod backup;
pub(crate) mod discover;
pub(crate) mod info;
pub(crate) mod plan;
pub(crate) mod precompile;
pub(crate) mod restore;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use guest_runner::manifest::Manifest;
use guest_runner::plan::{NetNeed, PathAccess as Access, PathNeed, Plan};
use guest_runner::runtime::{
    AccessPlan, Contract, Grants, Limits, PathAccess, PlanRequest, PluginInfo, RunnerError,
    Running, Sandbox, State,
};
use guest_runner::trust::Scope;
use wasmtime::component::Component;

use crate::options::Cli;

/// The container directory: `--agent-dir`, or where this executable lives.
pub(crate) fn agent_dir(cli: &Cli) -> anyhow::Result<PathBuf> {
    if let Some(d) = &cli.agent_dir {
        return Ok(d.clone());
    }
    let exe = std::env::current_exe().context("cannot find the runner's own path")?;
    Ok(exe.parent().map(PathBuf::from).unwrap_or_default())
}

/// A verified, compiled plugin and what it says of itself.
pub(crate) struct Prepared {
    pub sandbox: Sandbox,
    pub component: Component,
    pub info: PluginInfo,
    pub manifest: Manifest,
    pub contract: Contract,
}

/// Loads plugin `name`, once the container's signatures vouch for the
/// runner and for it, and asks it for its info in an instance that has
/// been granted nothing.
pub(crate) fn prepare(cli: &Cli, name: &str) -> anyhow::Result<Prepared> {
    let dir = agent_dir(cli)?;
    let manifest = cli.trust()?.verify(&dir, Scope::Plugin(name))?.manifest;
    let sandbox = Sandbox::new(cli.cache_dir.clone())?;
    let component = sandbox.load(&dir, &manifest, name)?;
    let limits = Limits::default();
    let state = State::new(name, limits.memory);
    let mut run = Running::start(&sandbox, &component, state, limits)?;
    let info = run.info()?;
    let contract = run.contract();
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
        contract,
    })
}

/// A job's plan once the policy has allowed it: what to grant, the limits
/// to run under, and the checked options.
pub(crate) struct Job {
    pub grants: Grants,
    pub limits: Limits,
    pub options: Vec<(String, String)>,
}

impl Prepared {
    /// Checks `options` against what the plugin declares: no unknown key,
    /// every required key present. (0.1.0 plugins declared none and took
    /// any.)
    pub(crate) fn check_options(&self, options: &[(String, String)]) -> Result<(), RunnerError> {
        if self.contract == Contract::V0_1 {
            return Ok(());
        }
        let declared = &self.info.options;
        let names = || {
            if declared.is_empty() {
                "none".to_owned()
            } else {
                declared
                    .iter()
                    .map(|o| o.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        for (k, _) in options {
            if !declared.iter().any(|o| &o.name == k) {
                return Err(RunnerError::Options {
                    plugin: self.info.name.clone(),
                    message: format!("unknown option {k:?} (it takes: {})", names()),
                });
            }
        }
        for o in declared.iter().filter(|o| o.required) {
            if !options.iter().any(|(k, _)| k == &o.name) {
                return Err(RunnerError::Options {
                    plugin: self.info.name.clone(),
                    message: format!("option {:?} is required: {}", o.name, o.description),
                });
            }
        }
        Ok(())
    }

    /// Asks the plugin for its plan, in an instance granted nothing.
    pub(crate) fn plan(&self, request: &PlanRequest) -> Result<Plan, RunnerError> {
        let limits = Limits::default();
        let state = State::new(&self.info.name, limits.memory);
        let mut run = Running::start(&self.sandbox, &self.component, state, limits)?;
        let plan = run.plan(request)?;
        Ok(to_plan(self.contract, plan))
    }

    /// Checks the options, makes the plan and checks it against the
    /// policy; the grants (writes below `root`, for a restore to another
    /// root) and limits to run the job with.
    pub(crate) fn job(
        &self,
        cli: &Cli,
        request: &PlanRequest,
        root: Option<&Path>,
    ) -> anyhow::Result<Job> {
        self.check_options(&request.options)?;
        let plan = self.plan(request)?;
        // The policy judges what is granted: a restore's writes land below
        // its root.
        let landed = root.map_or_else(|| plan.clone(), |r| plan.below_root(r));
        let granted = cli
            .policy()?
            .check(&self.info.name, &landed, cli.job_limits())?;
        tracing::debug!(
            plugin = self.info.name.as_str(),
            ?plan,
            ?granted,
            "plan allowed"
        );
        let grants = Grants::from_plan(&plan, root)?;
        Ok(Job {
            grants,
            limits: Limits {
                memory: usize::try_from(granted.memory_mib.saturating_mul(1 << 20))
                    .unwrap_or(usize::MAX),
                deadline: Duration::from_secs(granted.deadline_secs),
                quiesce: Duration::from_secs(granted.quiesce_secs),
            },
            options: request.options.clone(),
        })
    }
}

/// The contract's plan as the runner prints and checks it.
fn to_plan(contract: Contract, p: AccessPlan) -> Plan {
    Plan {
        contract: contract.as_str().to_owned(),
        paths: p
            .paths
            .into_iter()
            .map(|n| PathNeed {
                path: n.path,
                access: match n.access {
                    PathAccess::Read => Access::Read,
                    PathAccess::ReadWrite => Access::ReadWrite,
                },
                reason: n.reason,
            })
            .collect(),
        connect: p
            .connect
            .into_iter()
            .map(|n| NetNeed {
                address: n.address,
                reason: n.reason,
            })
            .collect(),
        ownership: p.ownership,
        memory_mib: p.memory_mib,
        deadline_secs: p.deadline_secs,
    }
}

/// The selection of a plan request: ids, with kinds where given.
pub(crate) fn selected(
    ids: &[String],
    kinds: &[(String, String)],
) -> anyhow::Result<Vec<guest_runner::runtime::Selected>> {
    ids.iter()
        .map(|id| {
            let kind = match kinds.iter().rev().find(|(k, _)| k == id) {
                Some((_, k)) => {
                    let k: guest_runner::stream::ItemKind =
                        serde_json::from_value(serde_json::Value::String(k.clone()))
                            .map_err(|_| anyhow::anyhow!("--select-kind {id}={k}: unknown kind"))?;
                    Some(guest_runner::runtime::convert::kind_to_wit(k))
                }
                None => None,
            };
            Ok(guest_runner::runtime::Selected {
                id: id.clone(),
                kind,
            })
        })
        .collect()
}

/// The destination of a restore from its command line: renames, another
/// root, or the original place.
pub(crate) fn destination(
    target: Option<&PathBuf>,
    rename: &[String],
    selected: &[String],
) -> anyhow::Result<guest_runner::runtime::RestoreDestination> {
    use guest_runner::runtime::RestoreDestination as D;
    let rename = crate::options::renames(rename, selected)?;
    Ok(match target {
        _ if !rename.is_empty() => D::Renamed(rename),
        Some(t) if t.as_os_str() != "/" => D::Alternate(t.display().to_string()),
        _ => D::Original,
    })
}
