//! Restore and listing selections by item id.

use std::collections::BTreeSet;

use super::{Catalog, RepoError};
use crate::store::snapshot::StoredItem;

/// Whether item `item` is `id` or lies below it.
pub(crate) fn is_at_or_below(item: &str, id: &str) -> bool {
    if item == id || id == "/" {
        return true;
    }
    let base = id.strip_suffix('/').unwrap_or(id);
    item.strip_prefix(base)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// The top items of a selection: those below no other selected item,
/// kept as they come, in any order, while holding only the tops found so
/// far (a snapshot of a million files has one top, not a million ids).
#[derive(Default)]
pub(crate) struct Tops(BTreeSet<String>);

impl Tops {
    /// Takes `id` in: dropped when it lies below a top, else a top that
    /// replaces the tops below it.
    pub(crate) fn add(&mut self, id: String) {
        if self.0.contains(&id) || self.has_above(&id) {
            return;
        }
        if id == "/" {
            self.0.clear();
        } else {
            let base = id.strip_suffix('/').unwrap_or(&id);
            let below: Vec<String> = self
                .0
                .range(format!("{base}/")..format!("{base}0"))
                .cloned()
                .collect();
            for b in below {
                self.0.remove(&b);
            }
        }
        self.0.insert(id);
    }

    /// Whether a top other than `id` has `id` at or below it: the tops
    /// that could are `/` and the prefixes of `id` that end before or at
    /// one of its `/` (what [`is_at_or_below`] accepts).
    fn has_above(&self, id: &str) -> bool {
        if self.0.contains("/") && id != "/" {
            return true;
        }
        id.match_indices('/').any(|(i, _)| {
            self.0.contains(&id[..i]) || (i + 1 < id.len() && self.0.contains(&id[..=i]))
        })
    }

    /// The tops, in id order.
    pub(crate) fn into_ids(self) -> Vec<String> {
        self.0.into_iter().collect()
    }
}

/// The top items of what a restore of `wanted` selects from `snapshot` in
/// `catalog` (all of it when `wanted` is empty), with their records: a
/// wanted item the snapshot holds is its own top; one it holds only items
/// below is topped by those. A wanted id the snapshot holds nothing at or
/// below is [`RepoError::NoItem`]. Only ids are read, one at a time, and
/// only where a wanted item is not itself in the snapshot.
pub(crate) fn tops(
    catalog: &Catalog,
    snapshot: &str,
    wanted: &[String],
) -> anyhow::Result<Vec<StoredItem>> {
    let mut tops = Tops::default();
    let add = &mut |id: String| {
        tops.add(id);
        Ok(())
    };
    if wanted.is_empty() || wanted.iter().any(|w| w == "/") {
        catalog.each_id(snapshot, None, add)?;
        if wanted.is_empty() {
            // An empty snapshot restores nothing, which is no error.
            return records(catalog, snapshot, tops.into_ids());
        }
    }
    for w in wanted {
        if w == "/" {
            if tops.0.is_empty() {
                return Err(no_item(snapshot, w));
            }
        } else if catalog.has_item(snapshot, w)? {
            tops.add(w.clone());
        } else {
            let mut any = false;
            catalog.each_id(snapshot, Some(w), &mut |id| {
                any = true;
                tops.add(id);
                Ok(())
            })?;
            if !any {
                return Err(no_item(snapshot, w));
            }
        }
    }
    records(catalog, snapshot, tops.into_ids())
}

fn no_item(snapshot: &str, item: &str) -> anyhow::Error {
    RepoError::NoItem {
        snapshot: crate::store::snapshot::short_id(snapshot).to_owned(),
        item: item.to_owned(),
    }
    .into()
}

/// The records of `ids`, which the snapshot holds (a catalog that lists
/// an id but has no row for it is damaged).
fn records(catalog: &Catalog, snapshot: &str, ids: Vec<String>) -> anyhow::Result<Vec<StoredItem>> {
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let found = catalog.records(snapshot, &refs)?;
    anyhow::ensure!(
        found.len() == ids.len(),
        "damaged catalog: snapshot {snapshot} lists items it has no row for"
    );
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::{is_at_or_below, Tops};

    #[test]
    fn selection_matches_whole_components() {
        assert!(is_at_or_below("/srv/a", "/srv/a"));
        assert!(is_at_or_below("/srv/a/b", "/srv/a"));
        assert!(is_at_or_below("/srv/a/b", "/srv/a/"));
        assert!(!is_at_or_below("/srv/ab", "/srv/a"));
        assert!(is_at_or_below("/srv/ab", "/"));
    }

    /// The tops kept as ids come in any order are those below no other
    /// id, as the quadratic definition says, for trees with odd ids (a
    /// trailing `/`, `/` itself, `//` inside an id, prefixes that are not
    /// parents).
    #[test]
    fn tops_are_the_ids_below_no_other_in_any_order() {
        let pool = [
            "/",
            "/srv",
            "/srv/a",
            "/srv/a/b",
            "/srv/ab",
            "/srv/a-",
            "/srv/a/",
            "/srv/a/b/c",
            "x",
            "x/",
            "x/y",
            "k:",
            "k//m",
            "k//m/n",
            "k//m/n/o",
            "a/b",
            "a",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2000 {
            let n = 1 + (next() % 8) as usize;
            let ids: Vec<&str> = (0..n)
                .map(|_| pool[(next() % pool.len() as u64) as usize])
                .collect();
            let mut tops = Tops::default();
            for id in &ids {
                tops.add((*id).to_owned());
            }
            let mut want: Vec<String> = ids
                .iter()
                .filter(|i| !ids.iter().any(|o| o != *i && is_at_or_below(i, o)))
                .map(|i| (*i).to_owned())
                .collect();
            want.sort();
            want.dedup();
            assert_eq!(tops.into_ids(), want, "ids {ids:?}");
        }
    }
}
