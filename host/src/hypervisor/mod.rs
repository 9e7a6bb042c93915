//! Hypervisors and their VMs: where granular jobs run.
//!
//! A registered hypervisor has a driver (`qemu` or `libvirt`, both behind
//! the [`vm::VmHandle`] trait), a place where its VMs are found (a directory
//! of sockets, or a libvirt URI), and datastores: directories it can attach
//! containers from. The server keeps the current container on them (`datastore`),
//! writes down what it attaches before attaching it (`journal`), and drives
//! one job's visit to a VM (`session`).

pub(crate) mod agent;
pub(crate) mod datastore;
pub(crate) mod error;
pub(crate) mod guest;
pub(crate) mod journal;
pub(crate) mod libvirt;
pub(crate) mod lockfile;
pub(crate) mod qemu;
pub(crate) mod registry;
pub(crate) mod session;
pub(crate) mod vm;

use anyhow::bail;

/// A VM of a registered hypervisor: `HYPERVISOR/VM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VmRef {
    pub hypervisor: String,
    pub vm: String,
}

impl std::fmt::Display for VmRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.hypervisor, self.vm)
    }
}

/// Names of hypervisors and VMs: they become file names and QEMU ids.
pub(crate) fn check_name(what: &str, s: &str) -> anyhow::Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        bail!("invalid {what} name {s:?}: use letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

impl VmRef {
    /// Parses `HYPERVISOR/VM`; `None` when `s` has no `/`.
    pub(crate) fn parse(s: &str) -> anyhow::Result<Option<Self>> {
        let Some((hv, vm)) = s.split_once('/') else {
            return Ok(None);
        };
        check_name("hypervisor", hv)?;
        check_name("VM", vm)?;
        Ok(Some(Self {
            hypervisor: hv.into(),
            vm: vm.into(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_refs() {
        assert_eq!(
            VmRef::parse("hv1/vm-1").unwrap(),
            Some(VmRef {
                hypervisor: "hv1".into(),
                vm: "vm-1".into()
            })
        );
        assert_eq!(VmRef::parse("local").unwrap(), None);
        assert!(VmRef::parse("hv/../x").is_err());
        assert!(VmRef::parse("/vm").is_err());
        assert!(VmRef::parse("hv/").is_err());
    }
}
