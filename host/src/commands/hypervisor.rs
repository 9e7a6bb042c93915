//! `attache hypervisor add NAME --driver qemu --vm-dir DIR --datastore DIR…`
//! and `attache hypervisor list`.

use serde_json::json;

use crate::cli::{Cli, HypervisorAddArgs, JsonArgs};
use crate::hypervisor::datastore::{self, Pushed};
use crate::hypervisor::journal::Journal;
use crate::hypervisor::registry::{Hypervisor, Registry};

pub fn add(cli: &Cli, a: &HypervisorAddArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.vm_dir.is_dir(),
        "--vm-dir {} is not a directory",
        a.vm_dir.display()
    );
    let state = super::state(cli);
    let registry = Registry::new(&state);
    let hv = Hypervisor {
        name: a.name.clone(),
        driver: a.driver,
        vm_dir: std::path::absolute(&a.vm_dir)?,
        datastores: a.datastores.clone(),
    };
    let lock = registry.lock()?;
    registry.add(&lock, hv.clone())?;
    println!(
        "registered hypervisor {} ({} VMs now)",
        hv.name,
        hv.vms()?.len()
    );
    // The container goes out now, so the first job finds it in place.
    match super::container::current(cli) {
        Ok(built) => {
            let pushed = datastore::push(&hv, &built, &Journal::new(&state))?;
            report(&pushed);
        }
        Err(e) => tracing::warn!("no container pushed yet: {e:#}"),
    }
    Ok(())
}

/// One line per push.
pub fn report(p: &Pushed) {
    let dirs: Vec<String> = p
        .datastores
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    println!(
        "  {}: container on {} ({} copied now{})",
        p.hypervisor,
        dirs.join(", "),
        p.copied,
        if p.removed.is_empty() {
            String::new()
        } else {
            format!(", {} old removed", p.removed.len())
        }
    );
}

pub fn list(cli: &Cli, a: &JsonArgs) -> anyhow::Result<()> {
    let registry = Registry::new(&super::state(cli));
    let all = registry.list()?;
    let mut out = Vec::new();
    for hv in &all {
        let datastores: Vec<_> = hv
            .datastores
            .iter()
            .map(|d| {
                let mut containers: Vec<String> = std::fs::read_dir(&d.dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .filter(|n| n.starts_with("attache-agent-"))
                    .collect();
                containers.sort();
                json!({ "dir": d.dir, "vms": d.vms, "containers": containers })
            })
            .collect();
        out.push(json!({
            "name": hv.name, "driver": hv.driver, "vm_dir": hv.vm_dir, "datastores": datastores,
        }));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    for (hv, v) in all.iter().zip(&out) {
        println!(
            "{}  {:?}  vms in {}",
            hv.name,
            hv.driver,
            hv.vm_dir.display()
        );
        for d in v["datastores"].as_array().into_iter().flatten() {
            let c: Vec<&str> = d["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str())
                .collect();
            println!(
                "  datastore {}{}  {}",
                d["dir"].as_str().unwrap_or_default(),
                d["vms"]
                    .as_array()
                    .map(|v| format!(
                        " (reaches {})",
                        v.iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    ))
                    .unwrap_or_default(),
                if c.is_empty() {
                    "-".into()
                } else {
                    c.join(" ")
                }
            );
        }
    }
    Ok(())
}
