//! `GET /hypervisors`: the registered hypervisors, their VMs with the run
//! state and whether the guest agent answers (each asked with a short
//! timeout, all VMs at once, so a hung VM costs the page seconds, not
//! minutes), and the containers attached now according to the attachment
//! journal.

use std::time::Duration;

use serde::Serialize;

use crate::hypervisor::journal::Journal;
use crate::hypervisor::registry::Registry;
use crate::hypervisor::vm::{Vm, VmHandle};

/// How long QEMU and the guest agent each have to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// One VM as the route shows it.
#[derive(Debug, Serialize)]
pub(crate) struct VmView {
    pub name: String,
    /// `running`, `paused`, ... or `unreachable (why)`.
    pub state: String,
    /// `answers`, or `silent (why)`.
    pub guest_agent: String,
    /// Container files attached to it now (journal entries of jobs that
    /// have not detached them yet).
    pub attached: Vec<String>,
}

/// One hypervisor as the route shows it.
#[derive(Debug, Serialize)]
pub(crate) struct HypervisorView {
    pub name: String,
    pub driver: &'static str,
    /// Where its VMs are found: the VM directory (QEMU) or the URI
    /// (libvirt).
    pub vm_dir: String,
    pub datastores: Vec<String>,
    pub vms: Vec<VmView>,
    /// Why its VMs could not be listed, if they could not.
    pub error: Option<String>,
}

/// Asks one VM, within [`PROBE_TIMEOUT`] for each question.
fn probe(vm: &Vm, attached: Vec<String>) -> VmView {
    VmView {
        name: vm.name.clone(),
        state: vm
            .status_within(PROBE_TIMEOUT)
            .unwrap_or_else(|e| format!("unreachable ({e})")),
        guest_agent: match vm.agent(PROBE_TIMEOUT) {
            Ok(_) => "answers".to_owned(),
            Err(e) => format!("silent ({e})"),
        },
        attached,
    }
}

/// Every hypervisor of `registry`, with what
/// `journal` (the workers' shared one, when there are workers) says is
/// attached; the VMs are probed in parallel, on threads of their own.
pub(crate) fn list(registry: &Registry, journal: &Journal) -> anyhow::Result<Vec<HypervisorView>> {
    let journal = journal.entries()?;
    let mut out = Vec::new();
    for hv in registry.list()? {
        let (vms, error) = match hv.vms() {
            Ok(v) => (v, None),
            Err(e) => (Vec::new(), Some(format!("{e:#}"))),
        };
        let vms = std::thread::scope(|s| {
            let probes: Vec<_> = vms
                .iter()
                .map(|vm| {
                    let attached = journal
                        .iter()
                        .filter(|e| e.hypervisor == hv.name && e.vm == vm.name && !e.detached)
                        .map(|e| e.container.display().to_string())
                        .collect();
                    s.spawn(move || probe(vm, attached))
                })
                .collect();
            probes
                .into_iter()
                .zip(&vms)
                .map(|(p, vm)| {
                    p.join().unwrap_or_else(|_| VmView {
                        name: vm.name.clone(),
                        state: "unknown (its probe panicked)".into(),
                        guest_agent: "unknown".into(),
                        attached: Vec::new(),
                    })
                })
                .collect()
        });
        out.push(HypervisorView {
            driver: match hv.driver {
                crate::hypervisor::registry::Driver::Qemu => "qemu",
                crate::hypervisor::registry::Driver::Libvirt => "libvirt",
            },
            vm_dir: hv.location(),
            datastores: hv
                .datastores
                .iter()
                .map(|d| match &d.vms {
                    Some(v) => format!("{} (for {})", d.dir.display(), v.join(", ")),
                    None => d.dir.display().to_string(),
                })
                .collect(),
            name: hv.name,
            vms,
            error,
        });
    }
    Ok(out)
}
