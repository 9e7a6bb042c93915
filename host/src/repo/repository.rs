//! Opening a repository and finding its snapshots.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::item_index::IndexedItem;
use super::snapshot::Snapshot;

/// What can go wrong with a repository.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{0} is not an Attaché repository (no config.json)")]
    NotARepository(PathBuf),
    #[error("no snapshot matches {0:?}")]
    NoSuchSnapshot(String),
    #[error("{prefix:?} matches several snapshots: {matches}")]
    Ambiguous { prefix: String, matches: String },
    #[error(transparent)]
    Stream(#[from] guest_runner::stream::StreamError),
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RepoError + '_ {
    move |source| RepoError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A repository directory.
pub struct Repository {
    root: PathBuf,
}

const CONFIG: &str = "config.json";

impl Repository {
    /// Opens the repository at `root`, creating it when `create` is set and
    /// it does not exist.
    pub fn open(root: &Path, create: bool) -> Result<Self, RepoError> {
        let config = root.join(CONFIG);
        if !config.exists() {
            if !create {
                return Err(RepoError::NotARepository(root.to_owned()));
            }
            for d in ["snapshots", "tmp"] {
                fs::create_dir_all(root.join(d)).map_err(io_err(root))?;
            }
            write_synced(&config, br#"{"format":1}"#)?;
            sync_dir(root)?;
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    pub(crate) fn tmp_dir(&self, id: &str) -> PathBuf {
        self.root.join("tmp").join(id)
    }

    pub(crate) fn snapshot_dir(&self, id: &str) -> PathBuf {
        self.root.join("snapshots").join(id)
    }

    /// Makes a finished snapshot visible: renames it from `tmp/`.
    pub fn publish(&self, id: &str) -> Result<(), RepoError> {
        let from = self.tmp_dir(id);
        sync_dir(&from)?;
        let to = self.snapshot_dir(id);
        fs::rename(&from, &to).map_err(io_err(&to))?;
        sync_dir(&self.root.join("snapshots"))
    }

    /// Removes a staged snapshot that will not be published.
    pub fn discard(&self, id: &str) {
        let _ = fs::remove_dir_all(self.tmp_dir(id));
    }

    /// Every complete snapshot, oldest first.
    pub fn snapshots(&self) -> Result<Vec<Snapshot>, RepoError> {
        let dir = self.root.join("snapshots");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let e = e.map_err(io_err(&dir))?;
            let path = e.path().join("snapshot.json");
            out.push(read_json::<Snapshot>(&path)?);
        }
        out.sort_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)));
        Ok(out)
    }

    /// The snapshot whose id is or starts with `prefix`.
    pub fn find(&self, prefix: &str) -> Result<Snapshot, RepoError> {
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RepoError::NoSuchSnapshot(prefix.into()));
        }
        let mut m: Vec<Snapshot> = self
            .snapshots()?
            .into_iter()
            .filter(|s| s.id.starts_with(prefix))
            .collect();
        match m.len() {
            0 => Err(RepoError::NoSuchSnapshot(prefix.into())),
            1 => Ok(m.remove(0)),
            _ => Err(RepoError::Ambiguous {
                prefix: prefix.into(),
                matches: m
                    .iter()
                    .map(|s| s.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// The items of a snapshot, in stream order.
    pub fn items(&self, snap: &Snapshot) -> Result<Vec<IndexedItem>, RepoError> {
        read_json(&self.snapshot_dir(&snap.id).join("items.json"))
    }

    /// The stored stream of a snapshot.
    pub fn stream_path(&self, snap: &Snapshot) -> PathBuf {
        self.snapshot_dir(&snap.id).join("stream")
    }
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RepoError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|source| RepoError::Corrupt {
        path: path.to_owned(),
        source,
    })
}

/// Writes a file and syncs it to disk.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), RepoError> {
    let mut f = fs::File::create(path).map_err(io_err(path))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(io_err(path))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), RepoError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}
