//! Where a repository's files live: a local directory ([`local`], the
//! default, its on-disk layout unchanged) or an S3-compatible bucket
//! ([`s3`], `s3://BUCKET/PREFIX`). The store names every file by a key
//! relative to the repository (`config`, `keys/default`, `data/XX/ID`,
//! `index/ID`, `snapshots/ID`, `locks/ID`, `damage`) and reaches it only
//! through [`Backend`], so both hold the same layout.
//!
//! Every name the store writes is either content-addressed (packs, index
//! files, snapshots: named by the BLAKE3 of their bytes), written with
//! [`Backend::create`], which never replaces an existing object (on S3 a
//! conditional `If-None-Match: *` PUT), or a small file of one writer
//! (config, key, lock, damage record) written whole with [`Backend::write`].

pub(crate) mod local;
pub(crate) mod s3;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{ErrorKind, StoreError};

/// What kind of failure a [`BackendError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackendErrorKind {
    /// The object does not exist.
    NotFound,
    /// A create-only write met an existing object (HTTP 412).
    Exists,
    /// The bucket does not exist.
    NoBucket,
    /// The credentials were refused or lack a permission.
    Denied,
    /// The endpoint could not be reached or did not answer in time.
    Unreachable,
    /// The settings (URL, endpoint) are unusable.
    Invalid,
    /// Anything else the object store said.
    Other,
}

/// A failure of an object-store request, naming the object's URL.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {what}")]
pub(crate) struct BackendError {
    /// What kind of failure.
    pub kind: BackendErrorKind,
    /// The object (or bucket) asked for, as `s3://BUCKET/KEY`.
    pub url: String,
    /// What went wrong, in words.
    pub what: String,
    /// The client's error.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl BackendError {
    /// The store's kind of this failure.
    pub(crate) fn store_kind(&self) -> ErrorKind {
        match self.kind {
            BackendErrorKind::NotFound | BackendErrorKind::NoBucket => ErrorKind::NotFound,
            BackendErrorKind::Exists => ErrorKind::Exists,
            BackendErrorKind::Denied => ErrorKind::Denied,
            BackendErrorKind::Invalid => ErrorKind::Invalid,
            BackendErrorKind::Unreachable | BackendErrorKind::Other => ErrorKind::Io,
        }
    }
}

/// One stored object: its key (relative to the repository) and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub key: String,
    pub size: u64,
}

