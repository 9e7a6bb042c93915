//! `attache hypervisor add NAME --driver qemu --vm-dir DIR --datastore DIR…`
//! (or `--driver libvirt --uri URI`) and `attache hypervisor list`.

use serde_json::json;

use crate::cli::{Cli, HypervisorAddArgs, JsonArgs};
use crate::hypervisor::datastore::{self, Pushed};
use crate::hypervisor::journal::Journal;
use crate::hypervisor::registry::{Driver, Hypervisor, Registry};
use anyhow::Context as _;

pub(crate) fn add(cli: &Cli, a: &HypervisorAddArgs) -> anyhow::Result<()> {
    let (vm_dir, uri) = match a.driver {
        Driver::Qemu => {
            let dir = a.vm_dir.as_ref().context("--driver qemu needs --vm-dir")?;
            anyhow::ensure!(
                dir.is_dir(),
                "--vm-dir {} is not a directory",
                dir.display()
            );
            (Some(std::path::absolute(dir)?), None)
        }
        Driver::Libvirt => {
            anyhow::ensure!(
                a.vm_dir.is_none(),
                "--driver libvirt takes --uri, not --vm-dir"
            );
            let uri = a.uri.clone().context("--driver libvirt needs --uri")?;
            (None, Some(uri))
        }
    };
    let state = super::state(cli);
    let registry = Registry::open(&state, cli.state_db.as_deref())?;
    let hv = Hypervisor {
        name: a.name.clone(),
        driver: a.driver,
        vm_dir,
        uri,
        datastores: a.datastores.clone(),
    };
    // A hypervisor whose VMs cannot be listed is not registered.
    let vms = hv.vms()?.len();
    let lock = registry.lock()?;
    registry.add(&lock, hv.clone())?;
    println!("registered hypervisor {} ({vms} VMs now)", hv.name);
    // The container goes out now, so the first job finds it in place.
    match super::container::current(cli) {
        Ok(built) => {
            let journal = Journal::open(&state, cli.state_db.as_deref())?;
            let pushed = datastore::push(&hv, &built, &journal)?;
            report(&pushed);
        }
        Err(e) => tracing::warn!("no container pushed yet: {e:#}"),
    }
    Ok(())
}

/// One line per push.
pub(crate) fn report(p: &Pushed) {
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

pub(crate) fn list(cli: &Cli, a: &JsonArgs) -> anyhow::Result<()> {
    let registry = Registry::open(&super::state(cli), cli.state_db.as_deref())?;
    let all = registry.list()?;
    // File names of the containers on each datastore, per hypervisor.
    let names = |dir: &std::path::Path| -> Vec<String> {
        datastore::containers(dir)
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect()
    };
    if a.json {
        let out: Vec<_> = all
            .iter()
            .map(|hv| {
                let datastores: Vec<_> = hv
                    .datastores
                    .iter()
                    .map(|d| json!({ "dir": d.dir, "vms": d.vms, "containers": names(&d.dir) }))
                    .collect();
                json!({
                    "name": hv.name, "driver": hv.driver, "vm_dir": hv.vm_dir, "uri": hv.uri, "datastores": datastores,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    for hv in &all {
        println!("{}  {:?}  vms in {}", hv.name, hv.driver, hv.location());
        for d in &hv.datastores {
            let reach = d
                .vms
                .as_ref()
                .map(|v| format!(" (reaches {})", v.join(",")))
                .unwrap_or_default();
            let c = names(&d.dir);
            let c = if c.is_empty() {
                "-".into()
            } else {
                c.join(" ")
            };
            println!("  datastore {}{reach}  {c}", d.dir.display());
        }
    }
    Ok(())
}
