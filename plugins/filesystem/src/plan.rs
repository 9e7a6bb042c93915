//! What a job of the filesystem plugin needs: the paths its ids name.
//!
//! - discover: the scope, read (without a scope, `/`);
//! - backup: each selected path exactly, read (a file alone, not its
//!   directory), nested selections collapsed into the outer one;
//! - restore: each top item itself if it is a directory, else its parent,
//!   read-write, and the right to set owners and permission bits.

use attache_plugin_sdk::{preopens, RestoreDestination};
use attache_plugin_sdk::{AccessPlan, ItemKind, Operation, PlanRequest, PluginError};

use crate::backup::normalized;

pub(crate) fn plan(request: &PlanRequest) -> Result<AccessPlan, PluginError> {
    let ids: Vec<String> = request.selection.iter().map(|s| s.id.clone()).collect();
    match request.operation {
        Operation::Discover => {
            let scope = normalized(&ids)?.into_iter().next();
            Ok(AccessPlan::new().read(scope.unwrap_or_else(|| "/".into()), "the tree to list"))
        }
        Operation::Backup => Ok(normalized(&ids)?
            .into_iter()
            .fold(AccessPlan::new(), |p, id| p.read(id, "selected for backup"))),
        Operation::Restore => {
            if let Some(RestoreDestination::Renamed(_)) = request.destination {
                return Err(PluginError::invalid(
                    "files cannot be restored under other ids; restore them to an alternate directory",
                ));
            }
            let mut targets = Vec::new();
            for s in &request.selection {
                targets.push(match s.kind {
                    Some(ItemKind::Directory) => normalized(std::slice::from_ref(&s.id))?
                        .into_iter()
                        .next()
                        .unwrap_or_else(|| "/".into()),
                    _ => preopens::parent(&s.id)?,
                });
            }
            Ok(normalized(&targets)?
                .into_iter()
                .fold(AccessPlan::new().ownership(), |p, dir| {
                    p.read_write(dir, "where restored items go")
                }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attache_plugin_sdk::{PathAccess, Selected};

    fn request(op: Operation, sel: &[(&str, Option<ItemKind>)]) -> PlanRequest {
        PlanRequest {
            operation: op,
            selection: sel
                .iter()
                .map(|(id, kind)| Selected {
                    id: id.to_string(),
                    kind: *kind,
                })
                .collect(),
            destination: None,
            options: vec![],
        }
    }

    fn paths(p: &AccessPlan) -> Vec<(&str, PathAccess)> {
        p.paths
            .iter()
            .map(|n| (n.path.as_str(), n.access))
            .collect()
    }

    #[test]
    fn backup_reads_exactly_what_is_selected() {
        let p = plan(&request(
            Operation::Backup,
            &[("/etc/hostname", None), ("/srv", None), ("/srv/a", None)],
        ))
        .unwrap();
        assert_eq!(
            paths(&p),
            vec![
                ("/etc/hostname", PathAccess::Read),
                ("/srv", PathAccess::Read)
            ]
        );
        assert!(!p.ownership && p.connect.is_empty());
        assert!(plan(&request(Operation::Backup, &[("srv", None)])).is_err());
    }

    #[test]
    fn restore_writes_directories_or_parents() {
        let p = plan(&request(
            Operation::Restore,
            &[
                ("/srv/a", Some(ItemKind::Directory)),
                ("/etc/hostname", Some(ItemKind::File)),
                ("/srv/a/b", Some(ItemKind::File)),
            ],
        ))
        .unwrap();
        assert_eq!(
            paths(&p),
            vec![
                ("/etc", PathAccess::ReadWrite),
                ("/srv/a", PathAccess::ReadWrite)
            ]
        );
        assert!(p.ownership);
        let mut renamed = request(Operation::Restore, &[("/a", None)]);
        renamed.destination = Some(RestoreDestination::Renamed(vec![]));
        assert!(plan(&renamed).is_err());
    }

    #[test]
    fn discover_reads_its_scope() {
        let p = plan(&request(Operation::Discover, &[])).unwrap();
        assert_eq!(paths(&p), vec![("/", PathAccess::Read)]);
        let p = plan(&request(Operation::Discover, &[("/srv", None)])).unwrap();
        assert_eq!(paths(&p), vec![("/srv", PathAccess::Read)]);
    }
}
