//! Taking a backup stream into the repository: each frame checked as it
//! arrives, content cut into chunks and stored once, the item list kept for
//! the snapshot. Packs and index are committed here; the snapshot itself is
//! written by [`Staged::publish`], once the producer has also succeeded.
//!
//! The stream is untrusted: what its records say is held to
//! [`super::ingest_rules`], and sizes are those of the data received, so
//! host memory stays bounded per item whatever the guest sends.

use std::io::Read;

use guest_runner::stream::{Event, ItemKind, Notice, StreamReader};

use super::catalog_draft::CatalogDraft;
use super::ingest_rules::{cut, IngestRules, MAX_FIELD_BYTES};
use super::parent::Parent;
use super::Repository;
use crate::jobs::{Control, Progress};
use crate::store::crypto::BlobId;
use crate::store::pack::BlobKind;
use crate::store::snapshot::{SnapshotInfo, StoredItem, TreeWriter};

/// Where a backup came from and what it selected.
pub(crate) struct Origin {
    pub source: String,
    pub includes: Vec<String>,
    pub plugin: String,
    pub time: i64,
    pub nanos: u32,
    /// The snapshot this backup is incremental to: items the runner
    /// reports unchanged take their content from it.
    pub parent: Option<Parent>,
    /// The agent container's version, when it ran from one (VMs).
    pub container: Option<String>,
    /// The backup policy that started the backup.
    pub policy: Option<String>,
}

/// What a re-run takes from the parent for an item the runner reports
/// unchanged: its size and content, not the whole record (a third of a
/// re-run's memory on a 54,000-item tree went to the parent's records).
#[derive(Debug, Clone)]
pub(crate) struct ParentItem {
    pub size: u64,
    pub content: Box<[BlobId]>,
}

impl From<StoredItem> for ParentItem {
    fn from(i: StoredItem) -> Self {
        Self {
            size: i.record.size,
            content: i.content.into_boxed_slice(),
        }
    }
}

/// A snapshot whose data is durable but which is not listed yet.
pub(crate) struct Staged {
    pub info: SnapshotInfo,
    /// Its items for the catalog, as their lines were made for the tree.
    draft: CatalogDraft,
}

impl Staged {
    /// Writes the snapshot and adds it to the catalog; returns its id.
    pub(crate) fn publish(mut self, repo: &Repository) -> anyhow::Result<SnapshotInfo> {
        self.info.id = repo.store.write_snapshot(&self.info)?;
        repo.catalog.add_draft(&self.info, self.draft)?;
        Ok(self.info)
    }
}

