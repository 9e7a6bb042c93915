//! Restore of PostgreSQL databases and tables.
//!
//! Every target database gets one connection and one transaction for the
//! whole restore: tables are created, filled by `COPY ... FROM STDIN`
//! straight from the item's content, given their constraints, indexes and
//! sequence values, and foreign keys are added once every table is there.
//! Only then is anything committed; any failure rolls everything back, and
//! a database the restore created is dropped again. A table that exists is
//! an error unless overwrite was asked for, checked before it is touched.

use super::conn::Conn;
use super::connect;
use super::ddl::{self, Target};
use super::format::{self, TableHeader, TableReader};
use super::wire::{ident, literal};
use crate::ids::PgId;
use attache_plugin_sdk::host::{log, progress};
use attache_plugin_sdk::source::Content as ItemContent;
use attache_plugin_sdk::Summary;
use attache_plugin_sdk::{Item, ItemKind, Level, PluginError};

/// How much content is read per call.
const READ_PIECE: u32 = 1 << 20;

struct TargetDb {
    id: PgId,
    conn: Conn,
    /// `(table, constraint name, statement)` run at the end.
    foreign_keys: Vec<(String, String, String)>,
}

pub(crate) struct Restore {
    overwrite: bool,
    password: Option<String>,
    dbs: Vec<TargetDb>,
    /// Databases this restore created, dropped again if it fails.
    created: Vec<PgId>,
}

impl Restore {
    pub(crate) fn new(overwrite: bool, password: Option<String>) -> Restore {
        Restore {
            overwrite,
            password,
            dbs: Vec::new(),
            created: Vec::new(),
        }
    }

    /// Restores one item as `target`.
    pub(crate) fn item(
        &mut self,
        item: &Item,
        target: &PgId,
        content: &ItemContent,
        summary: &mut Summary,
    ) -> Result<(), PluginError> {
        match item.kind {
            ItemKind::Database => {
                let mut bytes = Vec::new();
                loop {
                    let piece = content.read(READ_PIECE)?;
                    if piece.is_empty() {
                        break;
                    }
                    bytes.extend_from_slice(&piece);
                }
                let h = format::parse_database(&bytes)
                    .map_err(|e| PluginError::InvalidRequest(format!("{}: {e}", item.id)))?;
                if target.schema.is_some() {
                    return Err(PluginError::InvalidRequest(format!(
                        "database item {} cannot be restored as {target}, which is not a database",
                        item.id
                    )));
                }
                self.ensure_database(target, &h.encoding)?;
                let db = self.db(target)?;
                for s in &h.schemas {
                    db.conn
                        .simple(&format!("CREATE SCHEMA IF NOT EXISTS {}", ident(s)))?;
                }
                summary.bytes += bytes.len() as u64;
            }
            ItemKind::Table => {
                let bytes = self.table(item, target, content)?;
                summary.bytes += bytes;
            }
            k => {
                return Err(PluginError::InvalidRequest(format!(
                    "{}: items of kind {k:?} are not PostgreSQL items",
                    item.id
                )))
            }
        }
        summary.items += 1;
        progress(summary.items, summary.bytes, None, None);
        Ok(())
    }

    /// Creates the target database when it does not exist.
    fn ensure_database(&mut self, target: &PgId, encoding: &str) -> Result<(), PluginError> {
        if self.dbs.iter().any(|d| d.id == *target) {
            return Ok(());
        }
        let name = target.database.clone().unwrap_or_default();
        let server = PgId {
            database: Some("postgres".into()),
            ..target.database_id()
        };
        let mut c = connect(&server, self.password.as_deref())?;
        let exists = !c
            .query(&format!(
                "SELECT 1 FROM pg_catalog.pg_database WHERE datname = {}",
                literal(&name)
            ))?
            .is_empty();
        if !exists {
            let enc = if encoding.is_empty() {
                "UTF8"
            } else {
                encoding
            };
            c.simple(&format!(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING {}",
                ident(&name),
                literal(enc)
            ))?;
            log(Level::Info, &format!("created database {target}"));
            self.created.push(target.database_id());
        }
        c.close();
        Ok(())
    }

