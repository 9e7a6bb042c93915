//! Item ids are absolute guest paths. This module turns them into path
//! components and refuses any that could name something outside the tree
//! they belong to.

use attache_plugin_sdk::PluginError;

/// Splits an absolute path id into its components. Refuses relative ids,
/// `.` and `..` components, empty components other than a trailing slash,
/// and NUL bytes.
pub(crate) fn components(id: &str) -> Result<Vec<&str>, PluginError> {
    attache_plugin_sdk::preopens::components(id)
}

/// Joins a parent id and a directory entry name into a child id.
pub(crate) fn child(parent: &str, name: &str) -> String {
    if parent.ends_with('/') {
        format!("{parent}{name}")
    } else {
        format!("{parent}/{name}")
    }
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
