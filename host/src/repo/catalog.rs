//! The catalog: every item of every snapshot with its metadata, in SQLite,
//! so `ls`, `find` and restore selection answer without reading packs.
//!
//! It lives in the local cache, not in the repository, and is brought in
//! line with the repository's snapshots whenever it is opened: a lost or
//! stale catalog costs a rebuild, never data.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rusqlite::{params, Connection};

use super::catalog_draft::CatalogDraft;
use crate::store::snapshot::{SnapshotInfo, StoredItem};
use crate::store::Store;

pub(crate) struct Catalog {
    conn: Connection,
    /// The catalog's file.
    path: PathBuf,
    /// The directory the catalog's file is in (drafts go there too).
    dir: PathBuf,
}

/// One hit of `find`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Found {
    pub snapshot: String,
    pub time: i64,
    pub source: String,
    pub id: String,
    pub kind: String,
    pub size: u64,
}

/// The layout's version (`PRAGMA user_version`). A catalog of another
/// version is dropped and rebuilt from the repository.
const VERSION: i64 = 3;

/// A snapshot's items are stored as runs of consecutive items (chunks),
/// cut where an item's id says so, so that the cuts fall in the same places
/// again when the tree is unchanged around them. A chunk is stored once and
/// shared by every snapshot that has it: the catalog of an unchanged re-run
/// costs one row per chunk, not one per item. `chunk_items` indexes each
/// stored chunk's items for `find` and for restore selection.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY,
    time INTEGER NOT NULL,
    source TEXT NOT NULL,
    plugin TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    hash BLOB PRIMARY KEY,
    body TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshot_chunks (
    snapshot TEXT NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    n INTEGER NOT NULL,
    chunk BLOB NOT NULL,
    PRIMARY KEY (snapshot, n)
);
CREATE INDEX IF NOT EXISTS snapshot_chunks_by_chunk ON snapshot_chunks(chunk);
CREATE TABLE IF NOT EXISTS chunk_items (
    chunk BLOB NOT NULL,
    pos INTEGER NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    size INTEGER NOT NULL,
    title TEXT,
    PRIMARY KEY (chunk, pos)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunk_items_by_id ON chunk_items(id);
CREATE INDEX IF NOT EXISTS chunk_items_by_name ON chunk_items(name);
";

/// The catalog file is read with a read per page into SQLite's own cache
/// (a few MiB), not through a memory mapping: every mapped page read
/// stays in the process's memory, and a re-run of a 56,907-item tree
/// read 42 MiB of its parent's catalog that way, a third of its peak, for
/// no gain in time (0.80 s either way; issue 12).
const MMAP_SIZE: i64 = 0;

/// Items per chunk: about `CUT` on average, never more than `MAX_CHUNK`.
const CUT: u64 = 64;
pub(super) const MAX_CHUNK: usize = 1024;

/// Whether a chunk ends after the item `id` (FNV-1a of the id).
pub(super) fn cuts_after(id: &str) -> bool {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h.is_multiple_of(CUT)
}

impl Catalog {
    pub(crate) fn open(path: &Path) -> anyhow::Result<Self> {
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
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
        // Set, not left to how SQLite was built.
        conn.pragma_update(None, "mmap_size", MMAP_SIZE)?;
        let tx =
            rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version != VERSION {
            // A cache: another layout is dropped, and `sync` refills it.
            tx.execute_batch(
                "DROP TABLE IF EXISTS items; DROP TABLE IF EXISTS snapshot_chunks;
                 DROP TABLE IF EXISTS chunk_items; DROP TABLE IF EXISTS chunks;
                 DROP TABLE IF EXISTS snapshots;",
            )?;
            tx.execute_batch(&format!("PRAGMA user_version = {VERSION};"))?;
        }
        tx.execute_batch(SCHEMA)?;
        tx.commit()?;
        Ok(Self {
            conn,
            path: path.to_owned(),
            dir,
        })
    }

    /// Another connection to the same catalog, for reading on another
    /// thread (a connection is not shared between threads). It reads
    /// through SQLite's own page cache, not a memory mapping: it reads each
    /// page once, in order.
    pub(crate) fn reader(&self) -> anyhow::Result<Self> {
        let conn = Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("cannot open catalog {}", self.path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        Ok(Self {
            conn,
            path: self.path.clone(),
            dir: self.dir.clone(),
        })
    }

    /// A draft for a backup's items, recorded by [`Self::add_draft`].
    pub(crate) fn draft(&self) -> anyhow::Result<CatalogDraft> {
        Ok(CatalogDraft::new(&self.dir)?.indexed(&self.path))
    }

    /// Records snapshot `snap`, whose items `draft` holds.
    pub(crate) fn add_draft(&self, snap: &SnapshotInfo, draft: CatalogDraft) -> anyhow::Result<()> {
        // The indexer has stored the chunks it could while the backup ran:
        // those are found here and not read back.
        let (chunks, lines) = draft.finish()?;
        let hashes: Vec<[u8; 32]> = chunks.iter().map(|c| c.hash).collect();
        self.record(
            snap,
            &hashes,
            &|n| Ok(Cow::Owned(lines.read(&chunks[n])?)),
            &|_, body, f| draft_entries(body, f),
        )
    }

    /// Adds the repository's snapshots the catalog lacks and drops those
    /// the repository no longer has.
    pub(crate) fn sync(&self, store: &Store) -> anyhow::Result<()> {
        let snaps = store.snapshots()?;
        let known: HashSet<String> = {
            let mut st = self.conn.prepare("SELECT id FROM snapshots")?;
            let rows = st.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let live: HashSet<&str> = snaps.iter().map(|s| s.id.as_str()).collect();
        let mut dropped = false;
        for gone in known.iter().filter(|k| !live.contains(k.as_str())) {
            self.conn
                .execute("DELETE FROM snapshots WHERE id = ?1", [gone])?;
            dropped = true;
        }
        if dropped {
            // Chunks no snapshot lists (any more, or yet: a backup's
            // indexer stores them ahead). In one transaction: a snapshot
            // recorded meanwhile either finds a chunk with its items or
            // stores both.
            let tx = rusqlite::Transaction::new_unchecked(
                &self.conn,
                rusqlite::TransactionBehavior::Immediate,
            )?;
            tx.execute_batch(
                "DELETE FROM chunk_items WHERE chunk NOT IN (SELECT chunk FROM snapshot_chunks);
                 DELETE FROM chunks WHERE hash NOT IN (SELECT chunk FROM snapshot_chunks);",
            )?;
            tx.commit()?;
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

    /// The id of the one snapshot whose id starts with `prefix`, if exactly
    /// one does.
    pub(crate) fn only_snapshot_with_prefix(&self, prefix: &str) -> anyhow::Result<Option<String>> {
        let mut st = self
            .conn
            .prepare("SELECT id FROM snapshots WHERE substr(id, 1, length(?1)) = ?1 LIMIT 2")?;
        let ids: Vec<String> = st
            .query_map([prefix], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(match <[String; 1]>::try_from(ids) {
            Ok([id]) => Some(id),
            Err(_) => None,
        })
    }

    /// The plugin of snapshot `id`, if the catalog holds it.
    pub(crate) fn plugin_of(&self, id: &str) -> anyhow::Result<Option<String>> {
        let mut st = self
            .conn
            .prepare("SELECT plugin FROM snapshots WHERE id = ?1")?;
        let mut rows = st.query_map([id], |r| r.get::<_, String>(0))?;
        Ok(rows.next().transpose()?)
    }

    /// Whether the catalog holds snapshot `id` (its item list was read).
    pub(crate) fn has(&self, id: &str) -> anyhow::Result<bool> {
        let n: i64 =
            self.conn
                .query_row("SELECT count(*) FROM snapshots WHERE id = ?1", [id], |r| {
                    r.get(0)
                })?;
        Ok(n > 0)
    }

    /// Records a snapshot and its items: the chunks the catalog lacks,
    /// and the list of the snapshot's chunks.
    pub(crate) fn add(&self, snap: &SnapshotInfo, items: &[StoredItem]) -> anyhow::Result<()> {
        let lines = crate::store::snapshot::item_lines(items)?;
        // Cut before the write lock is taken.
        let mut chunks: Vec<([u8; 32], &str, usize, usize)> = Vec::new();
        let lines = std::str::from_utf8(&lines).context("an item list that is not UTF-8")?;
        let mut rest = lines;
        let mut start = 0;
        let mut at = 0;
        for (i, (it, line)) in items.iter().zip(lines.split_inclusive('\n')).enumerate() {
            at += line.len();
            if cuts_after(&it.record.id) || i + 1 - start >= MAX_CHUNK || i + 1 == items.len() {
                let (body, tail) = rest.split_at(at);
                let hash = *blake3::hash(body.as_bytes()).as_bytes();
                chunks.push((hash, body, start, i + 1));
                rest = tail;
                at = 0;
                start = i + 1;
            }
        }
        anyhow::ensure!(
            start == items.len() && rest.is_empty(),
            "an item list of {} lines for {} items",
            lines.split_inclusive('\n').count(),
            items.len()
        );
        let hashes: Vec<[u8; 32]> = chunks.iter().map(|c| c.0).collect();
        self.record(
            snap,
            &hashes,
            &|n| Ok(Cow::Borrowed(chunks[n].1)),
            &|n, _, f| {
                items[chunks[n].2..chunks[n].3]
                    .iter()
                    .try_for_each(|it| f(Entry::of(&it.record)))
            },
        )
    }

    /// Writes snapshot `snap` whose chunks have `hashes`, in order: a chunk
    /// the catalog lacks is stored with its lines (`body(n)`) and its
    /// items (`items(n, body, f)` hands each to `f`).
    fn record<'b>(
        &self,
        snap: &SnapshotInfo,
        hashes: &[[u8; 32]],
        body: &dyn Fn(usize) -> anyhow::Result<Cow<'b, str>>,
        items: &dyn Fn(usize, &str, Each<'_>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
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
        tx.execute(
            "DELETE FROM snapshot_chunks WHERE snapshot = ?1",
            [&snap.id],
        )?;
        {
            let mut w = ChunkWriter::new(&tx)?;
            let mut list =
                tx.prepare("INSERT INTO snapshot_chunks (snapshot, n, chunk) VALUES (?1, ?2, ?3)")?;
            for (n, hash) in hashes.iter().enumerate() {
                // Only a chunk the catalog lacks is read back (from a
                // draft) and indexed: an unchanged re-run reads none.
                if !w.has(hash)? {
                    let b = body(n)?;
                    w.add(hash, &b, &|f| items(n, &b, f))?;
                }
                list.execute(params![snap.id, n as i64, &hash[..]])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Items of a snapshot in backup order; with `below`, only that item and
    /// what lies below it.
    pub(crate) fn items(
        &self,
        snapshot: &str,
        below: Option<&str>,
    ) -> anyhow::Result<Vec<StoredItem>> {
        let mut out = Vec::new();
        self.each_chunk(snapshot, below, &mut |items| {
            out.extend(items);
            Ok(())
        })?;
        Ok(out)
    }

    /// [`Self::items`], handed to `f` one stored chunk (a run of items) at
    /// a time as it is read, so that a caller can pass them on while the
    /// rest are still being parsed.
    pub(crate) fn each_chunk(
        &self,
        snapshot: &str,
        below: Option<&str>,
        f: &mut dyn FnMut(Vec<StoredItem>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let parse = |r: &rusqlite::Row<'_>| r.get::<_, String>(0);
        let (mut st, base) = match below {
            None | Some("/") => (
                self.conn.prepare(
                    "SELECT c.body FROM snapshot_chunks s JOIN chunks c ON c.hash = s.chunk
                     WHERE s.snapshot = ?1 ORDER BY s.n",
                )?,
                None,
            ),
            Some(id) => (
                // `id/` up to (not including) `id0`: '0' follows '/' in byte
                // order. Only the chunks holding such items are read.
                self.conn.prepare(
                    "SELECT c.body FROM snapshot_chunks s JOIN chunks c ON c.hash = s.chunk
                     WHERE s.snapshot = ?1 AND s.chunk IN (SELECT chunk FROM chunk_items
                       WHERE id = ?2 OR (id >= ?3 AND id < ?4))
                     ORDER BY s.n",
                )?,
                Some(id.strip_suffix('/').unwrap_or(id)),
            ),
        };
        let bodies = match base {
            None => st.query_map([snapshot], parse)?,
            Some(base) => st.query_map(
                params![snapshot, base, format!("{base}/"), format!("{base}0")],
                parse,
            )?,
        };
        for body in bodies {
            let body = body?;
            let mut out = Vec::new();
            for line in body.lines() {
                let it: StoredItem = serde_json::from_str(line).context("damaged catalog row")?;
                let keep = match base {
                    None => true,
                    Some(b) => {
                        let id = it.record.id.as_str();
                        id == b || (id > b && id.starts_with(b) && id.as_bytes()[b.len()] == b'/')
                    }
                };
                if keep {
                    out.push(it);
                }
            }
            f(out)?;
        }
        Ok(())
    }

    /// Up to `limit` of a snapshot's stored chunks from number `from` on,
    /// in order, each as its items: for a reader going forward a few
    /// chunks at a time. None past the last.
    pub(crate) fn chunks_from(
        &self,
        snapshot: &str,
        from: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<Vec<StoredItem>>> {
        let mut st = self.conn.prepare_cached(
            "SELECT c.body FROM snapshot_chunks s JOIN chunks c ON c.hash = s.chunk
             WHERE s.snapshot = ?1 AND s.n >= ?2 ORDER BY s.n LIMIT ?3",
        )?;
        let bodies = st.query_map(params![snapshot, from, limit], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for body in bodies {
            out.push(
                body?
                    .lines()
                    .map(|l| serde_json::from_str(l).context("damaged catalog row"))
                    .collect::<anyhow::Result<_>>()?,
            );
        }
        Ok(out)
    }

    /// The ids of a snapshot's items (all, or those strictly below
    /// `below`), without their records: what a tree listing counts.
    pub(crate) fn ids(&self, snapshot: &str, below: Option<&str>) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::new();
        self.each_id(snapshot, below, &mut |id| {
            ids.push(id);
            Ok(())
        })?;
        Ok(ids)
    }

    /// [`Self::ids`], handed to `f` one at a time as they are read: a
    /// pass over a snapshot's ids holds none of them.
    pub(crate) fn each_id(
        &self,
        snapshot: &str,
        below: Option<&str>,
        f: &mut dyn FnMut(String) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let parse = |r: &rusqlite::Row<'_>| r.get::<_, String>(0);
        match below {
            None => {
                let mut st = self.conn.prepare(
                    "SELECT i.id FROM snapshot_chunks s JOIN chunk_items i ON i.chunk = s.chunk
                     WHERE s.snapshot = ?1",
                )?;
                for id in st.query_map([snapshot], parse)? {
                    f(id?)?;
                }
            }
            Some(id) => {
                let base = id.strip_suffix('/').unwrap_or(id);
                let mut st = self.conn.prepare(
                    "SELECT i.id FROM chunk_items i JOIN snapshot_chunks s ON s.chunk = i.chunk
                     WHERE s.snapshot = ?1 AND i.id >= ?2 AND i.id < ?3",
                )?;
                for id in st.query_map(
                    params![snapshot, format!("{base}/"), format!("{base}0")],
                    parse,
                )? {
                    f(id?)?;
                }
            }
        }
        Ok(())
    }

    /// Whether a snapshot has an item with exactly this id (the index
    /// only: no row is parsed).
    pub(crate) fn has_item(&self, snapshot: &str, id: &str) -> anyhow::Result<bool> {
        let mut st = self.conn.prepare_cached(
            "SELECT 1 FROM chunk_items i JOIN snapshot_chunks s ON s.chunk = i.chunk
             WHERE s.snapshot = ?1 AND i.id = ?2 LIMIT 1",
        )?;
        Ok(st.exists(params![snapshot, id])?)
    }

    /// The items of a snapshot with these ids (those it has): each parsed
    /// from its own line of its chunk (`chunk_items.pos`), not the chunk.
    pub(crate) fn records(&self, snapshot: &str, ids: &[&str]) -> anyhow::Result<Vec<StoredItem>> {
        let mut st = self.conn.prepare_cached(
            "SELECT i.pos, c.body FROM chunk_items i JOIN snapshot_chunks s ON s.chunk = i.chunk
             JOIN chunks c ON c.hash = s.chunk WHERE s.snapshot = ?1 AND i.id = ?2 LIMIT 1",
        )?;
        let mut out = Vec::new();
        for id in ids {
            let mut rows = st.query(params![snapshot, id])?;
            let Some(r) = rows.next()? else { continue };
            let (pos, body): (i64, String) = (r.get(0)?, r.get(1)?);
            let line = usize::try_from(pos)
                .ok()
                .and_then(|p| body.lines().nth(p))
                .context("damaged catalog row: an item past its chunk's end")?;
            let it: StoredItem = serde_json::from_str(line).context("damaged catalog row")?;
            anyhow::ensure!(
                it.record.id == *id,
                "damaged catalog row: {:?} where {id:?} belongs",
                it.record.id
            );
            out.push(it);
        }
        Ok(out)
    }

    /// Items in any snapshot matching a glob: on the whole id when the
    /// pattern has a `/`, else on the item's last component; and on the
    /// item's title (a message's subject) either way.
    pub(crate) fn find(&self, pattern: &str) -> anyhow::Result<Vec<Found>> {
        let column = if pattern.contains('/') {
            "i.id"
        } else {
            "i.name"
        };
        let sql = format!(
            "SELECT s.id, s.time, s.source, i.id, i.kind, i.size FROM chunk_items i
             JOIN snapshot_chunks sc ON sc.chunk = i.chunk JOIN snapshots s ON s.id = sc.snapshot
             WHERE {column} GLOB ?1 OR i.title GLOB ?1 ORDER BY s.time, s.id, sc.n, i.pos"
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

/// What `chunk_items` keeps of an item.
pub(super) struct Entry<'a> {
    id: &'a str,
    kind: guest_runner::stream::ItemKind,
    size: u64,
    title: Option<&'a str>,
}

impl<'a> Entry<'a> {
    fn of(r: &'a guest_runner::stream::ItemRecord) -> Self {
        Self {
            id: &r.id,
            kind: r.kind,
            size: r.size,
            title: guest_runner::stream::title(r),
        }
    }
}

/// Where a chunk's entries are handed, one by one, in order.
pub(super) type Each<'f> = &'f mut dyn FnMut(Entry<'_>) -> anyhow::Result<()>;

/// An item line read for its index entry only: a first backup indexes
/// every line, and reading whole items (their content ids decoded) was
/// most of the time the catalog took at its end (issue 12).
#[derive(serde::Deserialize)]
struct EntryLine<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    kind: guest_runner::stream::ItemKind,
    size: u64,
    #[serde(default)]
    attributes: Vec<(String, String)>,
}

/// Hands `f` the entry of each item line of a draft's chunk `body`.
pub(super) fn draft_entries(body: &str, f: Each<'_>) -> anyhow::Result<()> {
    for line in body.lines() {
        let e: EntryLine<'_> =
            serde_json::from_str(line).context("an item line of the catalog's draft")?;
        f(Entry {
            id: &e.id,
            kind: e.kind,
            size: e.size,
            title: guest_runner::stream::title_in(&e.attributes),
        })?;
    }
    Ok(())
}

/// Stores chunks (their lines) and indexes their items, in the caller's
/// transaction.
pub(super) struct ChunkWriter<'c> {
    has: rusqlite::Statement<'c>,
    add_chunk: rusqlite::Statement<'c>,
    add_item: rusqlite::Statement<'c>,
}

impl<'c> ChunkWriter<'c> {
    pub(super) fn new(conn: &'c Connection) -> rusqlite::Result<Self> {
        Ok(Self {
            has: conn.prepare("SELECT 1 FROM chunks WHERE hash = ?1")?,
            add_chunk: conn.prepare("INSERT INTO chunks (hash, body) VALUES (?1, ?2)")?,
            add_item: conn.prepare(
                "INSERT INTO chunk_items (chunk, pos, id, name, kind, size, title) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?,
        })
    }

    /// Whether the catalog holds chunk `hash`.
    pub(super) fn has(&mut self, hash: &[u8; 32]) -> rusqlite::Result<bool> {
        self.has.exists([&hash[..]])
    }

    /// Stores chunk `hash` (the catalog lacks it) with its lines `body`,
    /// and indexes the entries `items` hands over.
    pub(super) fn add(
        &mut self,
        hash: &[u8; 32],
        body: &str,
        items: &dyn Fn(Each<'_>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let hash = &hash[..];
        self.add_chunk.execute(params![hash, body])?;
        let mut pos = 0i64;
        let add_item = &mut self.add_item;
        items(&mut |e| {
            let name = e.id.rsplit('/').next().unwrap_or(e.id);
            add_item.execute(params![
                hash,
                pos,
                e.id,
                name,
                e.kind.as_str(),
                e.size as i64,
                e.title
            ])?;
            pos += 1;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_runner::stream::{ItemKind, ItemRecord};

    fn snap(id: &str) -> SnapshotInfo {
        serde_json::from_value(serde_json::json!({
            "id": id, "time": 1, "source": "local", "plugin": "filesystem",
            "plugin_version": "1", "includes": ["/t"], "items": 0, "bytes": 0,
            "added_bytes": 0, "read_bytes": 0, "warnings": [], "tree": []
        }))
        .expect("a snapshot description")
    }

    fn chunk_count(cat: &Catalog) -> i64 {
        cat.conn
            .query_row("SELECT count(*) FROM chunks", [], |r| r.get(0))
            .unwrap()
    }

    /// `draft` with `items` pushed, as a backup pushes them.
    fn filled(mut draft: CatalogDraft, items: &[StoredItem]) -> CatalogDraft {
        for it in items {
            let line = crate::store::snapshot::item_lines(std::slice::from_ref(it)).unwrap();
            draft.push(&it.record.id, &line).unwrap();
        }
        draft
    }

    #[test]
    fn a_draft_records_the_same_items_in_the_same_chunks_as_a_list_in_memory() {
        let d = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&d.path().join("catalog.sqlite")).unwrap();
        let items: Vec<StoredItem> = (0..3000)
            .map(|i| StoredItem {
                record: ItemRecord::new(format!("/t/d{}/f{i}", i % 7), ItemKind::File, i),
                content: Vec::new(),
            })
            .collect();
        let draft = filled(cat.draft().unwrap(), &items);
        assert_eq!(draft.items(), 3000);
        cat.add_draft(&snap("aa"), draft).unwrap();
        let chunks = chunk_count(&cat);
        assert!(chunks > 3000 / MAX_CHUNK as i64, "{chunks}");
        cat.add(&snap("bb"), &items).unwrap();
        // The same cuts: the second snapshot shares every chunk.
        assert_eq!(chunk_count(&cat), chunks);
        for id in ["aa", "bb"] {
            let got = cat.items(id, None).unwrap();
            assert_eq!(got.len(), items.len());
            assert!(got.iter().zip(&items).all(|(g, w)| g.record == w.record));
        }
        assert_eq!(cat.find("f2999").unwrap().len(), 2);
    }

    #[test]
    fn a_draft_is_indexed_while_it_is_written_and_recorded_whatever_the_indexer_did() {
        let d = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&d.path().join("catalog.sqlite")).unwrap();
        let items: Vec<StoredItem> = (0..2000)
            .map(|i| {
                let mut r = ItemRecord::new(format!("/m/INBOX/{i}"), ItemKind::Message, i);
                r.attributes
                    .push((guest_runner::stream::TITLE.into(), format!("subject {i}")));
                StoredItem {
                    record: r,
                    content: vec![crate::store::crypto::BlobId([i as u8; 32])],
                }
            })
            .collect();
        // Every chunk is in the catalog once the draft is finished, before
        // any snapshot is recorded.
        let (chunks, _) = filled(cat.draft().unwrap(), &items).finish().unwrap();
        assert_eq!(chunk_count(&cat), chunks.len() as i64);
        assert!(!cat.has("aa").unwrap());
        // Chunks cleared meanwhile (as clearing unlisted chunks does) are
        // stored when the snapshot is recorded.
        let all = chunks.len() as i64;
        cat.conn
            .execute_batch(
                "DELETE FROM chunk_items WHERE chunk IN (SELECT hash FROM chunks LIMIT 3);
                 DELETE FROM chunks WHERE hash IN (SELECT hash FROM chunks LIMIT 3);",
            )
            .unwrap();
        assert_eq!(chunk_count(&cat), all - 3);
        // Without an indexer too (one that cannot start).
        let bare = CatalogDraft::new(d.path())
            .unwrap()
            .indexed(&d.path().join("no such dir").join("catalog.sqlite"));
        cat.add_draft(&snap("aa"), filled(bare, &items)).unwrap();
        assert_eq!(chunk_count(&cat), all);
        let same = |id: &str| {
            let got = cat.items(id, None).unwrap();
            got.len() == items.len()
                && got
                    .iter()
                    .zip(&items)
                    .all(|(g, w)| g.record == w.record && g.content == w.content)
        };
        assert!(same("aa"));
        // An empty catalog, and a draft with its indexer.
        cat.conn
            .execute_batch("DELETE FROM snapshots; DELETE FROM chunk_items; DELETE FROM chunks;")
            .unwrap();
        cat.add_draft(&snap("bb"), filled(cat.draft().unwrap(), &items))
            .unwrap();
        assert_eq!(chunk_count(&cat), all);
        assert!(same("bb"));
        // Each item indexed once, with its title.
        let found = cat.find("1999").unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        let titled: i64 = cat
            .conn
            .query_row(
                "SELECT count(*) FROM chunk_items WHERE title = 'subject 7'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(titled, 1);
    }

    #[test]
    fn a_backup_never_waits_for_the_catalog_s_write_lock() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("catalog.sqlite");
        let cat = Catalog::open(&path).unwrap();
        // Another process holds the write lock: the indexer waits for it.
        let other = Catalog::open(&path).unwrap();
        other.conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        let items: Vec<StoredItem> = (0..30_000)
            .map(|i| StoredItem {
                record: ItemRecord::new(format!("/t/d{}/f{i}", i % 13), ItemKind::File, i),
                content: Vec::new(),
            })
            .collect();
        let started = std::time::Instant::now();
        let draft = filled(cat.draft().unwrap(), &items);
        // Far more chunks than the indexer's queue holds went by without
        // waiting (the lock is held for the 30 s of the busy timeout).
        assert!(started.elapsed() < std::time::Duration::from_secs(15));
        other.conn.execute_batch("COMMIT").unwrap();
        cat.add_draft(&snap("aa"), draft).unwrap();
        let got = cat.items("aa", None).unwrap();
        assert_eq!(got.len(), items.len());
        assert!(got.iter().zip(&items).all(|(g, w)| g.record == w.record));
        assert_eq!(cat.find("f29999").unwrap().len(), 1);
    }

    #[test]
    fn a_draft_with_a_line_that_is_no_item_records_nothing() {
        let d = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&d.path().join("catalog.sqlite")).unwrap();
        let mut draft = cat.draft().unwrap();
        draft.push("/t/a", b"{\"not\": \"an item\"}\n").unwrap();
        assert!(cat.add_draft(&snap("cc"), draft).is_err());
        assert!(!cat.has("cc").unwrap());
        assert_eq!(chunk_count(&cat), 0);
    }

    #[test]
    fn a_prefix_names_a_snapshot_only_when_exactly_one_has_it() {
        let d = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&d.path().join("catalog.sqlite")).unwrap();
        for id in ["aa01", "aa02", "bb01"] {
            cat.add(&snap(id), &[]).unwrap();
        }
        let only = |p: &str| cat.only_snapshot_with_prefix(p).unwrap();
        assert_eq!(only("aa"), None);
        assert_eq!(only("aa02").as_deref(), Some("aa02"));
        assert_eq!(only("b").as_deref(), Some("bb01"));
        assert_eq!(only("bb011"), None);
        assert_eq!(only("c"), None);
        // LIKE-style wildcards are plain characters here.
        assert_eq!(only("%"), None);
        assert_eq!(only("a_"), None);
    }
}
