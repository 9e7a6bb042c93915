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
//! `REPO` is a local directory or an S3 bucket and prefix
//! (`s3://BUCKET/PREFIX`): the store reaches its files only through a
//! [`backend::Backend`], by these names.
//!
//! Content is cut into chunks by FastCDC, identified by keyed BLAKE3,
//! compressed with zstd and sealed with XChaCha20-Poly1305. Order of writes:
//! packs, then the index naming them, then the snapshot naming their blobs,
//! each durable before the next. A crash at any point leaves at most
//! unreferenced packs, which `prune` removes; never a snapshot with missing
//! data.

pub(crate) mod backend;
pub(crate) mod blob;
pub(crate) mod chunker;
pub(crate) mod config;
pub(crate) mod crypto;
pub(crate) mod damage;
#[cfg(test)]
mod format_tests;
pub(crate) mod fsutil;
pub(crate) mod gear;
pub(crate) mod header;
mod id_table;
pub(crate) mod index;
pub(crate) mod key;
pub(crate) mod lock;
pub(crate) mod object_cache;
pub(crate) mod pack;
pub(crate) mod pack_set;
#[cfg(test)]
mod parse_props;
pub(crate) mod snapshot;
pub(crate) mod spans;
pub(crate) mod xchacha;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use backend::Backend;

use chunker::Chunker;
pub(crate) use config::Config;
use config::{Chunking, Encryption};
use crypto::{BlobId, Cipher, MasterKey};
use gear::Gear;
use index::Index;
use key::{KeyFile, KEY_FILE};
use object_cache::ObjectCache;
pub(crate) use pack_set::PackSet;

/// What kind of failure a [`StoreError`] is, for callers that map errors to
/// statuses (the server) or decide what to do next, without reading messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// Something asked for does not exist (no repository, no snapshot).
    NotFound,
    /// A repository file is damaged or does not parse.
    Corrupt,
    /// Authentication failed or a password is missing or wrong.
    Crypto,
    /// A request or a repository setting is out of bounds.
    Invalid,
    /// Someone else holds the repository.
    Locked,
    /// A create-only write met an existing object: another writer was
    /// first (HTTP 412 from object storage).
    Exists,
    /// The object store refused the credentials.
    Denied,
    /// The operating system failed us.
    Io,
}

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("{path}: {source}")]
    At {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
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
    /// A repository file's JSON does not parse, or a value does not
    /// serialise: which, and serde's error.
    #[error("damaged repository: {what}: {source}")]
    Json {
        /// The file or value.
        what: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// A setting in the repository (config, key file) is out of bounds.
    #[error("{0}")]
    Invalid(String),
    /// A repository file is damaged: which file, and what is wrong with it.
    #[error("{}: {why}", path.display())]
    DamagedFile { path: PathBuf, why: String },
    /// An object-store request failed.
    #[error(transparent)]
    Backend(#[from] backend::BackendError),
}

impl StoreError {
    /// The kind of failure.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            Self::At { source, .. } | Self::Io(source)
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                ErrorKind::NotFound
            }
            Self::At { source, .. } | Self::Io(source)
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                ErrorKind::Exists
            }
            Self::At { .. } | Self::Io(_) => ErrorKind::Io,
            Self::Backend(e) => e.store_kind(),
            Self::NotARepository(_) => ErrorKind::NotFound,
            Self::Exists(_) | Self::Invalid(_) => ErrorKind::Invalid,
            Self::PasswordNeeded | Self::WrongPassword | Self::Crypto(_) => ErrorKind::Crypto,
            Self::Corrupt(_)
            | Self::Damaged { .. }
            | Self::MissingBlob(_)
            | Self::Json { .. }
            | Self::DamagedFile { .. } => ErrorKind::Corrupt,
            Self::Locked(_) => ErrorKind::Locked,
        }
    }

    /// A damaged file, named relative to the repository when it is in it.
    pub(crate) fn damaged(path: &Path, why: impl Into<String>) -> Self {
        Self::DamagedFile {
            path: path.to_owned(),
            why: why.into(),
        }
    }

    /// A JSON error of `what`, its source kept.
    pub(crate) fn json(what: impl Into<String>) -> impl FnOnce(serde_json::Error) -> Self {
        let what = what.into();
        move |source| Self::Json { what, source }
    }

    pub(crate) fn at(path: &Path, source: std::io::Error) -> Self {
        Self::At {
            path: path.to_owned(),
            source,
        }
    }
}

