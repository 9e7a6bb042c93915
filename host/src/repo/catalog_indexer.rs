//! Indexing a backup's catalog chunks while the backup runs.
//!
//! A first backup's catalog is new: every chunk of its item lines is
//! stored and every item indexed. Done when the snapshot was written, that
//! took a core alone for an eighth of the backup (0.53 s of a 4.0 s backup
//! of a 56,907-item tree, issue 12), while the rest of the backup had left
//! a core idle at times. The indexer does it on a thread of its own, with
//! its own connection, as the draft closes each chunk: a short write
//! transaction per batch of chunks, so that other backups of the same
//! repository still add to the catalog meanwhile. The backup never waits
//! for it: a chunk that finds its queue full is left for the end.
//!
//! What it stores is only ahead of time, never more: the snapshot's own row
//! and its list of chunks are written by
//! [`super::catalog::Catalog::add_draft`], which stores any chunk still
//! missing itself (the indexer stopped, or a chunk was dropped meanwhile).
//! A backup that fails after some chunks were indexed leaves them in the
//! catalog, a cache, unlisted by any snapshot, until the next snapshot
//! dropped from the catalog clears every unlisted chunk.

use std::cell::Cell;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use anyhow::Context;
use rusqlite::Connection;

use super::catalog::{draft_entries, ChunkWriter};

/// Chunks handed over and not yet indexed (a chunk is at most
/// [`super::catalog::MAX_CHUNK`] lines, about 64 on average).
const QUEUE: usize = 64;
/// Chunks indexed in one transaction (fewer at the end).
const BATCH: usize = 64;

/// One closed chunk: its hash and its lines.
type Chunk = ([u8; 32], String);

/// The indexing thread, fed by the draft.
pub(crate) struct Indexer {
    tx: Option<SyncSender<Chunk>>,
    thread: Option<JoinHandle<anyhow::Result<u64>>>,
    /// Chunks not handed over because the queue was full.
    left: Cell<u64>,
}

impl Indexer {
    /// Starts indexing into the catalog at `path` (already opened, its
    /// schema in place).
    pub(crate) fn start(path: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open catalog {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.execute_batch("PRAGMA synchronous=NORMAL;")?;
        let (tx, rx) = sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("catalog-index".into())
            .spawn(move || run(&conn, &rx))
            .context("cannot start the catalog's indexer")?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
            left: Cell::new(0),
        })
    }

    /// Hands over a closed chunk, never waiting: when the indexer is
    /// behind (another process holds the catalog's write lock, say) or has
    /// stopped, the chunk is left to be stored when the snapshot is
    /// recorded. The backup never waits on the catalog, which matters
    /// most while a guest's filesystems are frozen.
    pub(crate) fn send(&self, hash: [u8; 32], lines: String) {
        if let Some(tx) = &self.tx {
            if let Err(TrySendError::Full(_)) = tx.try_send((hash, lines)) {
                self.left.set(self.left.get() + 1);
            }
        }
    }

    /// Waits until every chunk handed over is indexed. An indexer that
    /// failed is only logged: recording the snapshot stores what it did not
    /// (and reports the same fault, if it persists).
    pub(crate) fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(Ok(n)) => tracing::debug!(
                    chunks = n,
                    left = self.left.get(),
                    "catalog chunks indexed during the backup (left: for the end)"
                ),
                Ok(Err(e)) => tracing::debug!("the catalog's indexer stopped: {e:#}"),
                Err(_) => tracing::debug!("the catalog's indexer panicked"),
            }
        }
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Indexes the chunks `rx` brings until it closes; how many it stored.
/// They are taken [`BATCH`] at a time, one transaction each: a commit
/// writes every page it changed, and the index's pages change with
/// nearly every chunk.
fn run(conn: &Connection, rx: &Receiver<Chunk>) -> anyhow::Result<u64> {
    let mut stored = 0;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        batch.extend(rx.iter().take(BATCH));
        if batch.is_empty() {
            return Ok(stored);
        }
        let tx =
            rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut w = ChunkWriter::new(&tx)?;
            for (hash, lines) in batch.drain(..) {
                if !w.has(&hash)? {
                    w.add(&hash, &lines, &|f| draft_entries(&lines, f))?;
                    stored += 1;
                }
            }
        }
        tx.commit()?;
    }
}
