//! `attache vm list` and `attache vm tag|untag HV/VM TAG…`

use std::time::Duration;

use serde_json::json;

use crate::cli::{Cli, JsonArgs, VmTagArgs};
use crate::hypervisor::registry::Registry;
use crate::hypervisor::vm::VmHandle;

pub(crate) fn list(cli: &Cli, a: &JsonArgs) -> anyhow::Result<()> {
    let registry = Registry::open(&super::state(cli), cli.state_db.as_deref())?;
    let db = super::db(cli)?;
    let tags = db.tags()?;
    let last = db.last_results()?;
    let mut rows = Vec::new();
    for hv in registry.list()? {
        for vm in hv.vms()? {
            let state = vm
                .status_within(Duration::from_secs(10))
                .unwrap_or_else(|e| format!("unreachable ({e})"));
            let agent = match vm.agent(Duration::from_secs(2)) {
                Ok(_) => "answers".to_owned(),
                Err(e) => format!("silent ({e})"),
            };
            // Containers attached now: between jobs, none.
            let attached = vm.attached_containers().unwrap_or_default();
            let target = format!("{}/{}", hv.name, vm.name);
            let t: Vec<&String> = tags
                .iter()
                .filter(|(x, _)| *x == target)
                .flat_map(|(_, t)| t)
                .collect();
            let l = last.iter().find(|l| l.target == target);
            rows.push(json!({
                "target": target,
                "state": state,
                "guest_agent": agent,
                "attached": attached,
                "tags": t,
                "last_backup": l,
            }));
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for r in &rows {
            let attached = r["attached"].as_array().map(Vec::len).unwrap_or(0);
            let tags: Vec<&str> = r["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str())
                .collect();
            println!(
                "{:<24} {:<10} guest agent {}{}{}{}",
                r["target"].as_str().unwrap_or_default(),
                r["state"].as_str().unwrap_or_default(),
                r["guest_agent"].as_str().unwrap_or_default(),
                if attached > 0 {
                    format!(", {attached} container(s) attached")
                } else {
                    String::new()
                },
                if tags.is_empty() {
                    String::new()
                } else {
                    format!(", tags {}", tags.join(" "))
                },
                match r["last_backup"]["status"].as_str() {
                    Some(s) => format!(
                        ", last backup {s} {}",
                        super::ls::time(r["last_backup"]["finished"].as_i64().unwrap_or(0), 0)
                    ),
                    None => String::new(),
                }
            );
        }
    }
    Ok(())
}

/// Tags (`add`) or untags a VM of a registered hypervisor.
pub(crate) fn tag(cli: &Cli, a: &VmTagArgs, add: bool) -> anyhow::Result<()> {
    let vm = crate::hypervisor::VmRef::parse(&a.target)?
        .ok_or_else(|| anyhow::anyhow!("{:?}: expected HYPERVISOR/VM", a.target))?;
    for t in &a.tags {
        crate::fleet::check::check_tag(t)?;
    }
    let state = super::state(cli);
    // Tagging a VM of no registered hypervisor is a typo, not a plan.
    Registry::open(&state, cli.state_db.as_deref())?.get(&vm.hypervisor)?;
    let db = super::db(cli)?;
    let target = vm.to_string();
    if add {
        db.tag(&target, &a.tags)?;
    } else {
        db.untag(&target, &a.tags)?;
    }
    let now: Vec<String> = db
        .tags()?
        .into_iter()
        .filter(|(t, _)| *t == target)
        .flat_map(|(_, t)| t)
        .collect();
    println!(
        "{target}: {}",
        if now.is_empty() {
            "no tags".to_owned()
        } else {
            now.join(" ")
        }
    );
    Ok(())
}
