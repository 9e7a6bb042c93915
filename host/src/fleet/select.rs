//! Which VMs a policy's selectors name: `HV/VM` globs over the VMs the
//! registered hypervisors have now, and `tag:NAME` over the VMs tagged so
//! (`attache vm tag`). A hypervisor whose VMs cannot be listed is reported
//! and the others are still selected.

use std::collections::BTreeSet;

use crate::access::scope::glob_matches;
use crate::hypervisor::registry::Hypervisor;

use super::check::TAG;

/// What a selection found.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Selection {
    /// `HV/VM`, sorted, each once.
    pub targets: Vec<String>,
    /// Hypervisors whose VMs could not be listed, with why.
    pub unreachable: Vec<(String, String)>,
}

/// The VMs of `known` (`HV/VM` names of existing VMs) that `selectors`
/// name, given `tags` (`HV/VM` with its tags). A tagged VM that no
/// hypervisor has now is not selected.
pub(crate) fn matching(
    selectors: &[String],
    known: &[String],
    tags: &[(String, Vec<String>)],
) -> Vec<String> {
    let mut out = BTreeSet::new();
    for s in selectors {
        match s.strip_prefix(TAG) {
            Some(tag) => {
                for (target, t) in tags {
                    if t.iter().any(|x| x == tag) && known.contains(target) {
                        out.insert(target.clone());
                    }
                }
            }
            None => {
                for k in known {
                    if glob_matches(s, k) {
                        out.insert(k.clone());
                    }
                }
            }
        }
    }
    out.into_iter().collect()
}

/// The VMs of `hypervisors` that `selectors` name.
pub(crate) fn select(
    selectors: &[String],
    hypervisors: &[Hypervisor],
    tags: &[(String, Vec<String>)],
) -> Selection {
    let mut known = Vec::new();
    let mut unreachable = Vec::new();
    for hv in hypervisors {
        match hv.vms() {
            Ok(vms) => known.extend(vms.into_iter().map(|v| format!("{}/{}", hv.name, v.name))),
            Err(e) => unreachable.push((hv.name.clone(), format!("{e:#}"))),
        }
    }
    Selection {
        targets: matching(selectors, &known, tags),
        unreachable,
    }
}

/// The datastore a VM's container is attached from: the first of its
/// hypervisor's datastores that reaches it (as `datastore::for_vm` picks),
/// named by its directory.
pub(crate) fn datastore_of(hv: &Hypervisor, vm: &str) -> Option<String> {
    hv.datastores
        .iter()
        .find(|d| d.reaches(vm))
        .map(|d| d.dir.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn globs_and_tags_select_existing_vms_once() {
        let known = s(&["hv1/web1", "hv1/web2", "hv1/db1", "hv2/db2", "hv2/mail"]);
        let tags = vec![
            ("hv2/db2".to_owned(), s(&["db"])),
            ("hv1/db1".to_owned(), s(&["db", "prod"])),
            ("hv9/gone".to_owned(), s(&["db"])),
        ];
        assert_eq!(
            matching(&s(&["hv1/web*", "tag:db"]), &known, &tags),
            s(&["hv1/db1", "hv1/web1", "hv1/web2", "hv2/db2"])
        );
        assert_eq!(matching(&s(&["*/*"]), &known, &tags).len(), 5);
        assert_eq!(
            matching(&s(&["tag:prod", "hv1/db?"]), &known, &tags),
            s(&["hv1/db1"])
        );
        assert!(matching(&s(&["tag:none", "hv3/*"]), &known, &tags).is_empty());
    }
}
