//! The SQL plugin: application-consistent, granular backup and restore of
//! PostgreSQL databases and tables, and of SQLite database files.
//!
//! PostgreSQL is reached over TCP at an address the job grants, through the
//! frontend/backend protocol v3 spoken here (`pg/`); no libpq. SQLite files
//! are read through the preopened directories the job grants, with an
//! optimistic protocol that needs no locks (`sqlite/`); no libsqlite3.
//! See README.md for item ids, content formats and what quiesce holds.

mod crypto;
mod ids;
mod metadata;
mod options;
mod pg;
mod plan;
mod sqlite;

use attache_plugin_sdk::prelude::*;
use attache_plugin_sdk::source as restore_source;
use ids::{Id, PgId};

struct Sql;

pub(crate) fn parse(id: &str) -> Result<Id, PluginError> {
    ids::parse(id).map_err(PluginError::InvalidRequest)
}

/// Splits a selection into PostgreSQL ids and SQLite paths.
fn split(selection: &[String]) -> Result<(Vec<PgId>, Vec<String>), PluginError> {
    let mut pg = Vec::new();
    let mut lite = Vec::new();
    for s in selection {
        match parse(s)? {
            Id::Pg(p) => pg.push(p),
            Id::Sqlite(p) => lite.push(p),
        }
    }
    Ok((pg, lite))
}

fn empty() -> Summary {
    Summary::default()
}

/// The id an item is restored as: its own, or what a rename maps it (or a
/// parent of it, such as its database) to.
pub(crate) fn restore_id(id: &str, dest: &RestoreDestination) -> String {
    let RestoreDestination::Renamed(map) = dest else {
        return id.to_owned();
    };
    if let Some((_, to)) = map.iter().find(|(from, _)| from == id) {
        return to.clone();
    }
    map.iter()
        .filter(|(from, _)| {
            id.len() > from.len()
                && id.starts_with(from.as_str())
                && id.as_bytes()[from.len()] == b'/'
        })
        .max_by_key(|(from, _)| from.len())
        .map(|(from, to)| format!("{to}{}", &id[from.len()..]))
        .unwrap_or_else(|| id.to_owned())
}

impl Plugin for Sql {
    fn info() -> PluginInfo {
        let info = PluginInfo::new(
            "sql",
            env!("CARGO_PKG_VERSION"),
            ApplicationKind::Database,
            "PostgreSQL databases and tables (wire protocol), SQLite database files",
        )
        .quiesces();
        options::specs().into_iter().fold(info, PluginInfo::option)
    }

    fn plan(request: PlanRequest) -> Result<AccessPlan, PluginError> {
        plan::plan(&request)
    }

    fn discover(
        scope: Option<String>,
        depth: u32,
        options: OptionList,
    ) -> Result<Vec<CatalogEntry>, PluginError> {
        options::check(&options)?;
        if let Some(dir) = scope.as_deref().and_then(ids::sqlite_dir) {
            return sqlite::discover_dir(&dir.map_err(PluginError::InvalidRequest)?, depth);
        }
        let scope = match scope {
            Some(s) => s,
            None => match options::get(&options, "server") {
                Some(s) => s.to_owned(),
                // SQLite files are named by the job; there is no server to ask.
                None => return Ok(Vec::new()),
            },
        };
        match parse(&scope)? {
            Id::Pg(id) => {
                let pw = options::password(&options)?;
                pg::discover::discover(&id, depth, pw.as_deref())
            }
            Id::Sqlite(path) => sqlite::discover(&path),
        }
    }

    /// Opens the PostgreSQL snapshots the backup reads. They live in this
    /// instance's connections: if it dies, the server ends them with the
    /// connections, so the state only says what was held, for the log.
    fn quiesce(selection: Vec<String>, options: OptionList) -> Result<String, PluginError> {
        options::check(&options)?;
        let (pg_ids, _lite) = split(&selection)?;
        // SQLite needs nothing held: its copy protocol checks instead (README).
        if pg_ids.is_empty() {
            return Ok(String::new());
        }
        let pw = options::password(&options)?;
        pg::dump::quiesce(&pg_ids, pw.as_deref())?;
        Ok(format!("postgresql snapshots: {}", pg_ids.len()))
    }

    /// Ends the snapshots this instance holds; in a fresh instance there
    /// are none, and nothing is left to release.
    fn thaw(_state: String, _options: OptionList) -> Result<(), PluginError> {
        pg::dump::thaw()
    }

    fn backup(request: BackupRequest) -> Result<Summary, PluginError> {
        options::check(&request.options)?;
        let (pg_ids, lite) = split(&request.selection)?;
        let mut summary = empty();
        for path in &lite {
            sqlite::backup::backup(path, &mut summary)?;
        }
        if !pg_ids.is_empty() {
            let pw = options::password(&request.options)?;
            pg::dump::backup(&pg_ids, pw.as_deref(), &mut summary)?;
        }
        Ok(summary)
    }

    fn restore(request: RestoreRequest) -> Result<Summary, PluginError> {
        options::check(&request.options)?;
        let mut summary = empty();
        let mut pg_restore: Option<pg::restore::Restore> = None;
        let result = (|| {
            while let Some((item, content)) = restore_source::next()? {
                let target = restore_id(&item.id, &request.destination);
                match (parse(&item.id)?, parse(&target)?) {
                    (Id::Pg(_), Id::Pg(t)) => {
                        if pg_restore.is_none() {
                            let pw = options::password(&request.options)?;
                            pg_restore = Some(pg::restore::Restore::new(request.overwrite, pw));
                        }
                        if let Some(r) = pg_restore.as_mut() {
                            r.item(&item, &t, &content, &mut summary)?;
                        }
                    }
                    (Id::Sqlite(_), Id::Sqlite(path)) => {
                        sqlite::restore::restore(
                            &item,
                            &path,
                            &content,
                            request.overwrite,
                            &mut summary,
                        )?;
                    }
                    _ => {
                        return Err(PluginError::InvalidRequest(format!(
                            "{} cannot be restored as {target}: another engine",
                            item.id
                        )))
                    }
                }
            }
            Ok(())
        })();
        match (result, pg_restore) {
            (Ok(()), Some(r)) => r.finish()?,
            (Ok(()), None) => {}
            (Err(e), Some(mut r)) => {
                r.abort();
                return Err(e);
            }
            (Err(e), None) => return Err(e),
        }
        Ok(summary)
    }
}

export_plugin!(Sql);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_follow_parents() {
        let map = RestoreDestination::Renamed(vec![
            (
                "postgresql://u@127.0.0.1:5432/shop".into(),
                "postgresql://u@127.0.0.1:5432/shop2".into(),
            ),
            (
                "postgresql://u@127.0.0.1:5432/shop/public.orders".into(),
                "postgresql://u@127.0.0.1:5432/shop/public.orders_old".into(),
            ),
        ]);
        assert_eq!(
            restore_id("postgresql://u@127.0.0.1:5432/shop/public.items", &map),
            "postgresql://u@127.0.0.1:5432/shop2/public.items"
        );
        assert_eq!(
            restore_id("postgresql://u@127.0.0.1:5432/shop/public.orders", &map),
            "postgresql://u@127.0.0.1:5432/shop/public.orders_old"
        );
        assert_eq!(
            restore_id("postgresql://u@127.0.0.1:5432/shopping", &map),
            "postgresql://u@127.0.0.1:5432/shopping"
        );
        assert_eq!(
            restore_id("sqlite:///a.db", &RestoreDestination::Original),
            "sqlite:///a.db"
        );
    }
}
