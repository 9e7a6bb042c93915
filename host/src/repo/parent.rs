//! The parent snapshot of a re-run, as the host checks the runner's
//! "unchanged" claims against it (issue 12): read forward from the
//! catalog through a bounded [`Window`] in the order the runner walks,
//! with a lookup in the catalog's index for a claim the window does not
//! hold. Memory stays bounded whatever the tree's size, and a claim is
//! accepted exactly when the parent holds that item with all its content
//! stored intact, wherever it lies: the guest is untrusted, and a miss of
//! the window never refuses what the parent has.
//!
//! What goes to the runner (the parent's items that carry a change token,
//! as JSON lines) is read by [`send_lines`], on a catalog connection of
//! its own, while the runner walks.

use guest_runner::window::{Window, AHEAD, BEHIND};

use super::catalog::Catalog;
use super::ingest::ParentItem;
use super::Repository;
use crate::store::snapshot::{SnapshotInfo, StoredItem};
use crate::store::Store;

/// Stored chunks read per step of the window (about 64 items each).
const CHUNKS_PER_READ: i64 = 16;

/// A parent snapshot being checked against.
pub(crate) struct Parent {
    /// The parent snapshot's id.
    pub id: String,
    window: Window<ParentItem>,
    /// The number of the next stored chunk to read.
    next: i64,
    /// Lookups the window missed and the index answered.
    pub(crate) fallbacks: u64,
}

/// Whether every chunk of the item's content is stored intact: an item
/// whose data is lost is not one a re-run may point at.
fn intact(store: &Store, it: &StoredItem) -> bool {
    it.content.iter().all(|c| store.has(c))
}

impl Parent {
    /// The parent `snap`, read from the start (its item list must be in
    /// the catalog: see [`Repository::parent`]).
    pub(crate) fn new(snap: &SnapshotInfo) -> Self {
        Self {
            id: snap.id.clone(),
            window: Window::new(AHEAD, BEHIND),
            next: 0,
            fallbacks: 0,
        }
    }

    /// The parent's item `id` when the parent holds it with its content
    /// stored intact; `None` otherwise.
    pub(crate) fn get(
        &mut self,
        repo: &Repository,
        id: &str,
    ) -> anyhow::Result<Option<ParentItem>> {
        let (next, snapshot) = (&mut self.next, self.id.as_str());
        let found = self
            .window
            .find(id, &mut || -> anyhow::Result<_> {
                let chunks = repo.catalog.chunks_from(snapshot, *next, CHUNKS_PER_READ)?;
                if chunks.is_empty() {
                    return Ok(None);
                }
                *next += chunks.len() as i64;
                Ok(Some(
                    chunks
                        .into_iter()
                        .flatten()
                        .filter(|i| intact(&repo.store, i))
                        .map(|mut i| (std::mem::take(&mut i.record.id), i.into()))
                        .collect(),
                ))
            })?
            .cloned();
        if found.is_some() {
            return Ok(found);
        }
        // Outside the window, or not in the parent: the index says which.
        let mut it = repo.catalog.records(&self.id, &[id])?;
        let Some(it) = it.pop() else {
            return Ok(None);
        };
        self.fallbacks += 1;
        Ok(intact(&repo.store, &it).then(|| it.into()))
    }
}