/// An open repository store.
pub(crate) struct Store {
    backend: Arc<dyn Backend>,
    pub config: Config,
    cipher: Cipher,
    gear: Arc<Gear>,
    pub(crate) index: RwLock<Index>,
    /// The local copy of a remote repository's index files and snapshot
    /// descriptions, when it has one.
    objects: Option<ObjectCache>,
    /// Set by [`Store::read_objects_directly`]: `objects` is not used.
    direct: AtomicBool,
}

/// The gear table `config` asks for.
fn gear_for(config: &Config, key: Option<&MasterKey>) -> Result<Arc<Gear>, StoreError> {
    match (config.chunking, key) {
        (Chunking::Standard, _) => Ok(Gear::standard()),
        (Chunking::Keyed, Some(k)) => Ok(Gear::keyed(&k.id)),
        (Chunking::Keyed, None) => Err(StoreError::Invalid(
            "config: keyed chunking in a repository without a key".into(),
        )),
    }
}

/// The index with the damage recorded in the repository marked.
fn load_index(
    b: &dyn Backend,
    cipher: &Cipher,
    objects: Option<&ObjectCache>,
) -> Result<Index, StoreError> {
    let mut index = Index::load(b, cipher, objects)?;
    for d in damage::load(b, cipher) {
        index.mark_bad(d.pack, d.blob, d.why);
    }
    Ok(index)
}

/// Writes the key file for `key` under `password`.
fn write_key(b: &dyn Backend, key: &MasterKey, password: &str) -> Result<(), StoreError> {
    let file = KeyFile::create(key, password)?;
    let body = serde_json::to_vec_pretty(&file).map_err(StoreError::json("config"))?;
    b.write(KEY_FILE, &body)
}

/// Upgrades a format-2 encrypted repository whose key is open: the config
/// gets its MAC (written first), then the key file records that the config
/// is authenticated, so a later unauthenticated config is refused. A
/// repository that cannot be written (read-only) is used as it is.
fn upgrade(b: &dyn Backend, config: &mut Config, key: &mut MasterKey, password: &str) {
    let result = (|| -> Result<(), StoreError> {
        if config.format != config::FORMAT {
            let mut c = config.clone();
            c.format = config::FORMAT;
            c.magic = config::MAGIC.into();
            c.chunking = Chunking::Standard;
            c.seal(key)?;
            b.write("config", &c.to_bytes()?)?;
            *config = c;
        }
        let mut k = key.clone();
        k.authenticated_config = true;
        write_key(b, &k, password)?;
        *key = k;
        Ok(())
    })();
    if let Err(e) = result {
        tracing::warn!(
            "cannot upgrade the repository's config to format {}: {e}",
            config::FORMAT
        );
    }
}

/// Largest read buffer a thread keeps between chunks (a chunk is at most
/// 8 MiB); a larger one, grown for an odd blob, is given back.
const KEEP_SEALED: usize = 16 << 20;

