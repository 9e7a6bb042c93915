//! What can go wrong when a driver talks to a hypervisor or a guest agent:
//! one error type for every driver, so that the session and the journal
//! treat a QEMU and a libvirt VM alike.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub(crate) enum DriverError {
    #[error("cannot connect to {peer} at {}: {source}", path.display())]
    Connect {
        peer: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{peer}: {source}")]
    Io {
        peer: &'static str,
        source: std::io::Error,
    },
    #[error("{peer} at {} did not answer in time", path.display())]
    Timeout { peer: &'static str, path: PathBuf },
    #[error("{peer} closed the connection")]
    Closed { peer: &'static str },
    #[error("{peer} sent something unexpected: {what}")]
    Protocol { peer: &'static str, what: String },
    #[error("{peer} refused {command}: {class}: {desc}")]
    Command {
        peer: &'static str,
        command: String,
        class: String,
        desc: String,
    },
    #[error("QEMU did not report {event} within {secs} s")]
    NoEvent { event: String, secs: f64 },
    #[error("the guest command `{command}` did not finish within {secs} s")]
    GuestCommandTimeout { command: String, secs: f64 },
    #[error("the VM has no virtio-scsi controller to attach the container to")]
    NoScsiBus,
    /// A libvirt call failed (libvirt's own error, with its code, kept).
    #[error("libvirt at {uri}: {what}: {}", source.message())]
    Libvirt {
        uri: String,
        what: String,
        #[source]
        source: virt::error::Error,
    },
    /// The guest agent behind libvirt did not answer (libvirt's agent
    /// timeout, or an agent that is not connected).
    #[error("the guest agent of domain {domain} does not answer: {}", source.message())]
    AgentSilent {
        domain: String,
        #[source]
        source: virt::error::Error,
    },
    #[error(
        "domain {domain} has no virtio-serial channel named {port} with a unix socket in its XML"
    )]
    NoDataChannel { domain: String, port: &'static str },
    #[error("domain {domain}: {what}")]
    DomainXml { domain: String, what: String },
    #[error("libvirt did not remove {device} from domain {domain} within {secs} s")]
    NotDetached {
        domain: String,
        device: String,
        secs: f64,
    },
}

impl DriverError {
    /// The guest agent refused a command because the filesystems are frozen.
    pub(crate) fn is_disabled(&self) -> bool {
        matches!(self, DriverError::Command { desc, .. } if desc.contains("disabled") || desc.contains("frozen"))
    }
}
