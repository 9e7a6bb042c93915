//! Snapshots: a sealed description naming the blobs of its item list, after
//! the file header ([`header::SNAPSHOT`]; snapshots written before it have
//! none and still read). The
//! item list is JSON lines cut into content-defined chunks, so unchanged
//! stretches of a tree dedup against the previous snapshot.

use guest_runner::stream::ItemRecord;
use serde::{Deserialize, Serialize};

use super::backend;
use super::chunker::Chunker;
use super::crypto::{BlobId, Cipher};
use super::header;
use super::pack::{parse_id, BlobKind};
use super::{PackSet, Store, StoreError};

/// An item with the blobs of its content.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "StoredRow")]
pub(crate) struct StoredItem {
    #[serde(flatten)]
    pub record: ItemRecord,
    /// Content chunks in order; empty for items without content.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<BlobId>,
}

/// How a [`StoredItem`] is read: the record's fields and the content side
/// by side, as `#[serde(flatten)]` writes them. Read directly rather than
/// through `flatten`, which buffers every field of every item first (the
/// catalog of a re-run's parent is read whole: it was most of the time
/// before the runner could start, issue 12). Same fields, defaults and
/// leniency towards unknown fields as [`ItemRecord`]'s own.
#[derive(Deserialize)]
struct StoredRow {
    id: String,
    kind: guest_runner::stream::ItemKind,
    size: u64,
    #[serde(default)]
    mode: Option<u32>,
    #[serde(default)]
    uid: Option<u32>,
    #[serde(default)]
    gid: Option<u32>,
    #[serde(default)]
    mtime: Option<guest_runner::stream::Timestamp>,
    #[serde(default)]
    symlink_target: Option<String>,
    #[serde(default)]
    hardlink_target: Option<String>,
    #[serde(default)]
    attributes: Vec<(String, String)>,
    #[serde(default)]
    change_token: Option<String>,
    #[serde(default)]
    unchanged: bool,
    #[serde(default)]
    content: Vec<BlobId>,
}

impl From<StoredRow> for StoredItem {
    fn from(r: StoredRow) -> Self {
        // Every field named, no `..`: a field added to `ItemRecord` does
        // not build until it is read here too.
        StoredItem {
            record: ItemRecord {
                id: r.id,
                kind: r.kind,
                size: r.size,
                mode: r.mode,
                uid: r.uid,
                gid: r.gid,
                mtime: r.mtime,
                symlink_target: r.symlink_target,
                hardlink_target: r.hardlink_target,
                attributes: r.attributes,
                change_token: r.change_token,
                unchanged: r.unchanged,
            },
            content: r.content,
        }
    }
}

/// An item that could not be backed up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Warning {
    pub id: String,
    pub message: String,
}

/// A snapshot's description.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SnapshotInfo {
    /// Hex id (the BLAKE3 of the sealed file); commands accept a prefix.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Seconds since the Unix epoch when the backup started.
    pub time: i64,
    /// Nanoseconds past `time`: orders snapshots taken within one second.
    #[serde(default)]
    pub nanos: u32,
    /// Where the data came from (`local`, `HYPERVISOR/VM`).
    pub source: String,
    pub plugin: String,
    pub plugin_version: String,
    pub includes: Vec<String>,
    /// The snapshot this one was incremental to.
    #[serde(default)]
    pub parent: Option<String>,
    pub items: u64,
    pub bytes: u64,
    /// Bytes this snapshot added to the repository (after dedup and compression).
    #[serde(default)]
    pub added_bytes: u64,
    /// Bytes of content actually read from the source (the rest was unchanged).
    #[serde(default)]
    pub read_bytes: u64,
    pub warnings: Vec<Warning>,
    /// The version of the agent container that took it (VM backups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The backup policy that made it (`attache policy`); its retention
    /// forgets only snapshots that carry its name. Absent in manual
    /// backups and in snapshots of before policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Blobs of the item list.
    pub tree: Vec<BlobId>,
}

impl SnapshotInfo {
    pub(crate) fn short_id(&self) -> &str {
        short_id(&self.id)
    }
}

/// The short form of a snapshot id, as messages name it: its first 8
/// characters.
pub(crate) fn short_id(id: &str) -> &str {
    &id[..id.len().min(8)]
}

/// Largest snapshot file read (the description, not the item list).
pub(crate) const MAX_SNAPSHOT: u64 = 64 << 20;

/// A snapshot file that cannot be read.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DamagedSnapshot {
    pub id: String,
    pub path: std::path::PathBuf,
    pub why: String,
}

/// The snapshots of a repository, readable or not.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub good: Vec<SnapshotInfo>,
    pub damaged: Vec<DamagedSnapshot>,
}