pub(crate) fn ingest(
    repo: &Repository,
    input: impl Read,
    origin: &mut Origin,
    ctl: &Control<'_>,
) -> anyhow::Result<Staged> {
    let mut progress = Progress::default();
    let mut reported = std::time::Instant::now();
    // Chunks in missing or truncated packs are not referenced again: the
    // index marks them damaged, so they are stored anew if the source has
    // them (as are those the damage record names).
    for problem in repo.store.check_packs() {
        tracing::warn!("{problem}; its chunks will be stored again");
    }
    let mut reader = StreamReader::new(input);
    let mut set = repo.store.writer();
    let mut chunker = repo.store.chunker();
    let mut info = SnapshotInfo {
        id: String::new(),
        time: origin.time,
        nanos: origin.nanos,
        source: origin.source.clone(),
        plugin: String::new(),
        plugin_version: String::new(),
        includes: origin.includes.clone(),
        parent: origin.parent.as_ref().map(|p| p.id.clone()),
        items: 0,
        bytes: 0,
        added_bytes: 0,
        read_bytes: 0,
        warnings: Vec::new(),
        container: origin.container.clone(),
        policy: origin.policy.clone(),
        tree: Vec::new(),
    };
    let mut rules = IngestRules::default();
    // The item list goes to tree blobs, and to the catalog's draft, as
    // items arrive, while the producer is still walking: none is kept.
    let mut tree = TreeWriter::new(repo.store.chunker());
    let mut draft = repo.catalog.draft()?;
    let mut open: Option<StoredItem> = None;
    while let Some(ev) = reader.next_event()? {
        anyhow::ensure!(!ctl.cancelled(), "cancelled");
        if reported.elapsed() >= std::time::Duration::from_millis(200) {
            progress.items = draft.items();
            progress.bytes = info.bytes;
            (ctl.progress)(&progress);
            reported = std::time::Instant::now();
        }
        match ev {
            Event::Header(h) => {
                anyhow::ensure!(
                    h.plugin == origin.plugin,
                    "the stream was made by plugin {:?}, not {:?}",
                    h.plugin,
                    origin.plugin
                );
                info.plugin = h.plugin;
                info.plugin_version = cut(h.plugin_version, MAX_FIELD_BYTES);
            }
            Event::Item(record) => {
                rules.item(&record)?;
                open = Some(StoredItem {
                    record,
                    content: Vec::new(),
                })
            }
            Event::Data(d) => {
                info.read_bytes += d.len() as u64;
                let it = open
                    .as_mut()
                    .expect("the reader only yields data inside an item");
                chunker.push(d, &mut |c: &[u8]| -> anyhow::Result<()> {
                    it.content.push(set.add(BlobKind::Data, c)?);
                    Ok(())
                })?;
            }
            Event::ItemEnd(end) => {
                let mut it = open
                    .take()
                    .expect("the reader only yields item-end inside an item");
                chunker.finish(&mut |c: &[u8]| -> anyhow::Result<()> {
                    it.content.push(set.add(BlobKind::Data, c)?);
                    Ok(())
                })?;
                if it.record.unchanged {
                    // Content the parent snapshot already holds.
                    let prev = match origin.parent.as_mut() {
                        Some(p) => p.get(repo, &it.record.id)?,
                        None => None,
                    };
                    let prev = prev.ok_or_else(|| {
                        anyhow::anyhow!(
                            "{} is reported unchanged, but the parent snapshot lacks it",
                            it.record.id
                        )
                    })?;
                    if prev.content.iter().any(|c| !repo.store.has(c)) {
                        // The parent's copy of this content is damaged or
                        // gone: pointing the new snapshot at it would make
                        // it unrestorable. Left out with a warning; the next
                        // backup (whose parent then lacks it) reads it anew.
                        info.warnings.extend(rules.warning(Notice {
                            id: it.record.id.clone(),
                            message: "unchanged since the parent snapshot, but the repository's copy of its data is damaged: not stored; back it up again".into(),
                        }));
                        continue;
                    }
                    rules.stored(&it.record)?;
                    it.record.unchanged = false;
                    it.record.size = prev.size;
                    it.content = prev.content.to_vec();
                    info.bytes += it.record.size;
                    draft.push(&it.record.id, tree.push(&mut set, &it)?)?;
                    continue;
                }
                rules.stored(&it.record)?;
                // What was received, never what the guest claimed: the
                // reader has checked that the item-end's size is the data
                // it carried. A symlink's size is its target's length.
                it.record.size = match (&it.record.symlink_target, it.record.kind) {
                    (Some(t), ItemKind::Symlink) if end.size == 0 => t.len() as u64,
                    _ => end.size,
                };
                info.bytes += end.size;
                draft.push(&it.record.id, tree.push(&mut set, &it)?)?;
            }
            Event::ItemAbort(n) | Event::Warning(n) => {
                open = None;
                chunker = repo.store.chunker();
                info.warnings.extend(rules.warning(n));
            }
            Event::Trailer(_) => {}
        }
    }
    if let Some(p) = &origin.parent {
        tracing::debug!(
            fallbacks = p.fallbacks,
            "unchanged items found in the parent's index, not its window"
        );
    }
    info.warnings.extend(rules.summary());
    info.tree = tree.finish(&mut set)?;
    info.items = draft.items();
    info.added_bytes = set.commit()?;
    (ctl.progress)(&Progress {
        items: info.items,
        bytes: info.bytes,
    });
    Ok(Staged { info, draft })
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_runner::stream::{Header, ItemRecord, StreamWriter};
    use guest_runner::window::{AHEAD, BEHIND};
    use std::sync::atomic::AtomicBool;

    /// A stream of `items`: each with its data, or marked unchanged.
    fn stream(items: &[(ItemRecord, Option<&[u8]>)]) -> Vec<u8> {
        let header = Header {
            format: 1,
            plugin: "filesystem".into(),
            plugin_version: "1".into(),
            created: 1,
        };
        let mut w = StreamWriter::new(Vec::new(), &header).unwrap();
        for (rec, data) in items {
            let mut rec = rec.clone();
            rec.unchanged = data.is_none();
            w.begin_item(&rec).unwrap();
            if let Some(d) = data {
                w.data(d).unwrap();
            }
            w.end_item().unwrap();
        }
        w.finish().unwrap().0
    }

    fn file(i: usize) -> ItemRecord {
        let mut r = ItemRecord::new(format!("/t/f{i:06}"), ItemKind::File, 0);
        r.change_token = Some(format!("t{i}"));
        r
    }

    /// The host takes an "unchanged" claim only for an item its parent
    /// holds, wherever that lies against the window it reads the parent
    /// through; a crafted claim for any other id fails the backup.
    #[test]
    fn unchanged_claims_are_checked_against_the_whole_parent() {
        let d = tempfile::tempdir().unwrap();
        let store = crate::store::Store::init(&d.path().join("repo"), None).unwrap();
        let repo = Repository::with_store(store, &d.path().join("cache")).unwrap();
        let cancel = AtomicBool::new(false);
        let ctl = Control {
            progress: &|_| {},
            cancel: &cancel,
        };
        let origin = |parent: Option<Parent>| Origin {
            source: "local".into(),
            includes: vec!["/t".into()],
            plugin: "filesystem".into(),
            time: 1,
            nanos: 0,
            parent,
            container: None,
            policy: None,
        };
        // A parent of more items than a window holds, each with its data.
        let n = AHEAD + BEHIND + 5_000;
        let data: Vec<Vec<u8>> = (0..n)
            .map(|i| format!("content {i}").into_bytes())
            .collect();
        let first: Vec<(ItemRecord, Option<&[u8]>)> =
            (0..n).map(|i| (file(i), Some(&data[i][..]))).collect();
        let staged = ingest(&repo, &stream(&first)[..], &mut origin(None), &ctl).unwrap();
        let parent = staged.publish(&repo).unwrap();

        // Honest claims out of the parent's order: its last item first,
        // then its first (by then far behind the window), then the rest.
        let mut claims = vec![(file(n - 1), None), (file(0), None)];
        claims.extend((1..n - 1).map(|i| (file(i), None)));
        let mut o = origin(Some(repo.parent(&parent).unwrap()));
        let staged = ingest(&repo, &stream(&claims)[..], &mut o, &ctl).unwrap();
        assert_eq!(staged.info.read_bytes, 0);
        let second = staged.publish(&repo).unwrap();
        let items = repo.items(&second, None).unwrap();
        assert_eq!(items.len(), n);
        let again = repo.items(&parent, None).unwrap();
        let by_id: std::collections::HashMap<_, _> =
            again.iter().map(|i| (i.record.id.as_str(), i)).collect();
        for it in &items {
            let p = by_id[it.record.id.as_str()];
            assert_eq!((it.record.size, &it.content), (p.record.size, &p.content));
            assert!(!it.content.is_empty(), "{}", it.record.id);
        }

        // Crafted claims: an id the parent lacks, after the window has
        // passed where it would be, inside it, and beyond the parent's end.
        for bad in ["/t/f000100.x", "/t/a", "/t/zzz"] {
            let mut claims: Vec<(ItemRecord, Option<&[u8]>)> =
                (0..200).map(|i| (file(i), None)).collect();
            claims.push((ItemRecord::new(bad, ItemKind::File, 5), None));
            let mut o = origin(Some(repo.parent(&parent).unwrap()));
            let e = ingest(&repo, &stream(&claims)[..], &mut o, &ctl)
                .err()
                .unwrap_or_else(|| panic!("{bad} taken"));
            assert!(
                format!("{e:#}").contains("the parent snapshot lacks it"),
                "{e:#}"
            );
        }
        // And a claim with no parent at all.
        let claims = vec![(file(1), None)];
        assert!(ingest(&repo, &stream(&claims)[..], &mut origin(None), &ctl).is_err());
    }
}
