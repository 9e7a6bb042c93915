//! A local copy of a remote repository's index files and snapshot
//! descriptions, so that opening it, `snapshots`, `find` and `ls` need one
//! listing of each directory and no GET of those objects once they have
//! been read.
//!
//! Both kinds of object are named by the BLAKE3 of their bytes and never
//! change, so a copy is good exactly when its bytes hash to its name: that
//! is checked on every read from the cache, and a copy that fails it (a
//! damaged disk, an edit) is dropped and fetched again. Only bytes whose
//! hash matches their name are kept. The copies are the sealed bytes as the
//! repository holds them: an encrypted repository's cache reveals no more
//! than the repository does.
//!
//! The cache lives beside the catalog, in `CACHE/objects/REPO-ID/` (the
//! config's id), as `index/ID` and `snapshots/ID`. Copies of objects no
//! longer listed (forgotten snapshots, index files a prune replaced) are
//! removed when the directory is next listed. Failing to write the cache
//! is only a warning: the object was read, and the next open fetches it
//! again.
//!
//! `verify` and `repair` read the repository's objects themselves
//! ([`Store::read_objects_directly`](super::Store::read_objects_directly)),
//! since they check the repository, not this copy of it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::backend::{self, Backend, Entry};
use super::pack::parse_id;
use super::StoreError;

/// The cache of one repository's immutable metadata objects.
#[derive(Debug, Clone)]
pub(crate) struct ObjectCache {
    dir: PathBuf,
}

/// The directories whose objects are cached: each object in them is named
/// by the BLAKE3 of its bytes.
const CACHED: [&str; 2] = ["index", "snapshots"];

impl ObjectCache {
    /// The cache of repository `repo_id` under the cache directory `cache`
    /// (nothing is created until a copy is kept). `None` for an id that is
    /// not plain hex (the config checks that it is).
    pub(crate) fn new(cache: &Path, repo_id: &str) -> Option<Self> {
        if repo_id.is_empty() || !repo_id.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        Some(Self {
            dir: cache.join("objects").join(repo_id),
        })
    }

    /// Where the copy of `key` is, when `key` is a cached kind of object
    /// (`index/ID`, `snapshots/ID`), with the id its bytes must hash to.
    fn place(&self, key: &str) -> Option<(PathBuf, [u8; 32])> {
        let (dir, name) = key.split_once('/')?;
        if !CACHED.contains(&dir) {
            return None;
        }
        let id = parse_id(name)?;
        Some((self.dir.join(dir).join(name), id.0))
    }

    /// The object `key` of `b`: the cached copy when there is one whose
    /// bytes match its name, else the repository's (kept in the cache when
    /// they match theirs). Objects of other kinds are read from `b`.
    pub(crate) fn read(&self, b: &dyn Backend, key: &str) -> Result<Vec<u8>, StoreError> {
        let Some((path, id)) = self.place(key) else {
            return b.read(key);
        };
        match std::fs::read(&path) {
            Ok(bytes) if blake3::hash(&bytes).as_bytes() == &id => return Ok(bytes),
            Ok(_) => {
                tracing::warn!(
                    "{}: the cached copy does not match its name (damaged); it is fetched again",
                    path.display()
                );
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!("cannot remove {}: {e}", path.display());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot read the cached copy {}: {e}", path.display()),
        }
        let bytes = b.read(key)?;
        if blake3::hash(&bytes).as_bytes() == &id {
            if let Err(e) = keep(&path, &bytes) {
                tracing::warn!("cannot keep a copy of {key} in {}: {e}", path.display());
            }
        }
        Ok(bytes)
    }

    /// Removes the copies in directory `dir` (`index`, `snapshots`) of
    /// objects `listed` does not name: the repository no longer has them.
    pub(crate) fn retain(&self, dir: &str, listed: &[Entry]) {
        if !CACHED.contains(&dir) {
            return;
        }
        let live: HashSet<&str> = listed.iter().map(|e| backend::base(&e.key)).collect();
        let d = self.dir.join(dir);
        let Ok(entries) = std::fs::read_dir(&d) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if live.contains(name.as_ref()) {
                continue;
            }
            // Temporary files of a write cut short are removed too.
            if let Err(err) = std::fs::remove_file(e.path()) {
                tracing::warn!("cannot remove {}: {err}", e.path().display());
            }
        }
    }
}

/// Writes `bytes` to `path` whole: a temporary file beside it renamed
/// over it, so that a reader never sees half a copy (and a half-written
/// one would fail its hash anyway).
fn keep(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no directory"))?;
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::tests::Counting;

    #[test]
    fn copies_are_checked_against_their_names() {
        let d = tempfile::tempdir().unwrap();
        let b = Counting::new(&d.path().join("repo"));
        b.prepare().unwrap();
        let reads = || b.reads();
        let body = b"an index file".to_vec();
        let key = format!("index/{}", blake3::hash(&body).to_hex());
        b.create(&key, &body).unwrap();
        // Not named by its hash: never kept.
        b.create(&format!("index/{}", "0".repeat(64)), b"other")
            .unwrap();
        let c = ObjectCache::new(&d.path().join("cache"), "00ff").unwrap();
        assert_eq!(c.read(&b, &key).unwrap(), body);
        assert_eq!(reads(), 1);
        assert_eq!(c.read(&b, &key).unwrap(), body);
        assert_eq!(reads(), 1, "the second read is the cached copy");
        let zero = format!("index/{}", "0".repeat(64));
        c.read(&b, &zero).unwrap();
        c.read(&b, &zero).unwrap();
        assert_eq!(
            reads(),
            3,
            "a copy that does not match its name is not kept"
        );
        // A damaged copy is found, dropped and fetched again.
        let copy = d.path().join("cache/objects/00ff").join(&key);
        std::fs::write(&copy, b"an index filE").unwrap();
        assert_eq!(c.read(&b, &key).unwrap(), body);
        assert_eq!(reads(), 4);
        assert_eq!(std::fs::read(&copy).unwrap(), body, "the copy is mended");
        // Other kinds of object are not cached.
        b.write("config", b"c").unwrap();
        c.read(&b, "config").unwrap();
        c.read(&b, "config").unwrap();
        assert_eq!(reads(), 6);
        // Copies of objects no longer listed are dropped.
        c.retain("index", &[]);
        assert!(!copy.exists());
        assert!(ObjectCache::new(d.path(), "../x").is_none());
    }
}
