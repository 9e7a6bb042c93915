//! The libvirt driver, through libvirt's own Rust bindings (`virt`): a VM is
//! a domain of the hypervisor's libvirt URI; the container is attached as a
//! read-only SCSI CD-ROM with `virDomainAttachDeviceFlags` and detached with
//! `virDomainDetachDeviceFlags`; the guest is driven through libvirt's
//! guest-agent passthrough (`virDomainQemuAgentCommand`); the data channel is
//! the domain's virtio-serial channel `attache.data`, whose Unix socket the
//! driver reads from the domain's XML:
//!
//! ```xml
//! <channel type='unix'>
//!   <source mode='bind' path='/var/lib/libvirt/attache/VM.data'/>
//!   <target type='virtio' name='attache.data'/>
//! </channel>
//! ```
//!
//! The domain needs a virtio-scsi controller for the CD and the guest agent's
//! channel `org.qemu.guest_agent.0`.

mod agent;
pub(crate) mod xml;

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use virt::connect::Connect;
use virt::error::ErrorNumber;

use super::agent::Agent;
use super::error::DriverError;
use super::guest::DATA_PORT;
use super::vm::{Attachment, Via, Vm, VmHandle};
use xml::DomainXml;

/// How long libvirt may take to report a device unplugged.
const UNPLUG_TIMEOUT: Duration = Duration::from_secs(20);

/// A libvirt domain: the connection URI and the domain's name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Domain {
    pub uri: String,
    pub domain: String,
}

/// An open connection, closed when dropped.
pub(crate) struct Conn {
    uri: String,
    conn: Connect,
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.conn.close();
    }
}

impl Conn {
    pub(crate) fn open(uri: &str) -> Result<Self, DriverError> {
        // libvirt prints every error on stderr unless told not to; they are
        // returned (and reported) here instead.
        static QUIET: Once = Once::new();
        QUIET.call_once(virt::error::clear_error_callback);
        let conn = Connect::open(Some(uri)).map_err(|source| DriverError::Libvirt {
            uri: uri.to_owned(),
            what: "cannot connect".into(),
            source,
        })?;
        Ok(Self {
            uri: uri.to_owned(),
            conn,
        })
    }

    fn err(&self, what: String) -> impl FnOnce(virt::error::Error) -> DriverError + '_ {
        move |source| DriverError::Libvirt {
            uri: self.uri.clone(),
            what,
            source,
        }
    }

    pub(crate) fn domain(&self, name: &str) -> Result<virt::domain::Domain, DriverError> {
        virt::domain::Domain::lookup_by_name(&self.conn, name)
            .map_err(self.err(format!("no domain {name}")))
    }

    /// The names of every domain (running or not).
    pub(crate) fn domain_names(&self) -> Result<Vec<String>, DriverError> {
        let all = self
            .conn
            .list_all_domains(0)
            .map_err(self.err("cannot list the domains".into()))?;
        let mut names = Vec::with_capacity(all.len());
        for d in all {
            names.push(d.get_name().map_err(self.err("a domain's name".into()))?);
        }
        names.sort();
        Ok(names)
    }
}

/// The domains of `uri` as VMs; names Attaché cannot use as VM names are
/// left out (with a warning).
pub(crate) fn list(uri: &str) -> Result<Vec<Vm>, DriverError> {
    let conn = Conn::open(uri)?;
    let mut out = Vec::new();
    for name in conn.domain_names()? {
        if let Err(e) = super::check_name("VM", &name) {
            tracing::warn!(uri, "domain {name:?} left out: {e:#}");
            continue;
        }
        out.push(vm(uri, &name));
    }
    Ok(out)
}

/// Domain `name` of `uri` as a VM.
pub(crate) fn vm(uri: &str, name: &str) -> Vm {
    Vm {
        name: name.to_owned(),
        via: Via::Libvirt(Domain {
            uri: uri.to_owned(),
            domain: name.to_owned(),
        }),
    }
}

impl Domain {
    fn open(&self) -> Result<(Conn, virt::domain::Domain), DriverError> {
        let conn = Conn::open(&self.uri)?;
        let dom = conn.domain(&self.domain)?;
        Ok((conn, dom))
    }

    /// The domain's live XML.
    fn live_xml(&self, conn: &Conn, dom: &virt::domain::Domain) -> Result<String, DriverError> {
        dom.get_xml_desc(0)
            .map_err(conn.err(format!("the XML of domain {}", self.domain)))
    }

    fn bad_xml(&self, e: impl std::fmt::Display) -> DriverError {
        DriverError::DomainXml {
            domain: self.domain.clone(),
            what: format!("its XML does not parse: {e}"),
        }
    }

    /// The libvirt alias of attachment `a`'s CD (user aliases start `ua-`).
    fn alias(a: &Attachment) -> String {
        format!("ua-{}", a.device)
    }
}

