//! Checking a backup policy before it is stored: its name, selectors,
//! plugin, includes, options and schedule.

use thiserror::Error;

use crate::db::PolicyRecord;

/// Why a policy is refused (the API's 400).
#[derive(Debug, Error)]
#[error("policy {name:?}: {why}")]
pub(crate) struct Invalid {
    pub name: String,
    pub why: String,
}

/// The most times a policy's interrupted job is run again.
pub(crate) const MAX_RETRIES: u32 = 10;

/// The prefix of tag selectors.
pub(crate) const TAG: &str = "tag:";

/// Checks a tag: the characters of hypervisor and VM names.
pub(crate) fn check_tag(tag: &str) -> anyhow::Result<()> {
    crate::hypervisor::check_name("tag", tag)
}

/// Checks `p`; its schedule's next run is then computable.
pub(crate) fn check(p: &PolicyRecord) -> Result<(), Invalid> {
    let bad = |why: String| Invalid {
        name: p.name.clone(),
        why,
    };
    crate::hypervisor::check_name("policy", &p.name).map_err(|e| bad(e.to_string()))?;
    if p.vms.is_empty() {
        return Err(bad("select VMs with --vms (HV/VM globs or tag:NAME)".into()));
    }
    for s in &p.vms {
        match s.strip_prefix(TAG) {
            Some(tag) => check_tag(tag).map_err(|e| bad(e.to_string()))?,
            None => {
                let ok = s.split_once('/').is_some_and(|(h, v)| {
                    !h.is_empty() && !v.is_empty() && !v.contains('/') && s.len() <= 200
                });
                if !ok {
                    return Err(bad(format!(
                        "VM selector {s:?}: expected HV/VM (globs with * and ?) or tag:NAME"
                    )));
                }
            }
        }
    }
    guest_runner::manifest::check_name(&p.plugin).map_err(|e| bad(e.to_string()))?;
    if p.include.is_empty() {
        return Err(bad("a policy needs at least one --include".into()));
    }
    for i in &p.include {
        if !i.contains("://") && !i.starts_with('/') {
            return Err(bad(format!(
                "include {i:?}: paths in a VM must be absolute"
            )));
        }
    }
    if p.retries > MAX_RETRIES {
        return Err(bad(format!("retries {}: at most {MAX_RETRIES}", p.retries)));
    }
    for k in p.options.keys() {
        if k.is_empty() || k.contains('=') {
            return Err(bad(format!("option key {k:?}")));
        }
    }
    super::schedule::Schedule::parse(&p.schedule).map_err(|e| bad(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PolicyRecord {
        PolicyRecord {
            name: "nightly".into(),
            vms: vec!["hv1/*".into(), "tag:db".into()],
            plugin: "filesystem".into(),
            include: vec!["/data".into()],
            options: Default::default(),
            schedule: "0 3 * * *".into(),
            keep: Default::default(),
            retries: 0,
            created: 0,
            last_fired: None,
        }
    }

    #[test]
    fn refuses_what_cannot_run() {
        check(&policy()).unwrap();
        for (f, want) in [
            (
                (|p: &mut PolicyRecord| p.name = "a b".into()) as fn(&mut PolicyRecord),
                "invalid policy name",
            ),
            (|p| p.vms = vec![], "select VMs"),
            (|p| p.vms = vec!["vm1".into()], "expected HV/VM"),
            (|p| p.vms = vec!["tag:".into()], "invalid tag name"),
            (|p| p.include = vec!["data".into()], "must be absolute"),
            (|p| p.schedule = "every day".into(), "schedule"),
            (|p| p.plugin = "../x".into(), "plugin"),
        ] {
            let mut p = policy();
            f(&mut p);
            let e = check(&p).unwrap_err().to_string();
            assert!(e.contains(want), "{e} should say {want}");
        }
    }
}
