//! The catalog: every item of every snapshot with its metadata, in SQLite,
//! so `ls`, `find` and restore selection answer without reading packs.
//!
//! It lives in the local cache, not in the repository, and is brought in
//! line with the repository's snapshots whenever it is opened: a lost or
//! stale catalog costs a rebuild, never data.

use std::collections::HashSet;
use std::path::Path;

use anyhow::Context;
use rusqlite::{params, Connection};

use crate::store::snapshot::{SnapshotInfo, StoredItem};
use crate::store::Store;

pub struct Catalog {
    conn: Connection,
}

/// One hit of `find`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Found {
    pub snapshot: String,
    pub time: i64,
    pub source: String,
    pub id: String,
    pub kind: String,
    pub size: u64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY,
    time INTEGER NOT NULL,
    source TEXT NOT NULL,
    plugin TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    snapshot TEXT NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    size INTEGER NOT NULL,
    item TEXT NOT NULL,
    PRIMARY KEY (snapshot, seq)
);
CREATE INDEX IF NOT EXISTS items_by_snapshot_id ON items(snapshot, id);
CREATE INDEX IF NOT EXISTS items_by_id ON items(id);
CREATE INDEX IF NOT EXISTS items_by_name ON items(name);
";

impl Catalog {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open catalog {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        // Switching to WAL needs the database to itself: another process
        // opening it at the same moment gets SQLITE_BUSY without the busy
        // handler, so that step is retried.
        let mut tries = 0;
        loop {
            match conn.execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
            ) {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy && tries < 300 =>
                {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                r => break r?,
            }
        }
        let tx =
            rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(SCHEMA)?;
        tx.commit()?;
        Ok(Self { conn })
    }

    /// Adds the repository's snapshots the catalog lacks and drops those
    /// the repository no longer has.
    pub fn sync(&self, store: &Store) -> anyhow::Result<()> {
        let snaps = store.snapshots()?;
        let known: HashSet<String> = {
            let mut st = self.conn.prepare("SELECT id FROM snapshots")?;
            let rows = st.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let live: HashSet<&str> = snaps.iter().map(|s| s.id.as_str()).collect();
        for gone in known.iter().filter(|k| !live.contains(k.as_str())) {
            self.conn
                .execute("DELETE FROM snapshots WHERE id = ?1", [gone])?;
        }
        for s in snaps.iter().filter(|s| !known.contains(&s.id)) {
            // A snapshot whose item list cannot be read stays out of the
            // catalog (listed as damaged) instead of failing every command.
            match store.items(s) {
                Ok(items) => self.add(s, &items)?,
                Err(e) => tracing::warn!(
                    "snapshot {}: its item list cannot be read: {e}",
                    s.short_id()
                ),
            }
        }
        Ok(())
    }

    /// Whether the catalog holds snapshot `id` (its item list was read).
    pub fn has(&self, id: &str) -> anyhow::Result<bool> {
        let n: i64 =
            self.conn
                .query_row("SELECT count(*) FROM snapshots WHERE id = ?1", [id], |r| {
                    r.get(0)
                })?;
        Ok(n > 0)
    }

    /// Records a snapshot and its items.
    pub fn add(&self, snap: &SnapshotInfo, items: &[StoredItem]) -> anyhow::Result<()> {
        // IMMEDIATE: the write lock is taken (waiting as busy_timeout
        // allows) before anything is read, so two processes adding at once
        // never meet a stale snapshot, which SQLite refuses without waiting.
        let tx = rusqlite::Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO snapshots (id, time, source, plugin) VALUES (?1, ?2, ?3, ?4)",
            params![snap.id, snap.time, snap.source, snap.plugin],
        )?;
        tx.execute("DELETE FROM items WHERE snapshot = ?1", [&snap.id])?;
        {
            let mut st = tx.prepare("INSERT INTO items (snapshot, seq, id, name, kind, size, item) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?;
            for (seq, it) in items.iter().enumerate() {
                let r = &it.record;
                let name = r.id.rsplit('/').next().unwrap_or(&r.id);
                st.execute(params![
                    snap.id,
                    seq as i64,
                    r.id,
                    name,
                    r.kind.as_str(),
                    r.size as i64,
                    serde_json::to_string(it)?
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Items of a snapshot in backup order; with `below`, only that item and
    /// what lies below it.
    pub fn items(&self, snapshot: &str, below: Option<&str>) -> anyhow::Result<Vec<StoredItem>> {
        let parse = |r: &rusqlite::Row<'_>| r.get::<_, String>(0);
        let rows: Vec<String> = match below {
            None | Some("/") => {
                let mut st = self
                    .conn
                    .prepare("SELECT item FROM items WHERE snapshot = ?1 ORDER BY seq")?;
                let v = st.query_map([snapshot], parse)?.collect::<Result<_, _>>()?;
                v
            }
            Some(id) => {
                // `id/` up to (not including) `id0`: '0' follows '/' in byte order.
                let base = id.strip_suffix('/').unwrap_or(id);
                let mut st = self.conn.prepare(
                    "SELECT item FROM items WHERE snapshot = ?1 AND (id = ?2 OR (id >= ?3 AND id < ?4)) ORDER BY seq",
                )?;
                let v = st
                    .query_map(
                        params![snapshot, base, format!("{base}/"), format!("{base}0")],
                        parse,
                    )?
                    .collect::<Result<_, _>>()?;
                v
            }
        };
        rows.iter()
            .map(|j| serde_json::from_str(j).context("damaged catalog row"))
            .collect()
    }

    /// Items in any snapshot matching a glob: on the whole id when the
    /// pattern has a `/`, else on the item's last component.
    pub fn find(&self, pattern: &str) -> anyhow::Result<Vec<Found>> {
        let column = if pattern.contains('/') {
            "i.id"
        } else {
            "i.name"
        };
        let sql = format!(
            "SELECT s.id, s.time, s.source, i.id, i.kind, i.size FROM items i JOIN snapshots s ON s.id = i.snapshot
             WHERE {column} GLOB ?1 ORDER BY s.time, s.id, i.seq"
        );
        let mut st = self.conn.prepare(&sql)?;
        let rows = st.query_map([pattern], |r| {
            Ok(Found {
                snapshot: r.get(0)?,
                time: r.get(1)?,
                source: r.get(2)?,
                id: r.get(3)?,
                kind: r.get(4)?,
                size: r.get::<_, i64>(5)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
