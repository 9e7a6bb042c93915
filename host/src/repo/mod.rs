//! A repository: the deduplicating [`crate::store`] plus the catalog that
//! answers listings and searches without reading packs.

mod catalog;
mod extract;
mod ingest;
mod password;
pub mod prune;
pub mod retention;
mod selection;
pub mod verify;

use std::path::{Path, PathBuf};

pub use catalog::{Catalog, Found};
pub use extract::{write_restore_stream, Sent};
pub use ingest::{ingest, Origin};
pub use password::Password;
pub use selection::is_at_or_below;

use crate::store::snapshot::SnapshotInfo;
use crate::store::{Store, StoreError};

/// An open repository with its catalog.
pub struct Repository {
    pub store: Store,
    pub catalog: Catalog,
}

impl Repository {
    /// Opens the repository at `root`. When none exists there and `create`
    /// is set, an encrypted one is made if a password is available; an
    /// unencrypted one is only made by `attache init --no-encryption`.
    pub fn open(
        root: &Path,
        password: &Password,
        cache: &Path,
        create: bool,
    ) -> anyhow::Result<Self> {
        let store = match Store::open(root, password.get()?.as_deref()) {
            Err(StoreError::NotARepository(_)) if create => match password.get()? {
                Some(p) => Store::init(root, Some(&p))?,
                None => anyhow::bail!(
                    "no repository at {}: run `attache init`, or set ATTACHE_PASSWORD to create an encrypted one",
                    root.display()
                ),
            },
            other => other?,
        };
        let catalog = Catalog::open(&catalog_path(cache, &store.config.id))?;
        let repo = Self { store, catalog };
        repo.catalog.sync(&repo.store)?;
        Ok(repo)
    }

    /// Catches up with what other processes wrote since it was opened.
    pub fn refresh(&self) -> anyhow::Result<()> {
        self.store.reload_index()?;
        self.catalog.sync(&self.store)
    }

    /// The snapshot whose id is or starts with `prefix`.
    pub fn find_snapshot(&self, prefix: &str) -> anyhow::Result<SnapshotInfo> {
        let all = self.store.snapshots()?;
        let m: Vec<&SnapshotInfo> = all
            .iter()
            .filter(|s| !prefix.is_empty() && s.id.starts_with(prefix))
            .collect();
        match m.as_slice() {
            [one] => Ok((*one).clone()),
            [] => anyhow::bail!("no snapshot matches {prefix:?}"),
            many => anyhow::bail!(
                "{prefix:?} matches several snapshots: {}",
                many.iter()
                    .map(|s| s.short_id())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The catalog of repository `id` in the local cache: rebuilt from the
/// repository whenever it is missing, so it holds nothing the repository
/// does not (and, for an encrypted repository, stays off the repository).
pub fn catalog_path(cache: &Path, id: &str) -> PathBuf {
    cache.join("catalog").join(format!("{id}.sqlite"))
}
