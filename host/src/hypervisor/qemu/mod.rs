//! The QEMU driver: a VM is found by its sockets in the hypervisor's VM
//! directory, the container is attached and detached through QMP, and the
//! guest is driven through qemu-guest-agent.
//!
//! For a VM named `V` the directory holds `V.qmp` (QMP), `V.qga` (the guest
//! agent's virtio-serial port) and `V.data` (a virtio-serial port named
//! `attache.data` that carries the job's data, so the guest needs no
//! network).

mod jsonsock;
pub(crate) mod qga;
pub(crate) mod qmp;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::agent::Agent;
use super::error::DriverError;
use super::vm::{Attachment, Via, Vm, VmHandle};
pub(crate) use qga::QgaLink;
pub(crate) use qmp::Qmp;

/// How long a QMP or guest agent command may take to answer.
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long QEMU may take to report a device unplugged.
const UNPLUG_TIMEOUT: Duration = Duration::from_secs(20);

/// A QEMU VM's sockets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Sockets {
    pub qmp: PathBuf,
    pub qga: PathBuf,
    pub data: PathBuf,
}

/// VM `name` of the VM directory `dir`.
pub(crate) fn in_dir(dir: &Path, name: &str) -> Vm {
    Vm {
        name: name.into(),
        via: Via::Qemu(Sockets {
            qmp: dir.join(format!("{name}.qmp")),
            qga: dir.join(format!("{name}.qga")),
            data: dir.join(format!("{name}.data")),
        }),
    }
}

/// The VMs of a directory: every `NAME.qmp` socket.
pub(crate) fn list(dir: &Path) -> std::io::Result<Vec<Vm>> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if p.extension().is_some_and(|x| x == "qmp") && e.file_type()?.is_socket() {
            if let Some(name) = p.file_stem().and_then(|s| s.to_str()) {
                out.push(in_dir(dir, name));
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

impl Sockets {
    pub(crate) fn qmp(&self) -> Result<Qmp, DriverError> {
        Qmp::connect(&self.qmp, ANSWER_TIMEOUT)
    }
}

impl VmHandle for Sockets {
    fn agent(&self, timeout: Duration) -> Result<Agent, DriverError> {
        Ok(Agent::new(
            Box::new(QgaLink::connect(&self.qga, timeout)?),
            timeout,
        ))
    }

    fn data_channel(&self) -> Result<PathBuf, DriverError> {
        Ok(self.data.clone())
    }

    fn status_within(&self, timeout: Duration) -> Result<String, DriverError> {
        let r = Qmp::connect(&self.qmp, timeout)?.execute("query-status", json!({}))?;
        Ok(r["status"].as_str().unwrap_or("unknown").to_owned())
    }

    /// Attaches `iso` read-only as a SCSI CD on the VM's virtio-scsi bus.
    fn attach_cd(&self, iso: &Path, a: &Attachment) -> Result<(), DriverError> {
        let mut q = self.qmp()?;
        let bus = scsi_bus(&mut q)?;
        q.execute(
            "blockdev-add",
            json!({
                "node-name": a.node,
                "driver": "raw",
                "read-only": true,
                "file": { "driver": "file", "filename": iso, "read-only": true },
            }),
        )?;
        let added = q.execute(
            "device_add",
            json!({ "driver": "scsi-cd", "bus": bus, "drive": a.node, "id": a.device }),
        );
        if let Err(e) = added {
            let _ = q.execute("blockdev-del", json!({ "node-name": a.node }));
            return Err(e);
        }
        Ok(())
    }

    /// Detaches what `attach_cd` attached; what is already gone is skipped,
    /// so this can be repeated after any failure.
    fn detach(&self, a: &Attachment) -> Result<(), DriverError> {
        let mut q = self.qmp()?;
        match q.execute("device_del", json!({ "id": a.device })) {
            Ok(_) => {
                q.wait_event(
                    "DEVICE_DELETED",
                    |d| d["device"] == json!(a.device),
                    UNPLUG_TIMEOUT,
                )?;
            }
            Err(DriverError::Command { class, .. }) if class == "DeviceNotFound" => {}
            Err(DriverError::Command { desc, .. }) if desc.contains("not found") => {}
            Err(e) => return Err(e),
        }
        match q.execute("blockdev-del", json!({ "node-name": a.node })) {
            Ok(_) => Ok(()),
            Err(DriverError::Command { desc, .. })
                if desc.contains("Failed to find node") || desc.contains("not found") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Files of Attaché containers the VM has attached now (block devices
    /// and named nodes), for checks and for the journal's recovery.
    fn attached_containers(&self) -> Result<Vec<String>, DriverError> {
        let mut q = self.qmp()?;
        let mut out = Vec::new();
        let mut note = |v: &Value| {
            let node = v["node-name"].as_str().unwrap_or_default();
            let file = v["file"].as_str().unwrap_or_default();
            if node.starts_with("attache-") || file.contains("attache-agent") {
                out.push(format!("{node} {file}"));
            }
        };
        if let Value::Array(blocks) = q.execute("query-block", json!({}))? {
            for b in &blocks {
                note(&b["inserted"]);
            }
        }
        if let Value::Array(nodes) = q.execute("query-named-block-nodes", json!({}))? {
            for n in &nodes {
                note(n);
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// The bus of the VM's first named virtio-scsi controller (`ID.0`).
fn scsi_bus(q: &mut Qmp) -> Result<String, DriverError> {
    let children = q.execute("qom-list", json!({ "path": "/machine/peripheral" }))?;
    children
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| {
            c["type"]
                .as_str()
                .is_some_and(|t| t.contains("virtio-scsi"))
        })
        .and_then(|c| c["name"].as_str())
        .map(|name| format!("{name}.0"))
        .ok_or(DriverError::NoScsiBus)
}
