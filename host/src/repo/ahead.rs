//! A restore's selection read from the local catalog while the repository
//! opens: deriving the key (Argon2id) takes a tenth of a second, and a
//! restore of a large tree spends tens of milliseconds more finding its
//! top items (what the runner is told to select) before its runner can
//! start. The catalog is not encrypted, so the two can overlap.
//!
//! What is read ahead is only a guess: it is used only when the repository,
//! once open, resolves the same snapshot in the same catalog; otherwise the
//! selection is read again as usual (see [`Repository::tops_with`]).

use std::path::Path;

use super::{catalog_path, Catalog, Repository};
use crate::store::config::Config;
use crate::store::snapshot::{SnapshotInfo, StoredItem};

/// The top items of a restore's selection from one snapshot, read from a
/// catalog before the repository was open.
pub(crate) struct TopsAhead {
    /// The repository id named by its config (not yet authenticated).
    repo_id: String,
    snapshot: String,
    /// The snapshot's plugin, as the catalog names it.
    plugin: String,
    /// What was wanted, and its top items.
    wanted: Vec<String>,
    tops: Vec<StoredItem>,
}

impl TopsAhead {
    /// Whether this was read for `snap` of the repository now open: only
    /// then may what was started from it be kept.
    pub(crate) fn is_for(&self, repo: &Repository, snap: &SnapshotInfo) -> bool {
        self.repo_id == repo.store.config.id
            && self.snapshot == snap.id
            && self.plugin == snap.plugin
    }

    /// The top items.
    pub(crate) fn tops(&self) -> &[StoredItem] {
        &self.tops
    }
}

/// The one snapshot whose id starts with `prefix` in the catalog of the
/// repository at `root`, found before the repository is open; `None` when
/// there is no such catalog (nothing is created), no single such snapshot,
/// or any error (the usual path then reports it).
pub(crate) struct SnapshotAhead {
    repo_id: String,
    snapshot: String,
    plugin: String,
    catalog: Catalog,
}

pub(crate) fn find_ahead(root: &Path, cache: &Path, prefix: &str) -> Option<SnapshotAhead> {
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
    let plugin = catalog.plugin_of(&snapshot).ok()??;
    Some(SnapshotAhead {
        repo_id: config.id,
        snapshot,
        plugin,
        catalog,
    })
}

impl SnapshotAhead {
    /// The snapshot's plugin, as the catalog names it.
    pub(crate) fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The top items of a restore of `wanted` (see [`super::selection::tops`]).
    pub(crate) fn tops(self, wanted: &[String]) -> Option<TopsAhead> {
        let tops = super::selection::tops(&self.catalog, &self.snapshot, wanted).ok()?;
        Some(TopsAhead {
            repo_id: self.repo_id,
            snapshot: self.snapshot,
            plugin: self.plugin,
            wanted: wanted.to_vec(),
            tops,
        })
    }
}

impl Repository {
    /// The top items of a restore of `wanted` from `snap` (see
    /// [`super::selection::tops`]), taken from `ahead` when it was read
    /// from this repository's catalog for this snapshot and selection (the
    /// rows of a snapshot never change: its id is its content's).
    pub(crate) fn tops_with(
        &self,
        snap: &SnapshotInfo,
        wanted: &[String],
        ahead: Option<TopsAhead>,
    ) -> anyhow::Result<Vec<StoredItem>> {
        match ahead {
            Some(a) if a.is_for(self, snap) && a.wanted == wanted => Ok(a.tops),
            _ => {
                self.check_cataloged(snap)?;
                super::selection::tops(&self.catalog, &snap.id, wanted)
            }
        }
    }
}
