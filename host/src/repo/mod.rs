//! A repository: the deduplicating [`crate::store`] plus the catalog that
//! answers listings and searches without reading packs.

mod ahead;
mod catalog;
mod catalog_draft;
mod catalog_indexer;
pub(crate) mod error;
mod extract;
mod ingest;
pub(crate) mod ingest_rules;
mod parent;
mod password;
pub(crate) mod prune;
pub(crate) mod repair;
pub(crate) mod retention;
pub(crate) mod selection;
pub(crate) mod verify;

use std::path::{Path, PathBuf};

pub(crate) use ahead::find_ahead;
pub(crate) use catalog::{Catalog, Found};
pub(crate) use error::RepoError;
pub(crate) use extract::{write_restore_stream, Sent};
pub(crate) use ingest::{ingest, Origin};
pub(crate) use parent::{send_lines, Parent};
pub(crate) use password::Password;
pub(crate) use selection::is_at_or_below;

use crate::store::snapshot::SnapshotInfo;
use crate::store::{Store, StoreError};

/// An open repository with its catalog.
pub(crate) struct Repository {
    pub store: Store,
    pub catalog: Catalog,
}

impl Repository {
    /// Opens the repository at `root`. When none exists there and `create`
    /// is set, an encrypted one is made if a password is available; an
    /// unencrypted one is only made by `attache init --no-encryption`.
    pub(crate) fn open(
        root: &Path,
        password: &Password,
        cache: &Path,
        create: bool,
    ) -> anyhow::Result<Self> {
        let store = match Store::open_cached(root, password.get()?.as_deref(), Some(cache)) {
            Err(StoreError::NotARepository(_)) if create => match password.get()? {
                Some(p) => Store::init(root, Some(&p))?,
                None => anyhow::bail!(
                    "no repository at {}: run `attache init`, or set ATTACHE_PASSWORD to create an encrypted one",
                    root.display()
                ),
            },
            other => other?,
        };
        Self::with_store(store, cache)
    }

    /// The repository of an opened `store`, with its catalog in `cache`
    /// caught up with it.
    pub(crate) fn with_store(store: Store, cache: &Path) -> anyhow::Result<Self> {
        let catalog = Catalog::open(&catalog_path(cache, &store.config.id))?;
        let repo = Self { store, catalog };
        repo.catalog.sync(&repo.store)?;
        Ok(repo)
    }

    /// Catches up with what other processes wrote since it was opened.
    pub(crate) fn refresh(&self) -> anyhow::Result<()> {
        self.store.reload_index()?;
        self.catalog.sync(&self.store)
    }

    /// Whether the catalog holds `snap`'s item list, catching up once with
    /// the repository when it does not: another process may have written
    /// the snapshot after this one last looked (three backups at once, one
    /// taking another's snapshot as its parent).
    fn cataloged(&self, snap: &SnapshotInfo) -> anyhow::Result<bool> {
        if self.catalog.has(&snap.id)? {
            return Ok(true);
        }
        self.refresh()?;
        self.catalog.has(&snap.id)
    }

    /// [`Self::cataloged`], where a snapshot that is not is an error saying
    /// why: its item list is not in the catalog, or cannot be read.
    pub(crate) fn check_cataloged(&self, snap: &SnapshotInfo) -> anyhow::Result<()> {
        if self.cataloged(snap)? {
            return Ok(());
        }
        let why = match self.store.items(snap) {
            Ok(_) => "its item list is not in the catalog".to_owned(),
            Err(e) => format!("its item list cannot be read: {e}"),
        };
        Err(RepoError::DamagedSnapshot {
            id: snap.id.clone(),
            why,
        }
        .into())
    }

    /// Every snapshot, readable or not: a snapshot file that does not
    /// read, or whose item list does not, is listed as damaged with why.
    pub(crate) fn listing(&self) -> anyhow::Result<Vec<Listed>> {
        let l = self.store.snapshot_listing()?;
        let mut out = Vec::new();
        for s in l.good {
            let damaged = if self.cataloged(&s)? {
                None
            } else {
                Some(match self.store.items(&s) {
                    Ok(_) => "its item list is not in the catalog".to_owned(),
                    Err(e) => format!("its item list cannot be read: {e}"),
                })
            };
            out.push(Listed {
                snapshot: Some(s.clone()),
                id: s.id,
                damaged,
            });
        }
        for d in l.damaged {
            out.push(Listed {
                id: d.id,
                snapshot: None,
                damaged: Some(format!("{}: {}", d.path.display(), d.why)),
            });
        }
        Ok(out)
    }

