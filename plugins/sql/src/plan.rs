//! What a job of the SQL plugin needs, from its ids and options:
//!
//! - a `postgresql://USER@IP:PORT/…` id: a connection to exactly `IP:PORT`;
//! - an `sqlite:///PATH` id: its directory, where its journal or WAL lives
//!   too, read for discover and backup, read-write for a restore (of the id
//!   the item is restored as, after renaming), with ownership;
//! - `password-file`: that file alone, read;
//! - `discover` without a scope: the `server` option's address;
//! - `discover` of a `sqlite:///DIR/` scope: that directory, read.

use attache_plugin_sdk::{preopens, AccessPlan, Operation, PlanRequest, PluginError};

use crate::ids::Id;
use crate::options;

pub(crate) fn plan(request: &PlanRequest) -> Result<AccessPlan, PluginError> {
    let opts = &request.options;
    options::check(opts)?;
    let mut plan = AccessPlan::new();
    if let Some(file) = options::get(opts, "password-file") {
        preopens::components(file)?;
        plan = plan.read(file, "password-file option");
    }
    let restore = request.operation == Operation::Restore;
    let mut ids: Vec<String> = request.selection.iter().map(|s| s.id.clone()).collect();
    if restore {
        if let Some(dest) = &request.destination {
            ids = ids.iter().map(|id| crate::restore_id(id, dest)).collect();
        }
    }
    if ids.is_empty() && request.operation == Operation::Discover {
        if let Some(server) = options::get(opts, "server") {
            ids.push(server.to_owned());
        }
    }
    let below_dir = matches!(
        request.destination,
        Some(attache_plugin_sdk::RestoreDestination::Alternate(_))
    );
    for id in &ids {
        if request.operation == Operation::Discover {
            if let Some(dir) = crate::ids::sqlite_dir(id) {
                let dir = dir.map_err(PluginError::InvalidRequest)?;
                plan = plan.read(dir, format!("the SQLite databases in {id}"));
                continue;
            }
        }
        plan = match crate::parse(id)? {
            Id::Pg(_) if restore && below_dir => {
                return Err(PluginError::InvalidRequest(format!(
                    "{id} lives in a database server, not below a directory: restore it \
                     in place (--to local or the VM), or under another id with --as NEW_ID"
                )))
            }
            Id::Pg(pg) => plan.connect(pg.addr.to_string(), format!("PostgreSQL server of {id}")),
            Id::Sqlite(path) => {
                let dir = preopens::parent(&path)?;
                if restore {
                    plan.read_write(dir, format!("restoring {id} and its journal"))
                        .ownership()
                } else {
                    plan.read(dir, format!("{id} with its journal or WAL"))
                }
            }
        };
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use attache_plugin_sdk::{PathAccess, RestoreDestination, Selected};

    fn request(op: Operation, ids: &[&str], options: &[(&str, &str)]) -> PlanRequest {
        PlanRequest {
            operation: op,
            selection: ids
                .iter()
                .map(|id| Selected {
                    id: id.to_string(),
                    kind: None,
                })
                .collect(),
            destination: None,
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn postgresql_ids_connect_to_exactly_their_address() {
        let p = plan(&request(
            Operation::Backup,
            &[
                "postgresql://app@127.0.0.1:5433/shop",
                "postgresql://app@127.0.0.1:5433/shop/public.t",
                "postgresql://app@[::1]/db",
            ],
            &[("password", "x")],
        ))
        .unwrap();
        let addrs: Vec<&str> = p.connect.iter().map(|n| n.address.as_str()).collect();
        assert_eq!(addrs, vec!["127.0.0.1:5433", "[::1]:5432"]);
        assert!(p.paths.is_empty());
        assert!(plan(&request(
            Operation::Backup,
            &["postgresql://a@127.0.0.1:0/d"],
            &[]
        ))
        .is_err());
        assert!(plan(&request(
            Operation::Backup,
            &["postgresql://a@db.example/d"],
            &[]
        ))
        .is_err());
        assert!(plan(&request(Operation::Backup, &[], &[("passwd", "x")])).is_err());
    }

    #[test]
    fn sqlite_ids_need_their_directory() {
        let p = plan(&request(
            Operation::Backup,
            &["sqlite:///srv/app/data.db"],
            &[("password-file", "/etc/pg.pass")],
        ))
        .unwrap();
        let paths: Vec<(&str, PathAccess)> = p
            .paths
            .iter()
            .map(|n| (n.path.as_str(), n.access))
            .collect();
        assert_eq!(
            paths,
            vec![
                ("/etc/pg.pass", PathAccess::Read),
                ("/srv/app", PathAccess::Read)
            ]
        );
        let mut r = request(Operation::Restore, &["sqlite:///srv/app/data.db"], &[]);
        r.destination = Some(RestoreDestination::Renamed(vec![(
            "sqlite:///srv/app/data.db".into(),
            "sqlite:///srv/copy/data.db".into(),
        )]));
        let p = plan(&r).unwrap();
        assert_eq!(p.paths[0].path, "/srv/copy");
        assert_eq!(p.paths[0].access, PathAccess::ReadWrite);
        assert!(p.ownership);
    }

    #[test]
    fn discover_without_scope_asks_for_the_server() {
        let p = plan(&request(
            Operation::Discover,
            &[],
            &[("server", "postgresql://app@10.0.0.5:6432")],
        ))
        .unwrap();
        assert_eq!(p.connect[0].address, "10.0.0.5:6432");
    }

    #[test]
    fn a_sqlite_directory_is_read_for_discover_only() {
        let p = plan(&request(Operation::Discover, &["sqlite:///srv/app/"], &[])).unwrap();
        let paths: Vec<(&str, PathAccess)> = p
            .paths
            .iter()
            .map(|n| (n.path.as_str(), n.access))
            .collect();
        assert_eq!(paths, vec![("/srv/app", PathAccess::Read)]);
        assert!(plan(&request(Operation::Discover, &["sqlite:///srv/../"], &[])).is_err());
        assert!(plan(&request(Operation::Backup, &["sqlite:///srv/app/"], &[])).is_err());
    }

    #[test]
    fn postgresql_items_are_not_restored_below_a_directory() {
        let mut r = request(
            Operation::Restore,
            &["postgresql://app@127.0.0.1:5432/shop"],
            &[],
        );
        r.destination = Some(RestoreDestination::Alternate("/tmp/x".into()));
        assert!(matches!(plan(&r), Err(PluginError::InvalidRequest(_))));
        r.destination = Some(RestoreDestination::Original);
        assert!(plan(&r).is_ok());
    }
}
