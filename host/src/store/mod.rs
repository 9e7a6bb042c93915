//! The deduplicating store behind a repository.
//!
//! ```text
//! REPO/config              format, chunker parameters, encryption
//! REPO/keys/default        the master key sealed under the passphrase (encrypted repositories)
//! REPO/data/XX/PACKID      pack files of sealed, compressed blobs
//! REPO/index/ID            which pack holds which blob
//! REPO/snapshots/ID        sealed snapshot descriptions
//! REPO/locks/ID            who is using the repository
//! ```
//!
//! Content is cut into chunks by FastCDC, identified by keyed BLAKE3,
//! compressed with zstd and sealed with XChaCha20-Poly1305. Order of writes:
//! packs, then the index naming them, then the snapshot naming their blobs,
//! each durable before the next. A crash at any point leaves at most
//! unreferenced packs, which `prune` removes; never a snapshot with missing
//! data.

pub mod blob;
pub mod chunker;
pub mod crypto;
pub mod fsutil;
pub mod index;
pub mod key;
pub mod lock;
pub mod pack;
pub mod pack_set;
pub mod snapshot;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crypto::{BlobId, Cipher, MasterKey};
use index::Index;
use key::KeyFile;
pub use pack_set::PackSet;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    At {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(std::io::Error),
    #[error("{0} is not an Attaché repository (no config); run `attache init`")]
    NotARepository(PathBuf),
    #[error("{0} already holds a repository")]
    Exists(PathBuf),
    #[error("the repository is encrypted: set ATTACHE_PASSWORD or pass --password-file")]
    PasswordNeeded,
    #[error("wrong password")]
    WrongPassword,
    #[error("{0}")]
    Crypto(String),
    #[error("damaged repository: {0}")]
    Corrupt(String),
    #[error("blob {blob} is damaged: {why}")]
    Damaged { blob: BlobId, why: String },
    #[error("blob {0} is missing from the index")]
    MissingBlob(BlobId),
    #[error("{0}")]
    Locked(String),
}

impl StoreError {
    pub fn at(path: &Path, source: std::io::Error) -> Self {
        Self::At {
            path: path.to_owned(),
            source,
        }
    }
}

/// `config`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub format: u32,
    /// Random id of this repository (names its local catalog cache).
    pub id: String,
    pub chunker: chunker::Params,
    /// `xchacha20-poly1305` or `none`.
    pub encryption: String,
}

/// An open repository store.
pub struct Store {
    root: PathBuf,
    pub config: Config,
    cipher: Cipher,
    pub(crate) index: RwLock<Index>,
}

const KEY_FILE: &str = "keys/default";

impl Store {
    /// Creates a repository. With a password it is encrypted; without one,
    /// only when the caller asked for no encryption.
    pub fn init(root: &Path, password: Option<&str>) -> Result<Self, StoreError> {
        if root.join("config").exists() {
            return Err(StoreError::Exists(root.to_owned()));
        }
        for d in ["data", "index", "snapshots", "locks", "keys"] {
            fs::create_dir_all(root.join(d)).map_err(|e| StoreError::at(root, e))?;
        }
        let mut id = [0u8; 16];
        crypto::random(&mut id)?;
        let (cipher, encryption) = match password {
            Some(p) => {
                let key = MasterKey::random()?;
                let file = KeyFile::create(&key, p)?;
                let body = serde_json::to_vec_pretty(&file)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                fsutil::write_atomic(&root.join(KEY_FILE), &body)?;
                (Cipher::new(Some(&key)), "xchacha20-poly1305")
            }
            None => (Cipher::None, "none"),
        };
        let config = Config {
            format: 2,
            id: hex::encode(id),
            chunker: chunker::Params::default(),
            encryption: encryption.into(),
        };
        let body =
            serde_json::to_vec_pretty(&config).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        fsutil::write_atomic(&root.join("config"), &body)?;
        Ok(Self {
            root: root.to_owned(),
            config,
            cipher,
            index: RwLock::new(Index::default()),
        })
    }

    /// Opens a repository; an encrypted one needs its password.
    pub fn open(root: &Path, password: Option<&str>) -> Result<Self, StoreError> {
        let cpath = root.join("config");
        let bytes = match fs::read(&cpath) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotARepository(root.to_owned()))
            }
            Err(e) => return Err(StoreError::at(&cpath, e)),
        };
        let config: Config = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("config: {e}")))?;
        let cipher = match config.encryption.as_str() {
            "none" => Cipher::None,
            "xchacha20-poly1305" => {
                let password = password.ok_or(StoreError::PasswordNeeded)?;
                let kpath = root.join(KEY_FILE);
                let kbytes = fs::read(&kpath).map_err(|e| StoreError::at(&kpath, e))?;
                let file: KeyFile = serde_json::from_slice(&kbytes)
                    .map_err(|e| StoreError::Corrupt(format!("key file: {e}")))?;
                Cipher::new(Some(&file.open(password)?))
            }
            other => return Err(StoreError::Corrupt(format!("unknown encryption {other:?}"))),
        };
        let index = Index::load(root, &cipher)?;
        Ok(Self {
            root: root.to_owned(),
            config,
            cipher,
            index: RwLock::new(index),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn cipher(&self) -> &Cipher {
        &self.cipher
    }

    /// Reloads the index, after other processes added to the repository.
    pub fn reload_index(&self) -> Result<(), StoreError> {
        let idx = Index::load(&self.root, &self.cipher)?;
        *self.index.write().expect("index lock") = idx;
        Ok(())
    }

    pub fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().expect("index lock")
    }

    pub fn has(&self, id: &BlobId) -> bool {
        self.index().blobs.contains_key(id)
    }

    /// Reads, opens and checks one blob.
    pub fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>, StoreError> {
        let loc = *self
            .index()
            .blobs
            .get(id)
            .ok_or(StoreError::MissingBlob(*id))?;
        let bytes = pack::read_blob(&self.root, &loc.pack, loc.blob.offset, loc.blob.len)?;
        blob::decode(&self.cipher, id, loc.blob.raw_len, &bytes)
    }

    /// A writer of new blobs into new packs.
    pub fn writer(&self) -> PackSet<'_> {
        PackSet::new(self)
    }
}