    /// The open transaction on a target database.
    fn db(&mut self, target: &PgId) -> Result<&mut TargetDb, PluginError> {
        let id = target.database_id();
        if let Some(i) = self.dbs.iter().position(|d| d.id == id) {
            return Ok(&mut self.dbs[i]);
        }
        let mut conn = connect(&id, self.password.as_deref())?;
        conn.simple("BEGIN")?;
        self.dbs.push(TargetDb {
            id,
            conn,
            foreign_keys: Vec::new(),
        });
        Ok(self.dbs.last_mut().expect("just pushed"))
    }

    fn table(
        &mut self,
        item: &Item,
        target: &PgId,
        content: &ItemContent,
    ) -> Result<u64, PluginError> {
        let (Some(schema), Some(table)) = (target.schema.clone(), target.table.clone()) else {
            return Err(PluginError::InvalidRequest(format!(
                "table item {} cannot be restored as {target}, which is not a table",
                item.id
            )));
        };
        let bad = |e: String| PluginError::InvalidRequest(format!("{}: {e}", item.id));
        let mut reader = TableReader::new();
        let (header, first_rows, mut consumed) = read_header(&mut reader, content, bad)?;
        let overwrite = self.overwrite;
        let db = self.db(target)?;
        let qt = format!("{}.{}", ident(&schema), ident(&table));

        replace_existing(db, &schema, &table, &qt, overwrite)?;

        let plan = ddl::plan(
            &header.definition,
            &header.copy_columns,
            &Target {
                schema: schema.clone(),
                table: table.clone(),
            },
        );
        db.conn
            .simple(&format!("CREATE SCHEMA IF NOT EXISTS {}", ident(&schema)))?;
        for stmt in &plan.create {
            db.conn.simple(stmt)?;
        }
        let mut first = Some(first_rows);
        let mut failure: Option<PluginError> = None;
        let rows = db.conn.copy_in(&plan.copy, || {
            if let Some(rows) = first.take() {
                if !rows.is_empty() {
                    return Ok(Some(rows));
                }
            }
            loop {
                let piece = content.read(READ_PIECE)?;
                if piece.is_empty() {
                    return Ok(None);
                }
                consumed += piece.len() as u64;
                match reader.feed(&piece) {
                    Ok(fed) if !fed.rows.is_empty() => return Ok(Some(fed.rows)),
                    Ok(_) => {}
                    Err(e) => {
                        let err = bad(e);
                        failure = Some(err.clone());
                        return Err(err);
                    }
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        let rows = rows?;
        let trailer = reader.finish().map_err(bad)?;
        if trailer.rows != rows {
            return Err(bad(format!(
                "the backup holds {} row(s) but COPY loaded {rows}",
                trailer.rows
            )));
        }
        for stmt in &plan.finish {
            db.conn.simple(stmt)?;
        }
        for fk in plan.foreign_keys {
            db.foreign_keys.push((qt.clone(), String::new(), fk));
        }
        log(
            Level::Info,
            &format!("{} -> {target}: {rows} row(s)", item.id),
        );
        Ok(consumed)
    }

    /// Adds the foreign keys and commits every target database.
    pub(crate) fn finish(mut self) -> Result<(), PluginError> {
        let result = (|| {
            for db in &mut self.dbs {
                for (table, name, stmt) in std::mem::take(&mut db.foreign_keys) {
                    if !name.is_empty() {
                        // A key of a table this restore replaced is already back.
                        let there = db.conn.query(&format!(
                            "SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = {}::pg_catalog.regclass AND conname = {}",
                            literal(&table),
                            literal(&name)
                        ))?;
                        if !there.is_empty() {
                            continue;
                        }
                    }
                    db.conn.simple(&stmt)?;
                }
            }
            for db in &mut self.dbs {
                db.conn.simple("COMMIT")?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                for db in self.dbs.drain(..) {
                    db.conn.close();
                }
                Ok(())
            }
            Err(e) => {
                self.abort();
                Err(e)
            }
        }
    }

    /// Rolls everything back and drops the databases this restore made.
    pub(crate) fn abort(&mut self) {
        for mut db in self.dbs.drain(..) {
            let _ = db.conn.simple("ROLLBACK");
            db.conn.close();
        }
        for id in self.created.drain(..) {
            let server = PgId {
                database: Some("postgres".into()),
                ..id.clone()
            };
            if let Ok(mut c) = connect(&server, self.password.as_deref()) {
                let name = id.database.clone().unwrap_or_default();
                match c.simple(&format!("DROP DATABASE IF EXISTS {}", ident(&name))) {
                    Ok(()) => log(
                        Level::Info,
                        &format!("dropped {id} again: the restore failed"),
                    ),
                    Err(e) => log(
                        Level::Warn,
                        &format!("could not drop {id} after the failed restore: {e:?}"),
                    ),
                }
                c.close();
            }
        }
    }
}

/// Reads a table item's content up to its header: the header, the rows
/// that came with it, and the bytes read.
fn read_header(
    reader: &mut TableReader,
    content: &ItemContent,
    bad: impl Fn(String) -> PluginError,
) -> Result<(TableHeader, Vec<u8>, u64), PluginError> {
    let mut consumed = 0u64;
    let mut first_rows = Vec::new();
    loop {
        let piece = content.read(READ_PIECE)?;
        if piece.is_empty() {
            return Err(bad("the content ends before the table header".into()));
        }
        consumed += piece.len() as u64;
        let fed = reader.feed(&piece).map_err(&bad)?;
        first_rows.extend_from_slice(&fed.rows);
        if let Some(h) = fed.header {
            return Ok((h, first_rows, consumed));
        }
    }
}

/// Before anything changes: a table `schema.table` (quoted `qt`) that
/// exists is an error without `overwrite`, and not a table is never
/// replaced; with it, the foreign keys of other tables that point at it are
/// kept for the end, and it is dropped.
fn replace_existing(
    db: &mut TargetDb,
    schema: &str,
    table: &str,
    qt: &str,
    overwrite: bool,
) -> Result<(), PluginError> {
    let existing = db.conn.query(&format!(
        "SELECT c.oid, c.relkind FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = {} AND c.relname = {}",
        literal(schema),
        literal(table)
    ))?;
    if let Some(row) = existing.first() {
        let oid = row.first().cloned().flatten().unwrap_or_default();
        let relkind = row.get(1).cloned().flatten().unwrap_or_default();
        if !overwrite {
            return Err(PluginError::Application(format!(
                "table {schema}.{table} already exists in {}; nothing was restored (ask for overwrite to replace it)",
                db.id
            )));
        }
        if relkind != "r" {
            return Err(PluginError::Application(format!(
                "{schema}.{table} exists in {} and is not a table; not replaced",
                db.id
            )));
        }
        // Foreign keys of other tables that point here go when the
        // table is dropped; they come back at the end.
        let incoming = db.conn.query(&format!(
            "SELECT conrelid::pg_catalog.regclass::text, conname, pg_catalog.pg_get_constraintdef(oid) \
             FROM pg_catalog.pg_constraint WHERE contype = 'f' AND confrelid = {oid} AND conrelid <> {oid}"
        ))?;
        for r in incoming {
            let t = r[0].clone().unwrap_or_default();
            let n = r[1].clone().unwrap_or_default();
            let d = r[2].clone().unwrap_or_default();
            let stmt = format!("ALTER TABLE {t} ADD CONSTRAINT {} {d}", ident(&n));
            db.foreign_keys.push((t, n, stmt));
        }
        db.conn.simple(&format!("DROP TABLE {qt} CASCADE"))?;
        log(
            Level::Info,
            &format!("{}: replacing {schema}.{table}", db.id),
        );
    }
    Ok(())
}
