//! An operator's scope: the targets it may run jobs on (globs over target
//! names) and the directories it may restore below. Admins have no bounds;
//! auditors run nothing.

use std::path::{Component, Path};

use super::{Principal, Role};
use crate::jobs::discover::DiscoverRequest;
use crate::jobs::{BackupRequest, RestoreRequest};
use crate::target::{self, RestoreTo};

/// Why a principal may not do something (the server's 403).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Denied(pub String);

/// `*` any run of characters (`/` too), `?` one character, the rest
/// literally.
pub(crate) fn glob_matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Classic two-pointer wildcard match with backtracking to the last `*`.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// Checks a restore prefix given at token creation: absolute, no `.` or
/// `..`, so that "below it" means what it says.
pub(crate) fn check_prefix(p: &str) -> Result<(), Denied> {
    let path = Path::new(p);
    if !path.is_absolute() {
        return Err(Denied(format!(
            "restore prefix {p:?} must be an absolute path"
        )));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(Denied(format!(
            "restore prefix {p:?} must not contain `.` or `..`"
        )));
    }
    Ok(())
}

impl Principal {
    fn operator_target(&self, target: &str, what: &str) -> Result<(), Denied> {
        if self.targets.iter().any(|g| glob_matches(g, target)) {
            Ok(())
        } else {
            Err(Denied(format!(
                "token {} (operator) may not {what} target {target:?}: its targets are {:?}",
                self.id, self.targets
            )))
        }
    }

    /// Why an auditor may not start a job.
    fn auditor_starts_nothing(&self) -> Denied {
        Denied(format!(
            "token {} is an auditor: it reads, and starts no job",
            self.id
        ))
    }

    /// May this principal run `backup`?
    pub(crate) fn may_backup(&self, b: &BackupRequest) -> Result<(), Denied> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Auditor => Err(self.auditor_starts_nothing()),
            Role::Operator => {
                self.no_server_files(&b.app_password_file)?;
                self.operator_target(&b.target, "back up")
            }
        }
    }

    /// May this principal run `restore`? Operators: on their targets, and
    /// only below their prefixes (a restore to the original place counts
    /// as a restore below `/`).
    pub(crate) fn may_restore(&self, r: &RestoreRequest) -> Result<(), Denied> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Auditor => Err(self.auditor_starts_nothing()),
            Role::Operator => {
                self.no_server_files(&r.app_password_file)?;
                let to = target::restore_to(&r.to).map_err(|e| Denied(e.to_string()))?;
                let (name, dir) = match &to {
                    RestoreTo::LocalOriginal => ("local".to_owned(), "/".to_owned()),
                    RestoreTo::LocalDir(d) => {
                        ("local".to_owned(), d.to_string_lossy().into_owned())
                    }
                    RestoreTo::Vm { vm, dir } => {
                        (vm.to_string(), dir.clone().unwrap_or_else(|| "/".into()))
                    }
                };
                self.operator_target(&name, "restore to")?;
                if check_prefix(&dir).is_err() {
                    return Err(Denied(format!(
                        "token {} (operator) may restore only to an absolute directory without `..`, not {dir:?}",
                        self.id
                    )));
                }
                if self
                    .restore_to
                    .iter()
                    .any(|p| Path::new(&dir).starts_with(Path::new(p)))
                {
                    Ok(())
                } else {
                    Err(Denied(format!(
                        "token {} (operator) may not restore to {dir:?}: only below {:?}{}",
                        self.id,
                        self.restore_to,
                        if r.to.contains(':') {
                            ""
                        } else {
                            " (without `:DIR` a restore goes to the original place, /)"
                        }
                    )))
                }
            }
        }
    }

    /// May this principal verify the repository? Admins and operators
    /// (whatever their targets: a verify reads the whole repository and
    /// changes nothing but the damage record); auditors read the results.
    pub(crate) fn may_verify(&self) -> Result<(), Denied> {
        match self.role {
            Role::Admin | Role::Operator => Ok(()),
            Role::Auditor => Err(self.auditor_starts_nothing()),
        }
    }

    /// May this principal run `discover`? Operators: on their targets, as
    /// a backup (a discovery reads what a backup of the VM would).
    pub(crate) fn may_discover(&self, d: &DiscoverRequest) -> Result<(), Denied> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Auditor => Err(self.auditor_starts_nothing()),
            Role::Operator => {
                self.no_server_files(&d.app_password_file)?;
                self.operator_target(&d.target, "discover in")
            }
        }
    }

    /// May this principal cancel a job on `target`?
    pub(crate) fn may_cancel(&self, target: &str) -> Result<(), Denied> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Auditor => Err(Denied(format!(
                "token {} is an auditor: it changes nothing",
                self.id
            ))),
            Role::Operator => self.operator_target(target, "cancel a job on"),
        }
    }

    /// Operators name no file on the server: a password file would let
    /// them hand any file the server can read to a plugin.
    fn no_server_files(&self, f: &Option<std::path::PathBuf>) -> Result<(), Denied> {
        match f {
            Some(_) => Err(Denied(format!(
                "token {} (operator) may not name a file on the server (app_password_file); send app_password",
                self.id
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(targets: &[&str], prefixes: &[&str]) -> Principal {
        Principal {
            id: "t".into(),
            role: Role::Operator,
            targets: targets.iter().map(|s| s.to_string()).collect(),
            restore_to: prefixes.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn restore(to: &str) -> RestoreRequest {
        serde_json::from_value(serde_json::json!({ "snapshot": "x", "to": to })).unwrap()
    }

    #[test]
    fn globs() {
        assert!(glob_matches("hv1/*", "hv1/vm1"));
        assert!(glob_matches("*", "local"));
        assert!(glob_matches("hv?/vm1", "hv2/vm1"));
        assert!(!glob_matches("hv1/*", "hv2/vm1"));
        assert!(!glob_matches("local", "localx"));
        assert!(glob_matches("a*b*c", "aXXbYc"));
        assert!(!glob_matches("a*b*c", "aXXbY"));
    }

    #[test]
    fn restores_stay_below_prefixes() {
        let o = op(&["local", "hv1/*"], &["/srv/restore"]);
        assert!(o.may_restore(&restore("local:/srv/restore/a")).is_ok());
        assert!(o.may_restore(&restore("local:/srv/restore")).is_ok());
        assert!(o.may_restore(&restore("hv1/vm1:/srv/restore/x")).is_ok());
        assert!(o.may_restore(&restore("local:/srv/restorex")).is_err());
        assert!(o
            .may_restore(&restore("local:/srv/restore/../etc"))
            .is_err());
        assert!(o.may_restore(&restore("local:rel")).is_err());
        assert!(o.may_restore(&restore("local")).is_err());
        assert!(o.may_restore(&restore("hv2/vm1:/srv/restore")).is_err());
        assert!(op(&["local"], &["/"])
            .may_restore(&restore("local"))
            .is_ok());
    }
}