    /// Items of a snapshot from the catalog (all, or `below` an item): a
    /// snapshot whose item list could not be read is an error saying so,
    /// and a `below` nothing matches is [`RepoError::NoItem`].
    pub(crate) fn items(
        &self,
        snap: &SnapshotInfo,
        below: Option<&str>,
    ) -> anyhow::Result<Vec<crate::store::snapshot::StoredItem>> {
        self.check_cataloged(snap)?;
        let items = self.catalog.items(&snap.id, below)?;
        if let Some(p) = below {
            if items.is_empty() {
                return Err(RepoError::NoItem {
                    snapshot: snap.short_id().to_owned(),
                    item: p.to_owned(),
                }
                .into());
            }
        }
        Ok(items)
    }

    /// The ids of the items of `snap` (all, or strictly below `below`),
    /// from the catalog, checked as [`Self::items`] checks.
    pub(crate) fn item_ids(
        &self,
        snap: &SnapshotInfo,
        below: Option<&str>,
    ) -> anyhow::Result<Vec<String>> {
        if !self.catalog.has(&snap.id)? {
            // The same error as a listing of its items.
            self.items(snap, below)?;
        }
        let ids = self.catalog.ids(&snap.id, below)?;
        if let Some(p) = below {
            if ids.is_empty() && self.catalog.records(&snap.id, &[p])?.is_empty() {
                return Err(RepoError::NoItem {
                    snapshot: snap.short_id().to_owned(),
                    item: p.to_owned(),
                }
                .into());
            }
        }
        Ok(ids)
    }

    /// The parent `snap` of an incremental backup, for checking what the
    /// runner reports unchanged: its item list brought into the catalog if
    /// it is not there yet, and the packs' sizes checked, so that items
    /// whose data is lost are not taken (the runner reads them again
    /// instead of the new snapshot pointing at lost chunks).
    pub(crate) fn parent(&self, snap: &SnapshotInfo) -> anyhow::Result<Parent> {
        self.store.check_packs();
        if !self.cataloged(snap)? {
            // The same error as a listing of its items.
            self.items(snap, None)?;
        }
        Ok(Parent::new(snap))
    }

    /// The snapshot whose id is or starts with `prefix`.
    pub(crate) fn find_snapshot(&self, prefix: &str) -> anyhow::Result<SnapshotInfo> {
        let listing = self.store.snapshot_listing()?;
        let m: Vec<&SnapshotInfo> = listing
            .good
            .iter()
            .filter(|s| !prefix.is_empty() && s.id.starts_with(prefix))
            .collect();
        match m.as_slice() {
            [one] => Ok((*one).clone()),
            [] => {
                if let Some(d) = listing
                    .damaged
                    .iter()
                    .find(|d| !prefix.is_empty() && d.id.starts_with(prefix))
                {
                    return Err(RepoError::DamagedSnapshot {
                        id: d.id.clone(),
                        why: format!("{}: {}", d.path.display(), d.why),
                    }
                    .into());
                }
                Err(RepoError::NoSnapshot(prefix.to_owned()).into())
            }
            many => Err(RepoError::Ambiguous {
                prefix: prefix.to_owned(),
                matches: many
                    .iter()
                    .map(|s| s.short_id())
                    .collect::<Vec<_>>()
                    .join(", "),
            }
            .into()),
        }
    }
}

/// One entry of [`Repository::listing`].
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub id: String,
    /// The description, when its file reads.
    pub snapshot: Option<SnapshotInfo>,
    /// Why the snapshot cannot be used whole, when it cannot.
    pub damaged: Option<String>,
}

impl Listed {
    /// As JSON: the description (or just the id) and `damaged` when set.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let mut v = match &self.snapshot {
            Some(s) => serde_json::to_value(s).unwrap_or_else(|_| serde_json::json!({})),
            None => serde_json::json!({}),
        };
        if let Some(o) = v.as_object_mut() {
            o.insert("id".into(), self.id.clone().into());
            if let Some(d) = &self.damaged {
                o.insert("damaged".into(), d.clone().into());
            }
        }
        v
    }
}
/// The catalog of repository `id` in the local cache: rebuilt from the
/// repository whenever it is missing, so it holds nothing the repository
/// does not (and, for an encrypted repository, stays off the repository).
pub(crate) fn catalog_path(cache: &Path, id: &str) -> PathBuf {
    cache.join("catalog").join(format!("{id}.sqlite"))
}
