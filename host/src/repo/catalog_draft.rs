//! A snapshot's catalog entries drafted while its backup receives items.
//!
//! The item lines go to an unnamed temporary file beside the catalog, and
//! only where each chunk of them ends (its hash, place and length) stays in
//! memory: a backup's memory no longer grows with its number of items
//! (issue 12: a re-run of a 42,000-item tree held 77 MiB of item records
//! and a 34 MiB copy of their lines until the catalog was written).
//! [`super::catalog::Catalog::add_draft`] records the draft once the
//! snapshot is written; a draft dropped unrecorded (a failed backup, a
//! killed process) leaves nothing behind but the chunks its indexer stored.
//!
//! While the backup runs, each chunk closed goes to an [`Indexer`] too,
//! which stores it in the catalog ahead of time (and says what becomes of
//! chunks no snapshot lists).
//!
//! Chunks are cut exactly as [`super::catalog::Catalog::add`] cuts an item
//! list held in memory, so both give the same chunks for the same items and
//! an unchanged re-run shares every chunk of its parent.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::Context;

use super::catalog::{cuts_after, MAX_CHUNK};
use super::catalog_indexer::Indexer;

/// One chunk of a draft: a run of consecutive item lines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DraftChunk {
    /// BLAKE3 of the chunk's lines.
    pub hash: [u8; 32],
    /// Where its lines start in the draft's file, and their length.
    pub start: u64,
    pub len: u64,
}

pub(crate) struct CatalogDraft {
    out: BufWriter<File>,
    /// Bytes written so far.
    written: u64,
    /// The chunk being filled: its start, items and hash so far.
    open_start: u64,
    open_items: usize,
    hasher: blake3::Hasher,
    chunks: Vec<DraftChunk>,
    items: u64,
    /// Where closed chunks go while the backup runs, with the open
    /// chunk's lines kept for it.
    indexer: Option<Indexer>,
    open_lines: Vec<u8>,
}

impl CatalogDraft {
    /// A draft whose temporary file is in `dir` (the catalog's directory).
    pub(crate) fn new(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let file = tempfile::tempfile_in(dir)
            .with_context(|| format!("cannot make a temporary file in {}", dir.display()))?;
        Ok(Self {
            out: BufWriter::with_capacity(1 << 20, file),
            written: 0,
            open_start: 0,
            open_items: 0,
            hasher: blake3::Hasher::new(),
            chunks: Vec::new(),
            items: 0,
            indexer: None,
            open_lines: Vec::new(),
        })
    }

    /// This draft, its chunks also handed to an indexer of the catalog at
    /// `catalog` as they close. Without one when it cannot start: the
    /// chunks are then all stored when the snapshot is recorded.
    pub(crate) fn indexed(mut self, catalog: &Path) -> Self {
        match Indexer::start(catalog) {
            Ok(i) => self.indexer = Some(i),
            Err(e) => tracing::debug!("the catalog is indexed at the end: {e:#}"),
        }
        self
    }

    /// Adds the next item: its id and its line (JSON, ending in a newline).
    pub(crate) fn push(&mut self, id: &str, line: &[u8]) -> anyhow::Result<()> {
        self.out
            .write_all(line)
            .context("writing the catalog's draft")?;
        self.hasher.update(line);
        if self.indexer.is_some() {
            self.open_lines.extend_from_slice(line);
        }
        self.written += line.len() as u64;
        self.open_items += 1;
        self.items += 1;
        if cuts_after(id) || self.open_items >= MAX_CHUNK {
            self.cut();
        }
        Ok(())
    }

    fn cut(&mut self) {
        if self.open_items == 0 {
            return;
        }
        let hash = *self.hasher.finalize().as_bytes();
        self.chunks.push(DraftChunk {
            hash,
            start: self.open_start,
            len: self.written - self.open_start,
        });
        if let Some(ix) = &self.indexer {
            let lines = std::mem::take(&mut self.open_lines);
            // Lines that are not text are left to the recording, which
            // reports them.
            if let Ok(lines) = String::from_utf8(lines) {
                ix.send(hash, lines);
            }
        }
        self.hasher.reset();
        self.open_start = self.written;
        self.open_items = 0;
    }

    /// How many items were pushed.
    pub(crate) fn items(&self) -> u64 {
        self.items
    }

    /// The chunks, with what reads their lines back.
    pub(crate) fn finish(mut self) -> anyhow::Result<(Vec<DraftChunk>, DraftLines)> {
        self.cut();
        if let Some(ix) = self.indexer.take() {
            ix.finish();
        }
        let file = self
            .out
            .into_inner()
            .map_err(|e| e.into_error())
            .context("writing the catalog's draft")?;
        Ok((self.chunks, DraftLines { file }))
    }
}

/// A finished draft's lines.
pub(crate) struct DraftLines {
    file: File,
}

impl DraftLines {
    /// The lines of `c`.
    pub(crate) fn read(&self, c: &DraftChunk) -> anyhow::Result<String> {
        let len = usize::try_from(c.len).context("a draft chunk larger than memory")?;
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, c.start)
            .context("reading the catalog's draft")?;
        String::from_utf8(buf).context("an item list that is not UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_cut_where_an_id_says_and_read_back_whole() {
        let d = tempfile::tempdir().unwrap();
        let mut draft = CatalogDraft::new(d.path()).unwrap();
        // An id that cuts, found by trying.
        let cutting = (0..10_000)
            .map(|i| format!("/d/{i}"))
            .find(|id| cuts_after(id))
            .unwrap();
        let ids = ["/a".to_owned(), cutting.clone(), "/z".to_owned()];
        for id in &ids {
            draft
                .push(id, format!("{{\"id\":\"{id}\"}}\n").as_bytes())
                .unwrap();
        }
        assert_eq!(draft.items(), 3);
        let (chunks, lines) = draft.finish().unwrap();
        // A cut after the cutting id, and the rest closed at the end
        // (unless "/z" cuts too, which it does not).
        assert!(!cuts_after("/z") && !cuts_after("/a"));
        assert_eq!(chunks.len(), 2);
        let first = lines.read(&chunks[0]).unwrap();
        assert_eq!(
            first,
            format!("{{\"id\":\"/a\"}}\n{{\"id\":\"{cutting}\"}}\n")
        );
        assert_eq!(chunks[0].hash, *blake3::hash(first.as_bytes()).as_bytes());
        assert_eq!(lines.read(&chunks[1]).unwrap(), "{\"id\":\"/z\"}\n");
    }

    #[test]
    fn a_chunk_never_holds_more_than_max_chunk_items() {
        let d = tempfile::tempdir().unwrap();
        let mut draft = CatalogDraft::new(d.path()).unwrap();
        let mut n: usize = 0;
        for i in 0..(3 * MAX_CHUNK) {
            let id = format!("/f{i}");
            if !cuts_after(&id) {
                draft.push(&id, b"{}\n").unwrap();
                n += 1;
            }
        }
        let (chunks, _) = draft.finish().unwrap();
        assert!(chunks.iter().all(|c| c.len <= 3 * MAX_CHUNK as u64));
        assert_eq!(chunks.len(), n.div_ceil(MAX_CHUNK));
    }
}
