//! `attache vm list`

use std::time::Duration;

use serde_json::json;

use crate::cli::{Cli, JsonArgs};
use crate::hypervisor::registry::Registry;
use crate::hypervisor::vm::VmHandle;

pub(crate) fn list(cli: &Cli, a: &JsonArgs) -> anyhow::Result<()> {
    let registry = Registry::new(&super::state(cli));
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
            rows.push(json!({
                "target": format!("{}/{}", hv.name, vm.name),
                "state": state,
                "guest_agent": agent,
                "attached": attached,
            }));
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for r in &rows {
            let attached = r["attached"].as_array().map(Vec::len).unwrap_or(0);
            println!(
                "{:<24} {:<10} guest agent {}{}",
                r["target"].as_str().unwrap_or_default(),
                r["state"].as_str().unwrap_or_default(),
                r["guest_agent"].as_str().unwrap_or_default(),
                if attached > 0 {
                    format!(", {attached} container(s) attached")
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(())
}
