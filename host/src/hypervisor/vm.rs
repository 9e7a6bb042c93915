//! A VM as the jobs see it, whatever drives it: the [`VmHandle`] trait every
//! driver implements, and [`Vm`], a VM of a registered hypervisor that
//! dispatches to its driver and is written into the journal as it is.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::agent::Agent;
use super::error::DriverError;
use super::libvirt::Domain;
use super::qemu::Sockets;

/// What a driver does with one VM for a job. Nothing above this trait (the
/// session, the journal, the jobs) knows which driver it drives.
pub(crate) trait VmHandle {
    /// The VM's run state (`running`, `paused`, ...), when the hypervisor
    /// answers within `timeout`.
    fn status_within(&self, timeout: Duration) -> Result<String, DriverError>;

    /// A connection to the guest agent that answered within `timeout`; its
    /// commands may each take `timeout` too unless given more.
    fn agent(&self, timeout: Duration) -> Result<Agent, DriverError>;

    /// Attaches the ISO `iso` read-only as a SCSI CD, named by `a`.
    fn attach_cd(&self, iso: &Path, a: &Attachment) -> Result<(), DriverError>;

    /// Detaches what `attach_cd` attached; what is already gone is skipped,
    /// so this can be repeated after any failure.
    fn detach(&self, a: &Attachment) -> Result<(), DriverError>;

    /// Attaché's containers the VM has attached now (for checks and for
    /// listings), one line each.
    fn attached_containers(&self) -> Result<Vec<String>, DriverError>;

    /// The host end of the VM's data channel (the virtio-serial port
    /// `attache.data`): a Unix socket the hypervisor listens on.
    fn data_channel(&self) -> Result<PathBuf, DriverError>;
}

/// What is attached for one job: names the driver gives the container's
/// block node and its device, derived from the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Attachment {
    pub node: String,
    pub device: String,
}

impl Attachment {
    /// Names for session `session` (letters, digits, `-`: valid QEMU ids
    /// and, after `ua-`, libvirt aliases).
    pub(crate) fn for_session(session: &str) -> Self {
        let short = &session[..12.min(session.len())];
        Self {
            node: format!("attache-node-{short}"),
            device: format!("attache-cd-{short}"),
        }
    }
}

/// A VM of a registered hypervisor and how its driver reaches it. The
/// journal keeps it in each entry (`target`); a QEMU VM's form is the one
/// journals have always had (`name`, `qmp`, `qga`, `data`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Vm {
    pub name: String,
    #[serde(flatten)]
    pub via: Via,
}

/// How a driver reaches a VM.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Via {
    /// A QEMU VM's sockets.
    Qemu(Sockets),
    /// A libvirt domain.
    Libvirt(Domain),
}

impl Vm {
    /// The driver's handle on this VM.
    pub(crate) fn handle(&self) -> &dyn VmHandle {
        match &self.via {
            Via::Qemu(s) => s,
            Via::Libvirt(d) => d,
        }
    }
}

impl VmHandle for Vm {
    fn status_within(&self, timeout: Duration) -> Result<String, DriverError> {
        self.handle().status_within(timeout)
    }

    fn agent(&self, timeout: Duration) -> Result<Agent, DriverError> {
        self.handle().agent(timeout)
    }

    fn attach_cd(&self, iso: &Path, a: &Attachment) -> Result<(), DriverError> {
        self.handle().attach_cd(iso, a)
    }

    fn detach(&self, a: &Attachment) -> Result<(), DriverError> {
        self.handle().detach(a)
    }

    fn attached_containers(&self) -> Result<Vec<String>, DriverError> {
        self.handle().attached_containers()
    }

    fn data_channel(&self) -> Result<PathBuf, DriverError> {
        self.handle().data_channel()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_target_of_either_driver_reads_back_as_written() {
        // The form journals have always had for a QEMU VM.
        let old =
            r#"{"name":"web01","qmp":"/v/web01.qmp","qga":"/v/web01.qga","data":"/v/web01.data"}"#;
        let vm: Vm = serde_json::from_str(old).unwrap();
        assert_eq!(vm.name, "web01");
        let Via::Qemu(s) = &vm.via else {
            panic!("{vm:?} is not a QEMU VM")
        };
        assert_eq!(s.qga, PathBuf::from("/v/web01.qga"));
        assert_eq!(
            serde_json::to_value(&vm).unwrap(),
            serde_json::from_str::<serde_json::Value>(old).unwrap()
        );

        let lv = super::super::libvirt::vm("qemu:///system?socket=/s/sock", "db1");
        let text = serde_json::to_string(&lv).unwrap();
        let back: Vm = serde_json::from_str(&text).unwrap();
        assert_eq!(back.name, "db1");
        let Via::Libvirt(d) = &back.via else {
            panic!("{back:?} is not a libvirt domain")
        };
        assert_eq!(d.uri, "qemu:///system?socket=/s/sock");
        assert_eq!(d.domain, "db1");

        // Neither form: refused, not taken for one of them.
        assert!(serde_json::from_str::<Vm>(r#"{"name":"x","qmp":"/q"}"#).is_err());
    }

    #[test]
    fn attachment_names_are_short_and_valid_aliases() {
        let a = Attachment::for_session("0123456789abcdef0123456789abcdef");
        assert_eq!(a.device, "attache-cd-0123456789ab");
        assert_eq!(a.node, "attache-node-0123456789ab");
        assert!(a
            .device
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    }
}
