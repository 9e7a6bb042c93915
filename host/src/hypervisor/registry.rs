//! The registered hypervisors, changed only under the registry lock: in
//! `hypervisors.json` in the state directory, or, when the state database
//! is PostgreSQL (`--state-db`), in its `hypervisors` table, under an
//! advisory lock, so that every worker sharing it sees the same ones.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::lockfile::{FileLock, Held};
use super::vm::Vm;
use super::{libvirt, qemu};
use crate::db::postgres::Postgres;

/// How Attaché talks to a hypervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Driver {
    /// QEMU: QMP to attach, qemu-guest-agent to run, a virtio-serial port
    /// for data; attaches the container as an ISO on a SCSI CD.
    Qemu,
    /// libvirt: the domains of a libvirt URI; attaches the container as an
    /// ISO on a SCSI CD-ROM through libvirt's device API, runs the guest
    /// through libvirt's guest-agent passthrough, data over the domain's
    /// virtio-serial channel `attache.data`.
    Libvirt,
}

impl Driver {
    /// The container format this driver attaches.
    pub(crate) fn format(self) -> &'static str {
        match self {
            Driver::Qemu | Driver::Libvirt => "iso",
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
    /// QEMU: where the VMs' sockets are (`V.qmp`, `V.qga`, `V.data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_dir: Option<PathBuf>,
    /// libvirt: the connection URI (`qemu:///system`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    pub datastores: Vec<Datastore>,
}

impl Hypervisor {
    /// Where its VMs are found: the VM directory or the libvirt URI.
    pub(crate) fn location(&self) -> String {
        match (&self.vm_dir, &self.uri) {
            (Some(d), _) => d.display().to_string(),
            (None, Some(u)) => u.clone(),
            (None, None) => String::new(),
        }
    }

    fn vm_dir(&self) -> anyhow::Result<&Path> {
        self.vm_dir
            .as_deref()
            .with_context(|| format!("hypervisor {} has no VM directory", self.name))
    }

    fn uri(&self) -> anyhow::Result<&str> {
        self.uri
            .as_deref()
            .with_context(|| format!("hypervisor {} has no libvirt URI", self.name))
    }

    /// The VMs it has now.
    pub(crate) fn vms(&self) -> anyhow::Result<Vec<Vm>> {
        match self.driver {
            Driver::Qemu => {
                let dir = self.vm_dir()?;
                qemu::list(dir).with_context(|| {
                    format!("cannot list the VMs of {} in {}", self.name, dir.display())
                })
            }
            Driver::Libvirt => libvirt::list(self.uri()?)
                .with_context(|| format!("cannot list the domains of {}", self.name)),
        }
    }

    /// VM `name`, which must exist.
    pub(crate) fn vm(&self, name: &str) -> anyhow::Result<Vm> {
        match self.driver {
            Driver::Qemu => {
                let dir = self.vm_dir()?;
                let qmp = dir.join(format!("{name}.qmp"));
                if !qmp.exists() {
                    bail!(
                        "hypervisor {} has no VM {name} (no {})",
                        self.name,
                        qmp.display()
                    );
                }
                Ok(qemu::in_dir(dir, name))
            }
            Driver::Libvirt => {
                let uri = self.uri()?;
                let names = libvirt::Conn::open(uri)
                    .and_then(|c| c.domain_names())
                    .with_context(|| format!("cannot list the domains of {}", self.name))?;
                if !names.iter().any(|n| n == name) {
                    bail!("hypervisor {} has no domain {name} at {uri}", self.name);
                }
                Ok(libvirt::vm(uri, name))
            }
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    hypervisors: Vec<Hypervisor>,
}

/// The registry: the state directory's file, or the shared state
/// database's table.
#[derive(Clone)]
pub(crate) struct Registry {
    dir: PathBuf,
    /// The PostgreSQL state database, when there is one.
    shared: Option<Arc<Postgres>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("dir", &self.dir)
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

impl Registry {
    /// The registry of the state directory `state_dir`.
    pub(crate) fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.to_owned(),
            shared: None,
        }
    }

    /// The registry of the state database: PostgreSQL's when `state_db`
    /// names one (`--state-db`), else the state directory's.
    pub(crate) fn open(state_dir: &Path, state_db: Option<&str>) -> anyhow::Result<Self> {
        Ok(match state_db.filter(|u| !u.is_empty()) {
            Some(url) => Self {
                dir: state_dir.to_owned(),
                shared: Some(Arc::new(Postgres::open(url)?)),
            },
            None => Self::new(state_dir),
        })
    }

    /// The registry jobs of `ctx` use: their workers' database's, when they
    /// are workers (on the connection the worker keeps for it), else as
    /// [`Registry::open`].
    pub(crate) fn for_context(ctx: &crate::jobs::Context) -> anyhow::Result<Self> {
        match &ctx.cluster {
            Some(c) => Ok(Self {
                dir: ctx.state.clone(),
                shared: Some(c.registry_db()),
            }),
            None => Self::open(&ctx.state, ctx.state_db.as_deref()),
        }
    }

    fn file(&self) -> PathBuf {
        self.dir.join("hypervisors.json")
    }

    /// The lock that serializes changes to the registry and to datastores
    /// (across workers, when the registry is shared).
    pub(crate) fn lock(&self) -> anyhow::Result<Held> {
        Ok(match &self.shared {
            Some(pg) => Held::Shared(Box::new(pg.lock_registry()?)),
            None => Held::File(FileLock::exclusive(&self.dir.join("registry.lock"))?),
        })
    }

    pub(crate) fn list(&self) -> anyhow::Result<Vec<Hypervisor>> {
        if let Some(pg) = &self.shared {
            return pg
                .hypervisors()?
                .into_iter()
                .map(|(name, definition)| {
                    serde_json::from_str::<Hypervisor>(&definition).with_context(|| {
                        format!("the state database's definition of hypervisor {name} is damaged")
                    })
                })
                .collect();
        }
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
    pub(crate) fn add(&self, _lock: &Held, hv: Hypervisor) -> anyhow::Result<()> {
        super::check_name("hypervisor", &hv.name)?;
        if let Some(pg) = &self.shared {
            let definition = serde_json::to_string(&hv)?;
            return match pg.add_hypervisor(&hv.name, &definition, crate::server::queue::now()) {
                Err(crate::db::DbError::Conflict(_)) => {
                    bail!("hypervisor {} is already registered", hv.name)
                }
                r => Ok(r?),
            };
        }
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
