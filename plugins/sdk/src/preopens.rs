//! The directories and files a job granted, as WASI preopens named by their
//! guest paths, and which one holds a given path.
//!
//! A directory is granted at its own path, with everything below it; a file
//! granted alone is a preopen named by its path whose descriptor is the
//! file itself (stat it with [`crate::posix::fstat`]).
//!
//! On a native target (under the [`crate::mock`] host) there are no
//! preopens: [`all`] is empty, since no WASI descriptor exists there.

use crate::wasi::filesystem::types::Descriptor;
use crate::PluginError;

/// One granted directory or file.
pub struct Preopen {
    /// The descriptor the runner opened.
    pub dir: Descriptor,
    /// The guest path it stands for, as the runner named it.
    pub path: String,
    /// That path's components (`/srv/a` is `["srv", "a"]`, `/` is `[]`).
    pub components: Vec<String>,
}

/// Everything the job granted.
pub fn all() -> Vec<Preopen> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::wasi::filesystem::preopens::get_directories()
            .into_iter()
            .map(|(dir, path)| Preopen {
                components: path
                    .split('/')
                    .filter(|c| !c.is_empty() && *c != ".")
                    .map(str::to_owned)
                    .collect(),
                dir,
                path,
            })
            .collect()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        Vec::new()
    }
}

/// The preopen named exactly `path`, if any.
pub fn find<'p>(preopens: &'p [Preopen], path: &str) -> Option<&'p Preopen> {
    let comps = components(path).ok()?;
    preopens.iter().find(|p| p.components == comps)
}

/// The preopen with the longest path that contains the path `comps`, with
/// the components of the path below it (empty when the path is the
/// preopen's own).
pub fn locate<'p>(preopens: &'p [Preopen], comps: &[&str]) -> Option<(&'p Preopen, Vec<String>)> {
    let i = longest_prefix(preopens.iter().map(|p| p.components.as_slice()), comps)?;
    let p = &preopens[i];
    Some((
        p,
        comps[p.components.len()..]
            .iter()
            .map(|c| (*c).to_owned())
            .collect(),
    ))
}

/// Like [`locate`], or an `access-denied` error naming `path`.
pub fn locate_or_denied<'p>(
    preopens: &'p [Preopen],
    path: &str,
) -> Result<(&'p Preopen, Vec<String>), PluginError> {
    let comps = components(path)?;
    locate(preopens, &comps).ok_or_else(|| {
        PluginError::denied(format!(
            "{path} is not below anything the job grants (did the plan ask for it?)"
        ))
    })
}

/// Of several paths (as components), the index of the longest one that is
/// `comps` or one of its ancestors.
pub fn longest_prefix<'a>(
    paths: impl Iterator<Item = &'a [String]>,
    comps: &[&str],
) -> Option<usize> {
    paths
        .enumerate()
        .filter(|(_, p)| p.len() <= comps.len() && p.iter().zip(comps).all(|(a, b)| a == b))
        .max_by_key(|(_, p)| p.len())
        .map(|(i, _)| i)
}

/// Splits an absolute path into its components, refusing relative paths,
/// `.`, `..` and empty components (a trailing `/` is allowed) and NUL.
pub fn components(path: &str) -> Result<Vec<&str>, PluginError> {
    let invalid = |why: &str| PluginError::invalid(format!("path {path:?} {why}"));
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| invalid("is not absolute"))?;
    if path.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    rest.split('/')
        .map(|c| match c {
            "" => Err(invalid("has an empty component")),
            "." | ".." => Err(invalid("has a '.' or '..' component")),
            c => Ok(c),
        })
        .collect()
}

/// The absolute path of some components (`[]` is `/`).
pub fn join(comps: &[impl AsRef<str>]) -> String {
    let mut out = String::new();
    for c in comps {
        out.push('/');
        out.push_str(c.as_ref());
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// The parent directory of an absolute path (`/` for `/x` and for `/`).
pub fn parent(path: &str) -> Result<String, PluginError> {
    let comps = components(path)?;
    Ok(join(&comps[..comps.len().saturating_sub(1)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_joins_paths() {
        assert_eq!(components("/srv/a b/c").unwrap(), vec!["srv", "a b", "c"]);
        assert_eq!(components("/").unwrap(), Vec::<&str>::new());
        assert_eq!(components("/srv/").unwrap(), vec!["srv"]);
        for bad in ["srv", "/a/../b", "/a/./b", "/a//b", "/a\0", ""] {
            assert!(components(bad).is_err(), "{bad:?}");
        }
        assert_eq!(join(&["srv", "a"]), "/srv/a");
        assert_eq!(join(&[] as &[&str]), "/");
        assert_eq!(parent("/etc/hostname").unwrap(), "/etc");
        assert_eq!(parent("/etc").unwrap(), "/");
    }

    #[test]
    fn longest_prefix_wins() {
        let paths: Vec<Vec<String>> = vec![
            vec![],
            vec!["srv".into()],
            vec!["srv".into(), "a".into()],
            vec!["srv".into(), "ab".into()],
        ];
        let find =
            |p: &str| longest_prefix(paths.iter().map(Vec::as_slice), &components(p).unwrap());
        assert_eq!(find("/srv/a/x"), Some(2));
        assert_eq!(find("/srv/a"), Some(2));
        assert_eq!(find("/srv/b"), Some(1));
        assert_eq!(find("/etc"), Some(0));
        assert_eq!(
            longest_prefix(paths[1..].iter().map(Vec::as_slice), &["etc"]),
            None
        );
    }
}