/// Hands `send` the parent's items that carry a change token (those a
/// plugin can tell unchanged) as JSON lines, a stored chunk's worth at a
/// time in backup order, leaving out those whose data is lost: the runner
/// then reads them again. `catalog` is a connection of the caller's, so
/// that this runs beside the ingest.
pub(crate) fn send_lines(
    catalog: &Catalog,
    store: &Store,
    snap: &SnapshotInfo,
    send: &mut dyn FnMut(Vec<u8>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    catalog.each_chunk(&snap.id, None, &mut |items| {
        let mut batch = Vec::new();
        for it in items
            .iter()
            .filter(|i| i.record.change_token.is_some() && intact(store, i))
        {
            serde_json::to_writer(&mut batch, &it.record)?;
            batch.push(b'\n');
        }
        if batch.is_empty() {
            return Ok(());
        }
        send(batch)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::crypto::BlobId;
    use guest_runner::stream::{ItemKind, ItemRecord};

    fn item(i: usize) -> StoredItem {
        let mut record = ItemRecord::new(
            format!("/t/d{:03}/f{:04}", i / 1000, i % 1000),
            ItemKind::File,
            i as u64,
        );
        record.change_token = i.is_multiple_of(2).then(|| format!("t{i}"));
        StoredItem {
            record,
            // Item 7's data is lost: its chunk is in no pack.
            content: if i == 7 {
                vec![BlobId([7; 32])]
            } else {
                Vec::new()
            },
        }
    }

    fn snap(n: usize) -> SnapshotInfo {
        serde_json::from_value(serde_json::json!({
            "id": "p1", "time": 1, "source": "local", "plugin": "filesystem",
            "plugin_version": "1", "includes": ["/t"], "items": n, "bytes": 0,
            "added_bytes": 0, "read_bytes": 0, "warnings": [], "tree": []
        }))
        .expect("a snapshot description")
    }

    /// A claim is taken exactly when the parent holds the item intact,
    /// whether the window holds it (walked in order, after a deletion
    /// larger than the window) or only the index does (far behind, or
    /// after the window has passed it).
    #[test]
    fn a_claim_is_taken_wherever_the_parent_holds_it_and_refused_otherwise() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::init(&d.path().join("repo"), None).unwrap();
        let repo = Repository::with_store(store, &d.path().join("cache")).unwrap();
        let n = 3 * (AHEAD + BEHIND);
        let items: Vec<StoredItem> = (0..n).map(item).collect();
        let s = snap(n);
        repo.catalog.add(&s, &items).unwrap();
        let mut p = repo.parent(&s).unwrap();
        let get = |p: &mut Parent, i: usize| p.get(&repo, &items[i].record.id).unwrap();

        // In order, with the item whose data is lost refused, and a run
        // longer than the window deleted.
        for i in (0..n).filter(|i| !(100..100 + AHEAD + BEHIND + 10).contains(i)) {
            let got = get(&mut p, i);
            if i == 7 {
                assert!(got.is_none(), "item 7's data is lost");
                continue;
            }
            let got = got.unwrap_or_else(|| panic!("item {i}"));
            assert_eq!(got.size, i as u64);
            if i > 2 * (AHEAD + BEHIND) {
                break;
            }
        }
        // The walk in order stays in the window, but for item 7, which the
        // window leaves out (its data is lost), so the index is asked.
        assert_eq!(p.fallbacks, 1);
        // Far behind: the index has it.
        assert_eq!(get(&mut p, 150).map(|i| i.size), Some(150));
        assert_eq!(p.fallbacks, 2);
        // Ids the parent does not hold, before, inside and after what the
        // window has read, are refused.
        for id in ["/t/a", "/t/d000/f0150.x", "/t/d099/new", "/zzz"] {
            assert!(p.get(&repo, id).unwrap().is_none(), "{id}");
        }
        assert!(get(&mut p, 7).is_none(), "lost data stays refused");
        // And what lies ahead after all that is still found.
        assert_eq!(get(&mut p, n - 1).map(|i| i.size), Some(n as u64 - 1));
    }

    #[test]
    fn the_runner_gets_the_items_with_a_change_token_and_their_data() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::init(&d.path().join("repo"), None).unwrap();
        let repo = Repository::with_store(store, &d.path().join("cache")).unwrap();
        let items: Vec<StoredItem> = (0..3000).map(item).collect();
        let s = snap(items.len());
        repo.catalog.add(&s, &items).unwrap();
        let reader = repo.catalog.reader().unwrap();
        let mut lines = Vec::new();
        send_lines(&reader, &repo.store, &s, &mut |b| {
            lines.extend(b);
            Ok(())
        })
        .unwrap();
        let got: Vec<ItemRecord> = lines
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        let want: Vec<&ItemRecord> = items
            .iter()
            .filter(|i| i.record.change_token.is_some() && i.content.is_empty())
            .map(|i| &i.record)
            .collect();
        assert_eq!(got.len(), 1500);
        assert!(got.iter().zip(want).all(|(g, w)| g == w));
    }
}