/// Parses a snapshot file's bytes, named `id` (the BLAKE3 of the bytes):
/// the file header ([`header::SNAPSHOT`]; none in files of before it), then
/// sealed JSON. The error says what is wrong.
pub(crate) fn decode(cipher: &Cipher, id: &str, file: &[u8]) -> Result<SnapshotInfo, String> {
    if blake3::hash(file).to_hex().as_str() != id {
        return Err("content does not match its name (damaged, or not a snapshot)".into());
    }
    let sealed = header::SNAPSHOT.strip(file).map_err(|e| e.to_string())?;
    let plain = cipher.open(sealed).map_err(|e| e.to_string())?;
    let mut info: SnapshotInfo =
        serde_json::from_slice(&plain).map_err(|e| format!("does not parse: {e}"))?;
    info.id = id.to_owned();
    Ok(info)
}

/// An item list as the tree and the catalog hold it: one JSON line per item.
pub(crate) fn item_lines(items: &[StoredItem]) -> Result<Vec<u8>, StoreError> {
    let mut lines = Vec::new();
    for it in items {
        serde_json::to_writer(&mut lines, it).map_err(StoreError::json("item list"))?;
        lines.push(b'\n');
    }
    Ok(lines)
}

/// Stores an item list as tree blobs.
pub(crate) fn write_tree(
    set: &mut PackSet<'_>,
    chunker: Chunker,
    items: &[StoredItem],
) -> Result<Vec<BlobId>, StoreError> {
    write_tree_lines(set, chunker, &item_lines(items)?)
}

/// [`write_tree`] of the list already made by [`item_lines`].
pub(crate) fn write_tree_lines(
    set: &mut PackSet<'_>,
    chunker: Chunker,
    lines: &[u8],
) -> Result<Vec<BlobId>, StoreError> {
    let mut tree = TreeWriter::new(chunker);
    // Line by line, as the list was always fed to the chunker.
    for line in lines.split_inclusive(|&b| b == b'\n') {
        tree.push_line(set, line)?;
    }
    tree.finish(set)
}

/// An item list stored as tree blobs item by item, as a backup receives
/// them, rather than all at the end: the same lines, fed to the chunker
/// the same way, so the same blobs as [`write_tree`]'s.
pub(crate) struct TreeWriter {
    chunker: Chunker,
    /// The last item's line (only it: the list is not kept).
    line: Vec<u8>,
    ids: Vec<BlobId>,
}

impl TreeWriter {
    pub(crate) fn new(chunker: Chunker) -> Self {
        Self {
            chunker,
            line: Vec::new(),
            ids: Vec::new(),
        }
    }

    /// Adds the next item; returns its line ([`item_lines`]' for it).
    pub(crate) fn push(
        &mut self,
        set: &mut PackSet<'_>,
        item: &StoredItem,
    ) -> Result<&[u8], StoreError> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, item).map_err(StoreError::json("item list"))?;
        self.line.push(b'\n');
        let Self {
            chunker, line, ids, ..
        } = self;
        chunker.push(line, &mut |c: &[u8]| -> Result<(), StoreError> {
            ids.push(set.add(BlobKind::Tree, c)?);
            Ok(())
        })?;
        Ok(&self.line)
    }

    fn push_line(&mut self, set: &mut PackSet<'_>, line: &[u8]) -> Result<(), StoreError> {
        let Self { chunker, ids, .. } = self;
        chunker.push(line, &mut |c: &[u8]| -> Result<(), StoreError> {
            ids.push(set.add(BlobKind::Tree, c)?);
            Ok(())
        })
    }

    /// The tree's blobs.
    pub(crate) fn finish(mut self, set: &mut PackSet<'_>) -> Result<Vec<BlobId>, StoreError> {
        let Self { chunker, ids, .. } = &mut self;
        chunker.finish(&mut |c: &[u8]| -> Result<(), StoreError> {
            ids.push(set.add(BlobKind::Tree, c)?);
            Ok(())
        })?;
        Ok(self.ids)
    }
}

impl Store {
    /// Writes a snapshot description; the blobs it names must be committed.
    pub(crate) fn write_snapshot(&self, info: &SnapshotInfo) -> Result<String, StoreError> {
        let mut info = info.clone();
        info.id.clear();
        let body = serde_json::to_vec(&info).map_err(StoreError::json("snapshot"))?;
        let bytes = header::SNAPSHOT.prepend(&self.cipher().seal(&body)?);
        let id = blake3::hash(&bytes).to_hex().to_string();
        // Named by its content and written create-only: no writer's
        // snapshot replaces another's.
        backend::put_content(self.backend(), &format!("snapshots/{id}"), &bytes)?;
        Ok(id)
    }