impl Store {
    /// Creates a repository. With a password it is encrypted; without one,
    /// only when the caller asked for no encryption.
    pub(crate) fn init(root: &Path, password: Option<&str>) -> Result<Self, StoreError> {
        let b = backend::open(root)?;
        if b.size("config")?.is_some() {
            return Err(StoreError::Exists(root.to_owned()));
        }
        b.prepare()?;
        let mut id = [0u8; 16];
        crypto::random(&mut id)?;
        let (config, key) = match password {
            Some(p) => {
                let mut key = MasterKey::random()?;
                key.authenticated_config = true;
                write_key(&*b, &key, p)?;
                let mut config = Config::new(hex::encode(id), Encryption::XChaCha20Poly1305);
                config.seal(&key)?;
                (config, Some(key))
            }
            None => (Config::new(hex::encode(id), Encryption::None), None),
        };
        // Create-only: of two `init`s at once, one wins and the other is
        // told the repository exists.
        match b.create("config", &config.to_bytes()?) {
            Err(e) if e.kind() == ErrorKind::Exists => {
                return Err(StoreError::Exists(root.to_owned()))
            }
            other => other?,
        }
        Ok(Self {
            backend: b,
            gear: gear_for(&config, key.as_ref())?,
            cipher: Cipher::new(key.as_ref()),
            config,
            index: RwLock::new(Index::default()),
            objects: None,
            direct: AtomicBool::new(false),
        })
    }

    /// Opens a repository; an encrypted one needs its password.
    #[cfg(test)]
    pub(crate) fn open(root: &Path, password: Option<&str>) -> Result<Self, StoreError> {
        Self::open_cached(root, password, None)
    }

