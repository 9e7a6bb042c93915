//! What a selection of item ids needs from the filesystem: the one rule the
//! server (for backups of its own machine) and the runner in a guest
//! (`--grant-selected`) both apply.

use std::path::{Path, PathBuf};

/// The directory a selected item needs read access to: an absolute path's
/// own directory when it is one, else its parent (also when it does not
/// exist: the plugin then reports it missing); an `sqlite:///PATH`
/// database's directory, where its journal or WAL lives too. `None` for ids
/// that name no absolute path (`postgresql://…`).
pub fn read_grant(id: &str) -> Option<PathBuf> {
    let parent = |p: &Path| p.parent().unwrap_or(Path::new("/")).to_path_buf();
    if let Some(db) = id.strip_prefix("sqlite://") {
        let p = Path::new(db);
        return p.is_absolute().then(|| parent(p));
    }
    let p = Path::new(id);
    if !p.is_absolute() {
        return None;
    }
    Some(match std::fs::symlink_metadata(p) {
        Ok(md) if md.is_dir() => p.to_path_buf(),
        _ => parent(p),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_themselves_files_their_parent() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), b"x").unwrap();
        let s = |p: &Path| p.to_str().unwrap().to_owned();
        assert_eq!(read_grant(&s(d.path())), Some(d.path().to_path_buf()));
        assert_eq!(
            read_grant(&s(&d.path().join("f"))),
            Some(d.path().to_path_buf())
        );
        assert_eq!(
            read_grant(&s(&d.path().join("gone"))),
            Some(d.path().to_path_buf())
        );
        assert_eq!(
            read_grant(&format!("sqlite://{}", s(&d.path().join("app.db")))),
            Some(d.path().to_path_buf())
        );
        assert_eq!(read_grant("sqlite://relative.db"), None);
        assert_eq!(read_grant("postgresql://u@127.0.0.1:5432/db"), None);
        assert_eq!(read_grant("relative"), None);
    }
}
