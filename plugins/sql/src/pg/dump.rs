//! Backup of PostgreSQL databases and tables.
//!
//! Per database one connection and one transaction,
//! `BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY`: every table of that
//! database is read under the same snapshot, as pg_dump does, while writers
//! go on. The tables are locked `ACCESS SHARE` first (what any SELECT takes)
//! so that nobody drops or rewrites one between reading its definition and
//! its rows. `quiesce` opens these transactions ahead of the backup, and
//! `thaw` ends them.

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::conn::Conn;
use super::connect;
use super::format::{self, DatabaseHeader, TableHeader};
use super::schema::{self, TableRef};
use crate::ids::PgId;
use crate::metadata::item_metadata;
use attache_plugin_sdk::host::{log, progress};
use attache_plugin_sdk::sink::{self as backup_sink};
use attache_plugin_sdk::ItemData;
use attache_plugin_sdk::Summary;
use attache_plugin_sdk::{Item, ItemKind, Level, PluginError};

/// One database's snapshot, open until the backup (or `thaw`) ends it.
pub(crate) struct Snapshot {
    pub db: PgId,
    pub conn: Conn,
    pub snapshot: String,
    pub encoding: String,
    pub tables: Vec<TableRef>,
}

thread_local! {
    /// Snapshots `quiesce` opened, waiting for `backup` and `thaw`.
    static HELD: RefCell<Vec<Snapshot>> = const { RefCell::new(Vec::new()) };
}

/// Groups a selection by database: each database id with the selected
/// ids inside it.
pub(crate) fn by_database(
    selection: &[PgId],
) -> Result<BTreeMap<String, (PgId, Vec<PgId>)>, PluginError> {
    let mut out: BTreeMap<String, (PgId, Vec<PgId>)> = BTreeMap::new();
    for id in selection {
        if id.database.is_none() {
            return Err(PluginError::InvalidRequest(format!(
                "{id} names a server; select a database (…/DB) or a table (…/DB/SCHEMA.TABLE)"
            )));
        }
        let db = id.database_id();
        out.entry(db.to_string())
            .or_insert_with(|| (db, Vec::new()))
            .1
            .push(id.clone());
    }
    Ok(out)
}