/// The storage of one repository. Synchronous: the store calls it from its
/// own threads (and the server's blocking threads).
pub(crate) trait Backend: Send + Sync {
    /// How `key` is named in messages: a path under the directory, or the
    /// object's `s3://` URL.
    fn name(&self, key: &str) -> PathBuf;
    /// Makes what a new repository needs before its first write (the
    /// directories of a local one).
    fn prepare(&self) -> Result<(), StoreError>;
    /// The whole object.
    fn read(&self, key: &str) -> Result<Vec<u8>, StoreError>;
    /// Fills `buf` from byte `offset` of the object; returns how many bytes
    /// it holds there (fewer than `buf.len()` when the object ends first).
    fn read_at(&self, key: &str, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError>;
    /// Writes the object whole, replacing any: after a crash it is either
    /// the old one or the new one, complete.
    fn write(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// Writes the object whole only if none exists under `key`; otherwise
    /// fails with [`ErrorKind::Exists`] and the existing object is kept.
    fn create(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// Every object whose key starts with `dir/`, at any depth, with its
    /// size; temporary files of unfinished writes are left out.
    fn list(&self, dir: &str) -> Result<Vec<Entry>, StoreError>;
    /// Removes the object; one already gone is no error (another process
    /// removed it first).
    fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// The object's size, or `None` when it does not exist.
    fn size(&self, key: &str) -> Result<Option<u64>, StoreError>;
    /// Tells the backend that `len` bytes of `key` from `offset` will be
    /// read soon, so that it may start reading them now. Only a hint:
    /// a backend with no use for it does nothing, and nothing fails.
    fn will_read(&self, _key: &str, _offset: u64, _len: u64) {}
    /// Whether each request costs a round trip over the network (object
    /// storage), so that the store keeps local copies of immutable
    /// metadata ([`super::object_cache`]) and a restore reads neighbouring
    /// chunks in one request. Neither is worth it for a local directory,
    /// which is only told what a restore will read next
    /// ([`will_read`](Self::will_read)) so that the kernel reads it ahead.
    fn remote(&self) -> bool {
        false
    }
}

/// The backend of the repository at `repo`: `s3://BUCKET/PREFIX`, or else a
/// local directory.
pub(crate) fn open(repo: &Path) -> Result<Arc<dyn Backend>, StoreError> {
    match repo.to_str() {
        Some(s) if s.starts_with(s3::SCHEME) => Ok(Arc::new(s3::S3Backend::open(s)?)),
        _ => Ok(Arc::new(local::LocalBackend::new(repo))),
    }
}

/// Stores a content-addressed object (named by the hash of `bytes`). An
/// object already there under that name holds the same bytes, and is kept,
/// unless it was damaged: then the right bytes replace it.
pub(crate) fn put_content(b: &dyn Backend, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
    match b.create(key, bytes) {
        Err(e) if e.kind() == ErrorKind::Exists => match b.read(key) {
            Ok(old) if old == bytes => Ok(()),
            _ => b.write(key, bytes),
        },
        other => other,
    }
}

/// The last part of a key (`data/ab/abcd…` → `abcd…`).
pub(crate) fn base(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A local directory whose whole and ranged reads are counted.
    pub(crate) struct Counting {
        inner: local::LocalBackend,
        reads: AtomicUsize,
        ranged: AtomicUsize,
    }

    impl Counting {
        pub(crate) fn new(dir: &Path) -> Self {
            Self {
                inner: local::LocalBackend::new(dir),
                reads: AtomicUsize::new(0),
                ranged: AtomicUsize::new(0),
            }
        }

        /// Whole reads so far.
        pub(crate) fn reads(&self) -> usize {
            self.reads.load(Ordering::SeqCst)
        }

        /// Ranged reads so far.
        pub(crate) fn ranged(&self) -> usize {
            self.ranged.load(Ordering::SeqCst)
        }
    }

    impl Backend for Counting {
        fn name(&self, key: &str) -> PathBuf {
            self.inner.name(key)
        }
        fn prepare(&self) -> Result<(), StoreError> {
            self.inner.prepare()
        }
        fn read(&self, key: &str) -> Result<Vec<u8>, StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.inner.read(key)
        }
        fn read_at(&self, key: &str, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
            self.ranged.fetch_add(1, Ordering::SeqCst);
            self.inner.read_at(key, offset, buf)
        }
        fn write(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
            self.inner.write(key, bytes)
        }
        fn create(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
            self.inner.create(key, bytes)
        }
        fn list(&self, dir: &str) -> Result<Vec<Entry>, StoreError> {
            self.inner.list(dir)
        }
        fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.inner.delete(key)
        }
        fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
            self.inner.size(key)
        }
    }

    /// What both backends must do, run on the local one here and on a real
    /// S3 server in tests/s3_repo.rs.
    pub(crate) fn contract(b: &dyn Backend) {
        b.prepare().unwrap();
        assert_eq!(b.size("index/a").unwrap(), None);
        assert!(b.list("index").unwrap().is_empty());
        b.create("index/a", b"one").unwrap();
        let e = b.create("index/a", b"two").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Exists, "{e}");
        assert_eq!(b.read("index/a").unwrap(), b"one");
        b.write("config", b"first").unwrap();
        b.write("config", b"second").unwrap();
        assert_eq!(b.read("config").unwrap(), b"second");
        b.create("data/ab/abcd", b"0123456789").unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(b.read_at("data/ab/abcd", 3, &mut buf).unwrap(), 4);
        assert_eq!(&buf, b"3456");
        assert_eq!(b.read_at("data/ab/abcd", 8, &mut buf).unwrap(), 2);
        let mut l = b.list("data").unwrap();
        l.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(
            l,
            vec![Entry {
                key: "data/ab/abcd".into(),
                size: 10
            }]
        );
        assert_eq!(b.size("data/ab/abcd").unwrap(), Some(10));
        b.delete("data/ab/abcd").unwrap();
        b.delete("data/ab/abcd").unwrap();
        assert_eq!(
            b.read("data/ab/abcd").unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert!(b.list("data").unwrap().is_empty());
        put_content(b, "index/a", b"one").unwrap();
        assert_eq!(b.read("index/a").unwrap(), b"one");
    }

    #[test]
    fn local_backend_keeps_the_contract() {
        let d = tempfile::tempdir().unwrap();
        contract(&local::LocalBackend::new(d.path()));
        // Temporary files of unfinished writes are not listed.
        std::fs::write(d.path().join("index/.tmp-1-x"), b"half").unwrap();
        let l = local::LocalBackend::new(d.path()).list("index").unwrap();
        assert_eq!(l.len(), 1, "{l:?}");
    }
}