    /// Every readable snapshot, oldest first; damaged snapshot files are
    /// left out (see [`Store::snapshot_listing`]).
    pub(crate) fn snapshots(&self) -> Result<Vec<SnapshotInfo>, StoreError> {
        Ok(self.snapshot_listing()?.good)
    }

    /// Every snapshot file: those that read, oldest first, and those that
    /// do not, named with why. One damaged file never hides the others.
    pub(crate) fn snapshot_listing(&self) -> Result<Listing, StoreError> {
        let mut out = Listing::default();
        let listed = self.backend().list("snapshots")?;
        if let Some(c) = self.object_cache() {
            c.retain("snapshots", &listed);
        }
        for e in listed {
            let name = backend::base(&e.key);
            if parse_id(name).is_none() {
                continue;
            }
            let p = self.backend().name(&e.key);
            match self.read_snapshot(name, Some(e.size)) {
                Ok(s) => out.good.push(s),
                Err(e) => {
                    out.damaged.push(DamagedSnapshot {
                        id: name.to_owned(),
                        path: p.clone(),
                        why: match e {
                            StoreError::DamagedFile { why, .. } => why,
                            e => e.to_string(),
                        },
                    });
                }
            }
        }
        out.good
            .sort_by(|a, b| (a.time, a.nanos, &a.id).cmp(&(b.time, b.nanos, &b.id)));
        out.damaged.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Reads one snapshot file; errors name it.
    /// `len` is its size when a listing gave it.
    pub(crate) fn read_snapshot(
        &self,
        id: &str,
        len: Option<u64>,
    ) -> Result<SnapshotInfo, StoreError> {
        let key = format!("snapshots/{id}");
        let p = self.backend().name(&key);
        let len = match len {
            Some(l) => l,
            None => self.backend().size(&key)?.ok_or_else(|| {
                StoreError::at(&p, std::io::Error::from(std::io::ErrorKind::NotFound))
            })?,
        };
        if len > MAX_SNAPSHOT {
            return Err(StoreError::damaged(
                &p,
                format!("{len} bytes is too large for a snapshot file"),
            ));
        }
        let sealed = match self.object_cache() {
            Some(c) => c.read(self.backend(), &key)?,
            None => self.backend().read(&key)?,
        };
        decode(self.cipher(), id, &sealed).map_err(|why| StoreError::damaged(&p, why))
    }

    pub(crate) fn remove_snapshot(&self, id: &str) -> Result<(), StoreError> {
        self.backend().delete(&format!("snapshots/{id}"))
    }

    /// The item list of a snapshot.
    pub(crate) fn items(&self, snap: &SnapshotInfo) -> Result<Vec<StoredItem>, StoreError> {
        let mut bytes = Vec::new();
        for id in &snap.tree {
            bytes.extend_from_slice(&self.read_blob(id)?);
        }
        bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                serde_json::from_slice(l)
                    .map_err(StoreError::json(format!("snapshot {}: item list", snap.id)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_runner::stream::{ItemKind, Timestamp};

    /// A line reads back into the item it was written from, every field
    /// set; unknown fields are ignored and absent ones default, as they
    /// were when the record was read through `flatten`.
    #[test]
    fn stored_items_read_back() {
        let it = StoredItem {
            record: ItemRecord {
                id: "/srv/a \"b\"".into(),
                kind: ItemKind::Hardlink,
                size: 7,
                mode: Some(0o100644),
                uid: Some(1000),
                gid: Some(100),
                mtime: Some(Timestamp {
                    seconds: -5,
                    nanoseconds: 9,
                }),
                symlink_target: Some("/t".into()),
                hardlink_target: Some("/srv/x".into()),
                attributes: vec![("title".into(), "é".into())],
                change_token: Some("1:2:3".into()),
                unchanged: true,
            },
            content: vec![BlobId([7; 32]), BlobId([9; 32])],
        };
        let line = serde_json::to_string(&it).unwrap();
        let back: StoredItem = serde_json::from_str(&line).unwrap();
        assert_eq!(back.record, it.record);
        assert_eq!(back.content, it.content);

        let min: StoredItem =
            serde_json::from_str(r#"{"id":"/d","kind":"directory","size":0,"later":[1]}"#).unwrap();
        assert_eq!(min.record, ItemRecord::new("/d", ItemKind::Directory, 0));
        assert!(min.content.is_empty());
        assert!(serde_json::from_str::<StoredItem>(r#"{"id":"/d","size":0}"#).is_err());
    }
}
