//! Where a job runs: `local` is this machine, acting as the guest;
//! `HYPERVISOR/VM` is a VM of a registered hypervisor.

use std::path::PathBuf;

use anyhow::bail;

use crate::hypervisor::VmRef;

/// A backup source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BackupTarget {
    Local,
    Vm(VmRef),
}

impl BackupTarget {
    /// The name snapshots record as their source.
    pub(crate) fn source(&self) -> String {
        match self {
            BackupTarget::Local => "local".into(),
            BackupTarget::Vm(v) => v.to_string(),
        }
    }
}

/// A restore destination.
#[derive(Debug, PartialEq)]
pub(crate) enum RestoreTo {
    /// Back to the original place on this machine.
    LocalOriginal,
    /// Below a directory on this machine.
    LocalDir(PathBuf),
    /// Into a VM: the original place, or below a directory of the guest.
    Vm { vm: VmRef, dir: Option<String> },
}

pub(crate) fn backup_target(s: &str) -> anyhow::Result<BackupTarget> {
    if s == "local" {
        return Ok(BackupTarget::Local);
    }
    match VmRef::parse(s)? {
        Some(vm) => Ok(BackupTarget::Vm(vm)),
        None => bail!("unknown backup target {s:?}: use `local` or `HYPERVISOR/VM`"),
    }
}

pub(crate) fn restore_to(s: &str) -> anyhow::Result<RestoreTo> {
    let (target, dir) = match s.split_once(':') {
        Some((t, d)) => (t, Some(d)),
        None => (s, None),
    };
    if let Some(d) = dir {
        if d.is_empty() {
            bail!("empty directory in restore destination {s:?}");
        }
    }
    if target == "local" {
        return Ok(match dir {
            None => RestoreTo::LocalOriginal,
            Some(d) => RestoreTo::LocalDir(PathBuf::from(d)),
        });
    }
    let Some(vm) = VmRef::parse(target)? else {
        bail!("unknown restore destination {s:?}: use `local`, `local:DIR`, `HYPERVISOR/VM` or `HYPERVISOR/VM:DIR`");
    };
    if let Some(d) = dir {
        if !d.starts_with('/') {
            bail!("a directory in a VM must be absolute: {d:?}");
        }
    }
    Ok(RestoreTo::Vm {
        vm,
        dir: dir.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_destinations() {
        assert_eq!(restore_to("local").unwrap(), RestoreTo::LocalOriginal);
        assert_eq!(
            restore_to("local:/tmp/x").unwrap(),
            RestoreTo::LocalDir("/tmp/x".into())
        );
        assert!(restore_to("local:").is_err());
        let vm = VmRef {
            hypervisor: "hv".into(),
            vm: "vm".into(),
        };
        assert_eq!(
            restore_to("hv/vm").unwrap(),
            RestoreTo::Vm {
                vm: vm.clone(),
                dir: None
            }
        );
        assert_eq!(
            restore_to("hv/vm:/restore").unwrap(),
            RestoreTo::Vm {
                vm: vm.clone(),
                dir: Some("/restore".into())
            }
        );
        assert!(restore_to("hv/vm:relative").is_err());
        assert!(restore_to("elsewhere").is_err());
        assert_eq!(backup_target("local").unwrap(), BackupTarget::Local);
        assert_eq!(backup_target("hv/vm").unwrap(), BackupTarget::Vm(vm));
        assert!(backup_target("elsewhere").is_err());
    }
}