impl VmHandle for Domain {
    fn status_within(&self, _timeout: Duration) -> Result<String, DriverError> {
        // libvirt answers from its own state, without asking QEMU.
        let (conn, dom) = self.open()?;
        let (state, _reason) = dom
            .get_state()
            .map_err(conn.err(format!("the state of domain {}", self.domain)))?;
        Ok(match state {
            virt::sys::VIR_DOMAIN_RUNNING => "running",
            virt::sys::VIR_DOMAIN_BLOCKED => "blocked",
            virt::sys::VIR_DOMAIN_PAUSED => "paused",
            virt::sys::VIR_DOMAIN_SHUTDOWN => "shutting down",
            virt::sys::VIR_DOMAIN_SHUTOFF => "shut off",
            virt::sys::VIR_DOMAIN_CRASHED => "crashed",
            virt::sys::VIR_DOMAIN_PMSUSPENDED => "suspended",
            _ => "unknown",
        }
        .to_owned())
    }

    fn agent(&self, timeout: Duration) -> Result<Agent, DriverError> {
        let (conn, dom) = self.open()?;
        let link = agent::LibvirtAgent::connect(conn, dom, &self.domain, timeout)?;
        Ok(Agent::new(Box::new(link), timeout))
    }

    fn attach_cd(&self, iso: &Path, a: &Attachment) -> Result<(), DriverError> {
        let (conn, dom) = self.open()?;
        let text = self.live_xml(&conn, &dom)?;
        let x = DomainXml::parse(&text).map_err(|e| self.bad_xml(e))?;
        let controller = x.virtio_scsi().ok_or(DriverError::NoScsiBus)?;
        let (dev, unit) = x
            .free_slot(controller)
            .ok_or_else(|| DriverError::DomainXml {
                domain: self.domain.clone(),
                what: format!("no free unit on SCSI controller {controller}"),
            })?;
        let disk = xml::cdrom(iso, &dev, &Self::alias(a), controller, unit);
        dom.attach_device_flags(&disk, virt::sys::VIR_DOMAIN_AFFECT_LIVE)
            .map_err(conn.err(format!(
                "attaching {} to domain {} as {dev}",
                iso.display(),
                self.domain
            )))?;
        Ok(())
    }

    fn detach(&self, a: &Attachment) -> Result<(), DriverError> {
        // A domain that no longer exists has nothing attached.
        let (conn, dom) = match self.open() {
            Ok(c) => c,
            Err(DriverError::Libvirt { source, .. }) if source.code() == ErrorNumber::NoDomain => {
                return Ok(())
            }
            Err(e) => return Err(e),
        };
        let alias = Self::alias(a);
        let find = |text: &str| -> Result<Option<String>, DriverError> {
            let x = DomainXml::parse(text).map_err(|e| self.bad_xml(e))?;
            Ok(x.disks()
                .into_iter()
                .find(|d| d.alias == Some(alias.as_str()))
                .map(|d| d.element.to_owned()))
        };
        let Some(element) = find(&self.live_xml(&conn, &dom)?)? else {
            return Ok(());
        };
        match dom.detach_device_flags(&element, virt::sys::VIR_DOMAIN_AFFECT_LIVE) {
            Ok(_) => {}
            Err(e) if e.code() == ErrorNumber::DeviceMissing => return Ok(()),
            Err(e) => {
                return Err(conn.err(format!("detaching {alias} from {}", self.domain))(
                    e,
                ))
            }
        }
        // libvirt waits a few seconds for QEMU's unplug; then it may still
        // be under way.
        let deadline = Instant::now() + UNPLUG_TIMEOUT;
        while find(&self.live_xml(&conn, &dom)?)?.is_some() {
            if Instant::now() >= deadline {
                return Err(DriverError::NotDetached {
                    domain: self.domain.clone(),
                    device: alias,
                    secs: UNPLUG_TIMEOUT.as_secs_f64(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn attached_containers(&self) -> Result<Vec<String>, DriverError> {
        let (conn, dom) = self.open()?;
        let text = self.live_xml(&conn, &dom)?;
        let x = DomainXml::parse(&text).map_err(|e| self.bad_xml(e))?;
        let mut out: Vec<String> = x
            .disks()
            .into_iter()
            .filter(|d| {
                d.alias.is_some_and(|a| a.starts_with("ua-attache-"))
                    || d.source.is_some_and(|s| s.contains("attache-agent"))
            })
            .map(|d| {
                format!(
                    "{} {}",
                    d.alias.unwrap_or_default(),
                    d.source.unwrap_or_default()
                )
            })
            .collect();
        out.sort();
        Ok(out)
    }

    fn data_channel(&self) -> Result<PathBuf, DriverError> {
        let (conn, dom) = self.open()?;
        let text = self.live_xml(&conn, &dom)?;
        DomainXml::parse(&text)
            .map_err(|e| self.bad_xml(e))?
            .channel_socket(DATA_PORT)
            .ok_or_else(|| DriverError::NoDataChannel {
                domain: self.domain.clone(),
                port: DATA_PORT,
            })
    }
}
