//! Item ids are absolute guest paths. This module turns them into path
//! components and refuses any that could name something outside the tree
//! they belong to.

use crate::attache::plugin::types::PluginError;

/// Splits an absolute path id into its components. Refuses relative ids,
/// `.` and `..` components, empty components other than a trailing slash,
/// and NUL bytes.
pub fn components(id: &str) -> Result<Vec<&str>, PluginError> {
    let rest = id
        .strip_prefix('/')
        .ok_or_else(|| invalid(id, "is not an absolute path"))?;
    if id.contains('\0') {
        return Err(invalid(id, "contains a NUL byte"));
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for c in rest.split('/') {
        match c {
            "" => return Err(invalid(id, "has an empty path component")),
            "." | ".." => return Err(invalid(id, "has a '.' or '..' component")),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Joins a parent id and a directory entry name into a child id.
pub fn child(parent: &str, name: &str) -> String {
    if parent.ends_with('/') {
        format!("{parent}{name}")
    } else {
        format!("{parent}/{name}")
    }
}

fn invalid(id: &str, why: &str) -> PluginError {
    PluginError::InvalidRequest(format!("item id {id:?} {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_absolute_paths() {
        assert_eq!(components("/srv/a b/c").unwrap(), vec!["srv", "a b", "c"]);
        assert_eq!(components("/").unwrap(), Vec::<&str>::new());
        assert_eq!(components("/srv/").unwrap(), vec!["srv"]);
    }

    #[test]
    fn refuses_escapes() {
        for bad in [
            "srv/a",
            "/srv/../etc",
            "/srv/./a",
            "/srv//a",
            "/a\0b",
            "../x",
            "",
        ] {
            assert!(components(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn joins_children() {
        assert_eq!(child("/", "srv"), "/srv");
        assert_eq!(child("/srv", "a"), "/srv/a");
    }
}
