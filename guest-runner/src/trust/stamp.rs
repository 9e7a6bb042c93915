//! A record of a large file's hash (the runner, 25 MB; a container image),
//! so that the host does not hash an unchanged file again before every
//! job: the file's device, inode, size, modification and change
//! times, and the BLAKE3 it had. Any write to the file, or a new file put
//! in its place, changes the inode or the change time (which only the
//! kernel sets), and the file is hashed again. The stamp lives in the
//! host's own cache directory, never in the container.
//!
//! ```text
//! attache-verified-file 1
//! <dev> <ino> <size> <mtime ns> <ctime ns> <blake3 hex>
//! ```

use std::os::unix::fs::MetadataExt;
use std::path::Path;

const MAGIC: &str = "attache-verified-file 1";

/// What identifies a file's content without reading it.
pub fn identity(path: &Path) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    Some(format!(
        "{} {} {} {} {}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
    ))
}

/// The BLAKE3 (hex) `stamp` records for `file`, if it records the file
/// unchanged since.
fn recorded(stamp: &Path, file: &Path) -> Option<String> {
    let id = identity(file)?;
    let text = std::fs::read_to_string(stamp).ok()?;
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        return None;
    }
    let (stamped, hash) = lines.next()?.rsplit_once(' ')?;
    (stamped == id && hash.len() == 64).then(|| hash.to_owned())
}

/// The BLAKE3 (hex) of `file`: from `stamp` when it records the file
/// unchanged, else hashed now and recorded, when the file did not change
/// while it was read.
pub fn hash(stamp: &Path, file: &Path) -> std::io::Result<String> {
    if let Some(h) = recorded(stamp, file) {
        return Ok(h);
    }
    let before = identity(file);
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(file)?)?;
    let hash = h.finalize().to_hex().to_string();
    if let Some(id) = before.filter(|b| Some(b) == identity(file).as_ref()) {
        record(stamp, &id, &hash);
    }
    Ok(hash)
}

/// Whether `file` hashes to `expected` (see [`hash`]).
pub fn matches(stamp: &Path, file: &Path, expected: &str) -> std::io::Result<bool> {
    Ok(hash(stamp, file)? == expected)
}

/// Records that the file of identity `id` hashed to `blake3` (best
/// effort: without a stamp the file is only hashed again).
fn record(stamp: &Path, id: &str, blake3: &str) {
    if let Some(dir) = stamp.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let tmp = stamp.with_extension("tmp");
    let written = std::fs::write(&tmp, format!("{MAGIC}\n{id} {blake3}\n"))
        .and_then(|_| std::fs::rename(&tmp, stamp));
    if let Err(e) = written {
        tracing::debug!(stamp = %stamp.display(), "cannot record the verified file: {e}");
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_file_is_not_fresh_even_with_its_times_put_back() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("runner");
        let stamp = d.path().join("stamp");
        std::fs::write(&f, b"runner").unwrap();
        let h = blake3::hash(b"runner").to_hex().to_string();
        assert_eq!(recorded(&stamp, &f), None);
        assert!(!matches(&stamp, &f, &"0".repeat(64)).unwrap());
        assert_eq!(recorded(&stamp, &f), Some(h.clone()), "recorded");
        assert!(matches(&stamp, &f, &h).unwrap());
        // Same size, modification time put back: the change time moves.
        let before = std::fs::metadata(&f).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&f, b"RUNNER").unwrap();
        let times = std::fs::FileTimes::new().set_modified(before.modified().unwrap());
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_times(times)
            .unwrap();
        assert_eq!(recorded(&stamp, &f), None);
        assert!(!matches(&stamp, &f, &h).unwrap(), "hashed again");
        // A new file in its place.
        std::fs::remove_file(&f).unwrap();
        std::fs::write(&f, b"runner").unwrap();
        assert_eq!(recorded(&stamp, &f), None);
        assert!(matches(&stamp, &f, &h).unwrap());
    }
}