/// Opens the snapshot of one database and resolves the selected tables in
/// it. A selected schema or table that does not exist is an error.
pub(crate) fn open(
    db: &PgId,
    selected: &[PgId],
    password: Option<&str>,
) -> Result<Snapshot, PluginError> {
    let mut conn = connect(db, password)?;
    conn.simple("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
    let rows = conn.query(
        "SELECT pg_catalog.pg_export_snapshot(), pg_catalog.pg_encoding_to_char(encoding) \
         FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()",
    )?;
    let row = rows.first().cloned().unwrap_or_default();
    let snapshot = row.first().cloned().flatten().unwrap_or_default();
    let encoding = row.get(1).cloned().flatten().unwrap_or_default();
    let mut tables: Vec<TableRef> = Vec::new();
    for id in selected {
        let found = match (&id.schema, &id.table) {
            (None, _) => schema::tables(&mut conn, None, None)?,
            (Some(s), None) => {
                if !schema::schema_exists(&mut conn, s)? {
                    return Err(PluginError::InvalidRequest(format!(
                        "schema {s:?} does not exist in {db}"
                    )));
                }
                schema::tables(&mut conn, Some(s), None)?
            }
            (Some(s), Some(t)) => {
                let found = schema::tables(&mut conn, Some(s), Some(t))?;
                if found.is_empty() {
                    return Err(PluginError::InvalidRequest(format!(
                        "table {s}.{t} does not exist in {db} (selected as {id})"
                    )));
                }
                found
            }
        };
        for t in found {
            if !tables.iter().any(|x| x.oid == t.oid) {
                tables.push(t);
            }
        }
    }
    tables.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
    if !tables.is_empty() {
        let list: Vec<&str> = tables.iter().map(|t| t.qualified.as_str()).collect();
        conn.simple(&format!(
            "LOCK TABLE {} IN ACCESS SHARE MODE",
            list.join(", ")
        ))?;
    }
    log(
        Level::Info,
        &format!("{db}: snapshot {snapshot} holds {} table(s)", tables.len()),
    );
    Ok(Snapshot {
        db: db.clone(),
        conn,
        snapshot,
        encoding,
        tables,
    })
}

/// `quiesce`: opens every database's snapshot now; the backup uses them.
pub(crate) fn quiesce(selection: &[PgId], password: Option<&str>) -> Result<(), PluginError> {
    let mut opened = Vec::new();
    for (_, (db, ids)) in by_database(selection)? {
        opened.push(open(&db, &ids, password)?);
    }
    HELD.with(|h| h.borrow_mut().extend(opened));
    Ok(())
}

/// `thaw`: ends what `quiesce` opened and the backup did not use.
pub(crate) fn thaw() -> Result<(), PluginError> {
    let held = HELD.with(|h| std::mem::take(&mut *h.borrow_mut()));
    for mut s in held {
        let _ = s.conn.simple("COMMIT");
        s.conn.close();
    }
    Ok(())
}

pub(crate) fn backup(
    selection: &[PgId],
    password: Option<&str>,
    summary: &mut Summary,
) -> Result<(), PluginError> {
    for (key, (db, ids)) in by_database(selection)? {
        let held = HELD.with(|h| {
            let mut h = h.borrow_mut();
            h.iter()
                .position(|s| s.db.to_string() == key)
                .map(|i| h.remove(i))
        });
        let snap = match held {
            Some(s) => s,
            None => open(&db, &ids, password)?,
        };
        backup_database(snap, summary)?;
    }
    Ok(())
}

fn backup_database(mut s: Snapshot, summary: &mut Summary) -> Result<(), PluginError> {
    let db_name = s.db.database.clone().unwrap_or_default();
    let table_ids: Vec<String> = s
        .tables
        .iter()
        .map(|t| s.db.with_table(&t.schema, Some(&t.name)).to_string())
        .collect();
    let mut schemas: Vec<String> = s.tables.iter().map(|t| t.schema.clone()).collect();
    schemas.dedup();
    let header = DatabaseHeader {
        server_version: s.conn.server_version.clone(),
        database: db_name.clone(),
        encoding: s.encoding.clone(),
        snapshot: s.snapshot.clone(),
        schemas,
        tables: table_ids.clone(),
    };
    let content = format::database_content(&header);
    backup_sink::emit(
        &Item {
            id: s.db.to_string(),
            kind: ItemKind::Database,
            metadata: item_metadata(
                content.len() as u64,
                vec![
                    ("server-version".into(), s.conn.server_version.clone()),
                    ("snapshot".into(), s.snapshot.clone()),
                    ("tables".into(), s.tables.len().to_string()),
                ],
            ),
        },
        &ItemData::Inline(content.clone()),
    )?;
    summary.items += 1;
    summary.bytes += content.len() as u64;
    let tables = std::mem::take(&mut s.tables);
    for (t, id) in tables.iter().zip(&table_ids) {
        let bytes = backup_table(&mut s, t, id)?;
        summary.items += 1;
        summary.bytes += bytes;
        progress(summary.items, summary.bytes, None, None);
    }
    s.conn.simple("COMMIT")?;
    s.conn.close();
    Ok(())
}

/// One table: definition, then rows straight from COPY into the item.
fn backup_table(s: &mut Snapshot, t: &TableRef, id: &str) -> Result<u64, PluginError> {
    let def = schema::table_def(&mut s.conn, t)?;
    let copy_columns: Vec<String> = def
        .columns
        .iter()
        .filter(|c| !c.generated)
        .map(|c| c.name.clone())
        .collect();
    let header = TableHeader {
        server_version: s.conn.server_version.clone(),
        database: s.db.database.clone().unwrap_or_default(),
        snapshot: s.snapshot.clone(),
        copy_columns: copy_columns.clone(),
        definition: def,
    };
    let writer = backup_sink::begin(&Item {
        id: id.to_owned(),
        kind: ItemKind::Table,
        metadata: item_metadata(
            0,
            vec![
                ("oid".into(), t.oid.to_string()),
                ("relation-bytes".into(), t.bytes.to_string()),
                ("rows-estimate".into(), t.rows_estimate.max(0).to_string()),
                ("server-version".into(), s.conn.server_version.clone()),
                ("snapshot".into(), s.snapshot.clone()),
            ],
        ),
    })?;
    writer.write(&format::table_prologue(&header))?;
    let cols: Vec<String> = copy_columns.iter().map(|c| super::wire::ident(c)).collect();
    let sql = format!("COPY {} ({}) TO STDOUT", t.qualified, cols.join(", "));
    let mut bytes = 0u64;
    let rows = s.conn.copy_out(&sql, |chunk| {
        bytes += chunk.len() as u64;
        writer.write(chunk)
    })?;
    writer.write(&format::table_epilogue(rows))?;
    let size = writer.finish()?;
    log(
        Level::Info,
        &format!("{id}: {rows} row(s), {bytes} bytes of COPY data"),
    );
    Ok(size)
}
