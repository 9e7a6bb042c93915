//! A snapshot's item list read from the local catalog while the repository
//! opens: deriving the key (Argon2id) takes a tenth of a second, and a
//! restore of a large mailbox or tree spends tens of milliseconds more
//! parsing its item list before its runner can start. The catalog is not
//! encrypted, so the two can overlap.
//!
//! What is read ahead is only a guess: it is used only when the repository,
//! once open, resolves the same snapshot in the same catalog; otherwise the
//! items are read again as usual (see [`Repository::items_with`]).

use std::path::Path;

use super::{catalog_path, Catalog, Repository};
use crate::store::config::Config;
use crate::store::snapshot::{SnapshotInfo, StoredItem};

/// The items of one snapshot, read from a catalog before the repository
/// was open.
pub(crate) struct ItemsAhead {
    /// The repository id named by its config (not yet authenticated).
    repo_id: String,
    snapshot: String,
    items: Vec<StoredItem>,
}

/// The items of the one snapshot whose id starts with `prefix` in the
/// catalog of the repository at `root`, or `None` when there is no such
/// catalog (nothing is created), no single such snapshot, or any error (the
/// usual path then reports it).
pub(crate) fn read_items_ahead(root: &Path, cache: &Path, prefix: &str) -> Option<ItemsAhead> {
    if prefix.is_empty() {
        return None;
    }
    let config = Config::parse(
        &crate::store::backend::open(root)
            .ok()?
            .read("config")
            .ok()?,
    )
    .ok()?;
    let path = catalog_path(cache, &config.id);
    if !path.is_file() {
        return None;
    }
    let catalog = Catalog::open(&path).ok()?;
    let snapshot = catalog.only_snapshot_with_prefix(prefix).ok()??;
    let items = catalog.items(&snapshot, None).ok()?;
    Some(ItemsAhead {
        repo_id: config.id,
        snapshot,
        items,
    })
}

impl Repository {
    /// [`Repository::items`] of all of `snap`, taken from `ahead` when it
    /// was read from this repository's catalog for this snapshot (the rows
    /// of a snapshot never change: its id is its content's).
    pub(crate) fn items_with(
        &self,
        snap: &SnapshotInfo,
        ahead: Option<ItemsAhead>,
    ) -> anyhow::Result<Vec<StoredItem>> {
        match ahead {
            Some(a) if a.repo_id == self.store.config.id && a.snapshot == snap.id => Ok(a.items),
            _ => self.items(snap, None),
        }
    }
}
