//! The registered hypervisors, kept in `hypervisors.json` in the state
//! directory and changed only under the registry lock.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::lockfile::FileLock;
use super::qemu::Vm;

/// How Attaché talks to a hypervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Driver {
    /// QEMU: QMP to attach, qemu-guest-agent to run, a virtio-serial port
    /// for data; attaches the container as an ISO on a SCSI CD.
    Qemu,
}

impl Driver {
    /// The container format this driver attaches.
    pub(crate) fn format(self) -> &'static str {
        match self {
            Driver::Qemu => "iso",
        }
    }
}

/// A directory the hypervisor can attach containers from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Datastore {
    pub dir: PathBuf,
    /// The VMs that can reach it; `None`: every VM of the hypervisor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vms: Option<Vec<String>>,
}

impl Datastore {
    pub(crate) fn reaches(&self, vm: &str) -> bool {
        self.vms.as_ref().is_none_or(|v| v.iter().any(|x| x == vm))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hypervisor {
    pub name: String,
    pub driver: Driver,
    /// Where the VMs' sockets are (QEMU: `V.qmp`, `V.qga`, `V.data`).
    pub vm_dir: PathBuf,
    pub datastores: Vec<Datastore>,
}

impl Hypervisor {
    /// The VMs it has now.
    pub(crate) fn vms(&self) -> anyhow::Result<Vec<Vm>> {
        match self.driver {
            Driver::Qemu => Vm::list(&self.vm_dir).with_context(|| {
                format!(
                    "cannot list the VMs of {} in {}",
                    self.name,
                    self.vm_dir.display()
                )
            }),
        }
    }

    /// VM `name`, which must exist.
    pub(crate) fn vm(&self, name: &str) -> anyhow::Result<Vm> {
        let vm = Vm::in_dir(&self.vm_dir, name);
        if !vm.qmp.exists() {
            bail!(
                "hypervisor {} has no VM {name} (no {})",
                self.name,
                vm.qmp.display()
            );
        }
        Ok(vm)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    hypervisors: Vec<Hypervisor>,
}

/// The registry in a state directory.
#[derive(Debug, Clone)]
pub(crate) struct Registry {
    dir: PathBuf,
}

impl Registry {
    pub(crate) fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.to_owned(),
        }
    }

    fn file(&self) -> PathBuf {
        self.dir.join("hypervisors.json")
    }

    /// The lock that serializes changes to the registry and to datastores.
    pub(crate) fn lock(&self) -> anyhow::Result<FileLock> {
        FileLock::exclusive(&self.dir.join("registry.lock"))
    }

    pub(crate) fn list(&self) -> anyhow::Result<Vec<Hypervisor>> {
        let p = self.file();
        match std::fs::read(&p) {
            Ok(b) => Ok(serde_json::from_slice::<File>(&b)
                .with_context(|| format!("{} is damaged", p.display()))?
                .hypervisors),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
        }
    }

    pub(crate) fn get(&self, name: &str) -> anyhow::Result<Hypervisor> {
        self.list()?
            .into_iter()
            .find(|h| h.name == name)
            .with_context(|| {
                format!("no hypervisor {name:?} is registered (attache hypervisor add)")
            })
    }

    /// Adds a hypervisor; the caller holds the lock.
    pub(crate) fn add(&self, _lock: &FileLock, hv: Hypervisor) -> anyhow::Result<()> {
        super::check_name("hypervisor", &hv.name)?;
        let mut all = self.list()?;
        if all.iter().any(|h| h.name == hv.name) {
            bail!("hypervisor {} is already registered", hv.name);
        }
        all.push(hv);
        let body = serde_json::to_vec_pretty(&File { hypervisors: all })?;
        crate::store::fsutil::write_atomic(&self.file(), &body)?;
        Ok(())
    }
}