    /// [`Store::open`], keeping copies of a remote repository's index files
    /// and snapshot descriptions under the local cache directory `cache`
    /// ([`object_cache`]), so that an open needs no GET of them once they
    /// were read.
    pub(crate) fn open_cached(
        root: &Path,
        password: Option<&str>,
        cache: Option<&Path>,
    ) -> Result<Self, StoreError> {
        let b = backend::open(root)?;
        let bytes = match b.read("config") {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(StoreError::NotARepository(root.to_owned()))
            }
            Err(e) => return Err(e),
        };
        let mut config = Config::parse(&bytes)?;
        let kpath = b.name(KEY_FILE);
        let key = match config.encryption {
            Encryption::None => {
                // Encryption cannot be switched off by editing the config:
                // a repository with a key, or a caller with a password,
                // expects it on.
                if b.size(KEY_FILE)?.is_some() {
                    return Err(StoreError::Crypto(format!(
                        "config says the repository is not encrypted, but it has a key ({}): the config was tampered with; refusing to use it",
                        kpath.display()
                    )));
                }
                if password.is_some() {
                    return Err(StoreError::Crypto(
                        "the repository is not encrypted, but a password was given: unset ATTACHE_PASSWORD (or drop --password-file) to use an unencrypted repository".into(),
                    ));
                }
                None
            }
            Encryption::XChaCha20Poly1305 => {
                let password = password.ok_or(StoreError::PasswordNeeded)?;
                let kbytes = b.read(KEY_FILE)?;
                let mut key = KeyFile::parse(&kbytes)?.open(password)?;
                if config.format == config::FORMAT {
                    config.authenticate(&key)?;
                } else if key.authenticated_config {
                    return Err(StoreError::Crypto(
                        "config: the repository was upgraded to an authenticated config, but this one carries none: it was replaced; refusing to use it".into(),
                    ));
                }
                if !key.authenticated_config {
                    upgrade(&*b, &mut config, &mut key, password);
                }
                Some(key)
            }
        };
        let cipher = Cipher::new(key.as_ref());
        let gear = gear_for(&config, key.as_ref())?;
        let objects = cache
            .filter(|_| b.remote())
            .and_then(|c| ObjectCache::new(c, &config.id));
        let index = load_index(&*b, &cipher, objects.as_ref())?;
        Ok(Self {
            backend: b,
            config,
            cipher,
            gear,
            index: RwLock::new(index),
            objects,
            direct: AtomicBool::new(false),
        })
    }

    /// The local copy of the repository's metadata objects, unless there
    /// is none or [`Store::read_objects_directly`] was called.
    pub(crate) fn object_cache(&self) -> Option<&ObjectCache> {
        self.objects
            .as_ref()
            .filter(|_| !self.direct.load(Ordering::Relaxed))
    }

    /// From now on reads index files and snapshot descriptions from the
    /// repository itself, not the local copy, and reloads the index so:
    /// `verify` and `repair` check the repository's objects, which may be
    /// damaged where the copy is not.
    pub(crate) fn read_objects_directly(&self) -> Result<(), StoreError> {
        if self.objects.is_some() && !self.direct.swap(true, Ordering::Relaxed) {
            self.reload_index()?;
        }
        Ok(())
    }

    /// Where the repository's files are.
    pub(crate) fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// The same, to hand to another thread.
    pub(crate) fn backend_arc(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }

    pub(crate) fn cipher(&self) -> &Cipher {
        &self.cipher
    }

    /// A chunker cutting as this repository does (keyed or not).
    pub(crate) fn chunker(&self) -> Chunker {
        Chunker::with_gear(self.config.chunker, self.gear.clone())
    }

    /// Reloads the index, after other processes added to the repository.
    pub(crate) fn reload_index(&self) -> Result<(), StoreError> {
        let idx = load_index(&*self.backend, &self.cipher, self.object_cache())?;
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = idx;
        Ok(())
    }

    pub(crate) fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    fn index_mut(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a usable copy of the blob is stored (not known damaged).
    pub(crate) fn has(&self, id: &BlobId) -> bool {
        self.index().has_good(id)
    }

    /// Marks a blob's copy in `pack` as damaged for this process.
    pub(crate) fn mark_bad(&self, pack: BlobId, blob: BlobId, why: String) {
        self.index_mut().mark_bad(pack, blob, why);
    }

    /// Checks that every indexed pack exists and is long enough for its
    /// blobs (one listing of the packs, no data read); the blobs of those
    /// that are not are marked damaged, so a backup stores them again.
    /// Returns what was found, naming the files.
    pub(crate) fn check_packs(&self) -> Vec<String> {
        let mut need: std::collections::HashMap<BlobId, (u64, Vec<BlobId>)> = Default::default();
        {
            let idx = self.index();
            let all = idx
                .locations()
                .chain(idx.copies.values().flatten().copied());
            for l in all {
                let e = need.entry(l.pack).or_default();
                e.0 = e.0.max(l.blob.offset.saturating_add(u64::from(l.blob.len)));
                e.1.push(l.blob.id);
            }
        }
        let mut found = Vec::new();
        if need.is_empty() {
            return found;
        }
        let sizes: std::collections::HashMap<String, u64> = match self.backend.list("data") {
            Ok(l) => l.into_iter().map(|e| (e.key, e.size)).collect(),
            Err(e) => {
                tracing::warn!("cannot list the packs: {e}");
                return vec![format!("cannot list the packs: {e}")];
            }
        };
        for (pack, (end, blobs)) in need {
            let key = pack::pack_key(&pack);
            let why = match sizes.get(&key) {
                Some(&len) if len >= end => continue,
                Some(len) => format!("pack is truncated: {len} bytes, its blobs need {end}"),
                None => "pack is missing".to_owned(),
            };
            found.push(format!("{}: {why}", self.backend.name(&key).display()));
            let mut idx = self.index_mut();
            for b in blobs {
                idx.mark_bad(pack, b, why.clone());
            }
        }
        found.sort();
        found
    }

    /// The plain size of a stored blob, if it is stored.
    pub(crate) fn raw_len(&self, id: &BlobId) -> Option<u32> {
        self.index().get(id).map(|l| l.blob.raw_len)
    }

    /// Tells the backend which ranges of which packs hold `blobs`, which
    /// are about to be read: the ranges a remote restore would fetch them
    /// in ([`spans::plan`]).
    pub(crate) fn will_read(&self, blobs: &[&BlobId]) {
        for batch in spans::plan(self, blobs) {
            for r in batch.ranges {
                self.backend
                    .will_read(&pack::pack_key(&r.pack), r.start, r.len);
            }
        }
    }

    /// Reads, opens and checks one blob, trying every copy; errors name the
    /// pack file and what is wrong with it.
    pub(crate) fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>, StoreError> {
        let mut plain = Vec::new();
        self.read_blob_into(id, &mut plain)?;
        Ok(plain)
    }

    /// [`read_blob`](Self::read_blob) into `plain` (emptied first, its
    /// memory reused): a restore reads thousands of chunks, and fresh
    /// buffers for each cost more in page faults than the decoding.
    pub(crate) fn read_blob_into(
        &self,
        id: &BlobId,
        plain: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        // The stored bytes are read into a buffer kept by this thread.
        thread_local! {
            static SEALED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let (first, copies) = {
            let idx = self.index();
            let first = idx.get(id).ok_or(StoreError::MissingBlob(*id))?;
            (first, idx.copies.get(id).cloned().unwrap_or_default())
        };
        let mut err = None;
        for loc in std::iter::once(first).chain(copies) {
            let path = self.backend.name(&pack::pack_key(&loc.pack));
            let got = SEALED.with_borrow_mut(|sealed| {
                let stored = pack::read_blob_into(
                    &*self.backend,
                    &loc.pack,
                    loc.blob.offset,
                    loc.blob.len,
                    sealed,
                )?;
                let got = blob::decode_into(&self.cipher, id, loc.blob.raw_len, stored, plain);
                // A buffer grown for one large chunk is not kept.
                if sealed.capacity() > KEEP_SEALED {
                    *sealed = Vec::new();
                }
                got
            });
            match got.map_err(|e| match e {
                StoreError::Damaged { why, .. } => {
                    StoreError::damaged(&path, format!("blob {id} is damaged: {why}"))
                }
                e => e,
            }) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    if err.is_none() {
                        err = Some(e);
                    }
                }
            }
        }
        Err(err.unwrap_or(StoreError::MissingBlob(*id)))
    }

    /// Opens and checks one blob's stored bytes (`sealed`, consumed: it is
    /// decrypted in place) into `plain`, as [`Store::read_blob_into`] does
    /// once it has read them.
    pub(crate) fn open_blob(
        &self,
        id: &BlobId,
        raw_len: u32,
        sealed: &mut [u8],
        plain: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        blob::decode_into(&self.cipher, id, raw_len, sealed, plain)
    }

    /// A writer of new blobs into new packs.
    pub(crate) fn writer(&self) -> PackSet<'_> {
        PackSet::new(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cuts(store: &Store, data: &[u8]) -> Vec<usize> {
        let mut c = store.chunker();
        let mut out = Vec::new();
        let mut f = |b: &[u8]| -> Result<(), ()> {
            out.push(b.len());
            Ok(())
        };
        c.push(data, &mut f).unwrap();
        c.finish(&mut f).unwrap();
        out
    }

    #[test]
    fn encrypted_repositories_cut_by_their_key() {
        let d = tempfile::tempdir().unwrap();
        let mut data = vec![0u8; 40 << 20];
        crypto::random(&mut data).unwrap();
        let a = Store::init(&d.path().join("a"), Some("pw")).unwrap();
        let b = Store::init(&d.path().join("b"), Some("pw")).unwrap();
        let plain = Store::init(&d.path().join("plain"), None).unwrap();
        assert_eq!(a.config.chunking, Chunking::Keyed);
        assert_eq!(plain.config.chunking, Chunking::Standard);
        let (ca, cb, cp) = (cuts(&a, &data), cuts(&b, &data), cuts(&plain, &data));
        assert_ne!(ca, cb, "two keys, two sets of cut points");
        assert_ne!(ca, cp);
        // Reopened, a repository cuts as before.
        drop(a);
        let again = Store::open(&d.path().join("a"), Some("pw")).unwrap();
        assert_eq!(cuts(&again, &data), ca);
        let unkeyed: Vec<usize> = fastcdc::v2020::FastCDC::new(
            &data,
            plain.config.chunker.min,
            plain.config.chunker.avg,
            plain.config.chunker.max,
        )
        .map(|c| c.length)
        .collect();
        assert_eq!(cp, unkeyed, "unkeyed repositories cut as before");
    }
}
