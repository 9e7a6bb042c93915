//! The library's in-process face of a repository: open an existing one
//! with its password, list its snapshots, read a snapshot's items and
//! verify it, without running the `attache` binary. It is all a test or a
//! tool needs to read a repository; writing (backups, forget, prune,
//! repair) stays behind the command line and the server.
//!
//! Errors are one typed [`Error`] with an [`ErrorKind`] to act on; the
//! cause is kept as its source.

use std::path::Path;

pub use guest_runner::stream::ItemRecord;

use crate::repo::{self, error::kind_of};
use crate::store::lock::Lock;
use crate::store::{self, Store};

/// What kind of failure an [`Error`] is, to act on without reading its
/// message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Something asked for does not exist: no repository at the path, no
    /// snapshot with the id, several snapshots starting with the prefix.
    NotFound,
    /// A repository file is damaged or does not parse.
    Corrupt,
    /// The password is missing or wrong, or the key or config failed to
    /// authenticate.
    Crypto,
    /// A repository setting is out of bounds.
    Invalid,
    /// Someone else holds the repository.
    Locked,
    /// A create-only write met an existing object (another writer).
    Exists,
    /// The object store refused the credentials.
    Denied,
    /// The operating system failed (reading, writing, the catalog).
    Io,
}

impl From<store::ErrorKind> for ErrorKind {
    fn from(k: store::ErrorKind) -> Self {
        match k {
            store::ErrorKind::NotFound => Self::NotFound,
            store::ErrorKind::Corrupt => Self::Corrupt,
            store::ErrorKind::Crypto => Self::Crypto,
            store::ErrorKind::Invalid => Self::Invalid,
            store::ErrorKind::Locked => Self::Locked,
            store::ErrorKind::Exists => Self::Exists,
            store::ErrorKind::Denied => Self::Denied,
            store::ErrorKind::Io => Self::Io,
        }
    }
}

/// A failure reading a repository: its [`kind`](Error::kind), its cause's
/// message, and the cause's own causes, which
/// [`std::error::Error::source`] walks (transparent, as
/// `#[error(transparent)]` is).
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    cause: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.cause.fmt(f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.source()
    }
}

impl Error {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        // An untyped failure below the repository (the catalog's SQLite, a
        // file it reads) is the operating system's or a library's: `Io`.
        let kind = kind_of(&e).map_or(ErrorKind::Io, ErrorKind::from);
        Self {
            kind,
            cause: e.into(),
        }
    }
}

impl From<store::StoreError> for Error {
    fn from(e: store::StoreError) -> Self {
        Self {
            kind: e.kind().into(),
            cause: Box::new(e),
        }
    }
}

/// One snapshot, as [`Repository::snapshots`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Its hex id (the BLAKE3 of its file).
    pub id: String,
    /// Seconds since the Unix epoch when the backup started.
    pub time: i64,
    /// Where the data came from (`local`, `HYPERVISOR/VM`).
    pub source: String,
    /// The plugin that took it.
    pub plugin: String,
    /// What the backup was asked to include, in the plugin's ids.
    pub includes: Vec<String>,
    /// How many items it holds.
    pub items: u64,
    /// Their content's total length in bytes.
    pub bytes: u64,
    /// Why it cannot be used whole, when it cannot (its item list does
    /// not read); `None` for a sound snapshot.
    pub damaged: Option<String>,
}

/// What [`Repository::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verified {
    /// Snapshots checked.
    pub snapshots: usize,
    /// Packs checked.
    pub packs: usize,
    /// Blobs read and checked (none without `read_data`).
    pub blobs_checked: usize,
    /// Every problem found, each naming the file or blob: empty when the
    /// repository is sound.
    pub problems: Vec<String>,
}

impl Verified {
    /// Whether verification found nothing wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// An existing repository, open in this process.
pub struct Repository {
    inner: repo::Repository,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("id", &self.inner.store.config.id)
            .finish_non_exhaustive()
    }
}

impl Repository {
    /// Opens the repository at `root` (never creates one: no repository
    /// there is [`ErrorKind::NotFound`]). An encrypted repository needs its
    /// `password`; an unencrypted one refuses one. The catalog that
    /// answers listings lives under `cache`, as `--cache-dir`'s does, and
    /// is caught up with the repository here. Opening takes no lock, but
    /// may upgrade an old repository's config in place, as the command
    /// line does.
    pub fn open(root: &Path, password: Option<&str>, cache: &Path) -> Result<Self, Error> {
        let store = Store::open_cached(root, password, Some(cache))?;
        let inner = repo::Repository::with_store(store, cache)?;
        Ok(Self { inner })
    }

    /// Every snapshot, oldest first; one whose item list does not read is
    /// listed with [`Snapshot::damaged`] set. A snapshot file that does
    /// not read at all has no description to list: it is left out here
    /// and [`verify`](Self::verify) names it.
    pub fn snapshots(&self) -> Result<Vec<Snapshot>, Error> {
        Ok(self
            .inner
            .listing()?
            .into_iter()
            .filter_map(|l| {
                let s = l.snapshot?;
                Some(Snapshot {
                    id: l.id,
                    time: s.time,
                    source: s.source,
                    plugin: s.plugin,
                    includes: s.includes,
                    items: s.items,
                    bytes: s.bytes,
                    damaged: l.damaged,
                })
            })
            .collect())
    }

    /// The items of the snapshot whose id is or starts with `snapshot`, in
    /// the order they were stored. No such snapshot, or several, is
    /// [`ErrorKind::NotFound`]; one whose item list cannot be read is
    /// [`ErrorKind::Corrupt`].
    pub fn items(&self, snapshot: &str) -> Result<Vec<ItemRecord>, Error> {
        let snap = self.inner.find_snapshot(snapshot)?;
        Ok(self
            .inner
            .items(&snap, None)?
            .into_iter()
            .map(|i| i.record)
            .collect())
    }

    /// Checks the repository's structure, and with `read_data` every byte
    /// of every pack, as `attache verify [--read-data]` does: under the
    /// same shared lock (an exclusive holder, such as a prune, is
    /// [`ErrorKind::Locked`]), and recording damage it finds, so that
    /// later backups store those chunks again.
    pub fn verify(&self, read_data: bool) -> Result<Verified, Error> {
        let _lock = Lock::acquire(&self.inner.store, false, "verify")?;
        let r = repo::verify::verify(&self.inner, read_data)?;
        let mut problems = r.errors;
        problems.extend(
            r.bad_blobs
                .into_iter()
                .map(|(blob, why)| format!("blob {blob}: {why}")),
        );
        Ok(Verified {
            snapshots: r.snapshots,
            packs: r.packs,
            blobs_checked: r.blobs_checked,
            problems,
        })
    }
}
