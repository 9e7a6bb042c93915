//! Lazy browsing of a snapshot's items: the direct children of one
//! directory, sorted by name, a page at a time, so that a console can open
//! a snapshot of tens of thousands of items one level at a time.
//!
//! A child is an item of the snapshot, or a path component above items
//! (`/home` above `/home/ann/notes.txt` when only `/home/ann` was backed
//! up): such a child has no record, only what lies below it.

use std::collections::{BTreeMap, HashMap};

use guest_runner::stream::ItemRecord;
use serde::Serialize;

use crate::store::snapshot::StoredItem;

/// One entry of a directory listing.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Child {
    /// The full id (`/home/ann`, `INBOX/42`).
    pub id: String,
    /// The last component.
    pub name: String,
    /// How many items lie below it (0: a leaf).
    pub below: u64,
    /// The item itself, with its metadata, when the child is an item.
    pub record: Option<ItemRecord>,
}

/// A page of a directory listing.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Listing {
    /// The directory listed; `null` for the snapshot's top.
    pub dir: Option<String>,
    /// How many children it has in all.
    pub total: usize,
    pub offset: usize,
    pub children: Vec<Child>,
}

/// The child of `dir` (`None`: the top) on the way to `id`, if `id` lies
/// below `dir`.
fn child_of<'a>(dir: Option<&str>, id: &'a str) -> Option<&'a str> {
    let (start, rest) = match dir {
        None => {
            // A leading '/' belongs to the first component.
            let lead = usize::from(id.starts_with('/'));
            return Some(match id[lead..].find('/') {
                Some(p) => &id[..lead + p],
                None => id,
            });
        }
        Some(d) => {
            let rest = id.strip_prefix(d)?.strip_prefix('/')?;
            if rest.is_empty() {
                return None;
            }
            (d.len() + 1, rest)
        }
    };
    Some(match rest.find('/') {
        Some(p) => &id[..start + p],
        None => id,
    })
}

/// The children of `dir` among a snapshot's item ids (which may hold
/// other ids too), sorted by id; `offset` and `limit` cut one page. The
/// children's records are left for [`fill`]: only a page of them is read.
pub(super) fn list(ids: &[String], dir: Option<&str>, offset: usize, limit: usize) -> Listing {
    // child id -> (items below, whether it is an item)
    let mut children: BTreeMap<&str, (u64, bool)> = BTreeMap::new();
    for id in ids {
        let Some(c) = child_of(dir, id) else { continue };
        let e = children.entry(c).or_insert((0, false));
        if c.len() == id.len() {
            e.1 = true;
        } else {
            e.0 += 1;
        }
    }
    let total = children.len();
    Listing {
        dir: dir.map(str::to_owned),
        total,
        offset,
        children: children
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|(c, (below, _))| Child {
                id: c.to_owned(),
                name: c
                    .rsplit('/')
                    .next()
                    .filter(|n| !n.is_empty())
                    .unwrap_or(c)
                    .to_owned(),
                below,
                record: None,
            })
            .collect(),
    }
}

/// Puts each child's record in, from `items` (the page's items, in any
/// order).
pub(super) fn fill(listing: &mut Listing, items: Vec<StoredItem>) {
    let mut by_id: HashMap<String, ItemRecord> = items
        .into_iter()
        .map(|i| (i.record.id.clone(), i.record))
        .collect();
    for c in &mut listing.children {
        c.record = by_id.remove(&c.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_runner::stream::ItemKind;

    fn item(id: &str, kind: ItemKind) -> StoredItem {
        StoredItem {
            record: ItemRecord::new(id, kind, 1),
            content: Vec::new(),
        }
    }

    /// The listing of `dir` among `items`, with the records filled in.
    fn listed(items: &[StoredItem], dir: Option<&str>, offset: usize, limit: usize) -> Listing {
        let ids: Vec<String> = items.iter().map(|i| i.record.id.clone()).collect();
        let mut l = list(&ids, dir, offset, limit);
        let page: Vec<&str> = l.children.iter().map(|c| c.id.as_str()).collect();
        let items = items
            .iter()
            .filter(|i| page.contains(&i.record.id.as_str()))
            .cloned()
            .collect();
        fill(&mut l, items);
        l
    }

    fn names(l: &Listing) -> Vec<(&str, u64, bool)> {
        l.children
            .iter()
            .map(|c| (c.id.as_str(), c.below, c.record.is_some()))
            .collect()
    }

    #[test]
    fn children_of_the_top_and_of_a_directory() {
        let items = vec![
            item("/srv/data", ItemKind::Directory),
            item("/srv/data/b.txt", ItemKind::File),
            item("/srv/data/a", ItemKind::Directory),
            item("/srv/data/a/x", ItemKind::File),
            item("/srv/data/a/y", ItemKind::File),
            item("/srv/database", ItemKind::File),
        ];
        let top = listed(&items, None, 0, 10);
        assert_eq!(names(&top), vec![("/srv", 6, false)]);
        let srv = listed(&items, Some("/srv"), 0, 10);
        assert_eq!(
            names(&srv),
            vec![("/srv/data", 4, true), ("/srv/database", 0, true)]
        );
        assert_eq!(srv.children[0].name, "data");
        let data = listed(&items, Some("/srv/data"), 0, 10);
        assert_eq!(
            names(&data),
            vec![("/srv/data/a", 2, true), ("/srv/data/b.txt", 0, true)]
        );
        let page = listed(&items, Some("/srv/data"), 1, 1);
        assert_eq!(
            (page.total, names(&page)),
            (2, vec![("/srv/data/b.txt", 0, true)])
        );
    }

    #[test]
    fn ids_without_a_leading_slash() {
        let items = vec![
            item("INBOX", ItemKind::Directory),
            item("INBOX/1", ItemKind::File),
            item("Sent/2", ItemKind::File),
        ];
        let top = listed(&items, None, 0, 10);
        assert_eq!(names(&top), vec![("INBOX", 1, true), ("Sent", 1, false)]);
        let inbox = listed(&items, Some("INBOX"), 0, 10);
        assert_eq!(names(&inbox), vec![("INBOX/1", 0, true)]);
    }
}
