//! The container manifest: which runner and plugins a container holds, with
//! the BLAKE3 hash of each, and a version id derived from all of them.
//!
//! The container (a directory, later an ISO image) is laid out as
//!
//! ```text
//! guest-runner            the static runner
//! manifest.json           this manifest
//! plugins/NAME.wasm       one component per plugin
//! plugins/NAME.cwasm      optional: the component compiled ahead of time by
//!                         this runner, for guests too slow to compile it
//! manifest.sig            publishers' signatures on manifest.json (see
//!                         `crate::trust`)
//! ```
//!
//! The runner loads a plugin only after its bytes hash to the manifest's value,
//! so a swapped or damaged component never runs, and only after the
//! manifest's signatures are checked against the trust it is given.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the manifest inside a container.
pub const MANIFEST_FILE: &str = "manifest.json";
/// File name of the runner inside a container.
pub const RUNNER_FILE: &str = "guest-runner";
/// The WIT package plugins of this container are built against.
pub const WIT_PACKAGE: &str = "attache:plugin@0.1.0";

/// One file of the container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the container root.
    pub file: String,
    /// BLAKE3 of the file's bytes, in hex.
    pub blake3: String,
    /// Size in bytes.
    pub size: u64,
}

/// A plugin of the container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PluginEntry {
    /// The plugin's name, as jobs ask for it.
    pub name: String,
    /// Where and how big its component is.
    #[serde(flatten)]
    pub entry: Entry,
    /// The component compiled ahead of time, if the container carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precompiled: Option<Precompiled>,
    /// The contract version (`0.2.0`) the plugin was built against, as the
    /// runner found it when it compiled the plugin for the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<String>,
}

/// A component compiled ahead of time for a runner's engine.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Precompiled {
    /// The engine it was compiled for (the runner's `engine_id`); another
    /// engine compiles the component itself instead.
    pub engine: String,
    /// Where and how big the compiled form is.
    #[serde(flatten)]
    pub entry: Entry,
}

/// The manifest itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Manifest format (1).
    pub format: u32,
    /// Content-derived version id of the whole container.
    pub version: String,
    /// The WIT package the plugins implement.
    pub wit: String,
    /// The runner binary.
    pub runner: Entry,
    /// The plugins, sorted by name.
    pub plugins: Vec<PluginEntry>,
}

/// What can go wrong with a manifest or the files it names.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The manifest does not parse.
    #[error("{path} is not a valid manifest: {source}")]
    Parse {
        /// The manifest.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// A job asked for a plugin the container does not have.
    #[error("no plugin named {name:?} in the container (it has: {known})")]
    UnknownPlugin {
        /// The name asked for.
        name: String,
        /// The container's plugins, for the message.
        known: String,
    },
    /// A file's hash is not the manifest's.
    #[error("plugin {name:?}: {file} does not match the manifest (expected blake3 {expected}, found {found}); refusing to load it")]
    HashMismatch {
        /// The plugin.
        name: String,
        /// The file, relative to the container.
        file: String,
        /// The hash the manifest names.
        expected: String,
        /// The hash of the file as read.
        found: String,
    },
    /// A plugin name outside the allowed characters.
    #[error("invalid plugin name {0:?}: use lowercase letters, digits, '-' and '_'")]
    BadName(String),
}

impl Manifest {
    /// Reads `DIR/manifest.json`.
    pub fn load(dir: &Path) -> Result<Self, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = fs::read(&path).map_err(|source| ManifestError::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse(&bytes, &path)
    }

    /// Parses a manifest's bytes (read from `path`).
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, ManifestError> {
        serde_json::from_slice(bytes).map_err(|source| ManifestError::Parse {
            path: path.into(),
            source,
        })
    }

    /// Hashes the runner and plugins already laid out in `dir` and makes
    /// the manifest for them.
    /// With `engine`, plugins whose `plugins/NAME.cwasm` exists carry it as
    /// their precompiled form for that engine.
    pub fn for_dir(
        dir: &Path,
        plugin_names: &[String],
        engine: Option<&str>,
    ) -> Result<Self, ManifestError> {
        let runner = entry(dir, RUNNER_FILE)?;
        let mut plugins = Vec::new();
        let mut names = plugin_names.to_vec();
        names.sort();
        names.dedup();
        for name in names {
            check_name(&name)?;
            let compiled = precompiled_file(&name);
            let precompiled = match engine {
                Some(engine) if dir.join(&compiled).is_file() => Some(Precompiled {
                    engine: engine.into(),
                    entry: entry(dir, &compiled)?,
                }),
                _ => None,
            };
            plugins.push(PluginEntry {
                entry: entry(dir, &plugin_file(&name))?,
                name,
                precompiled,
                contract: None,
            });
        }
        let mut h = blake3::Hasher::new();
        h.update(WIT_PACKAGE.as_bytes());
        let files = plugins.iter().flat_map(|p| {
            std::iter::once(&p.entry).chain(p.precompiled.as_ref().map(|c| &c.entry))
        });
        for e in std::iter::once(&runner).chain(files) {
            h.update(e.file.as_bytes());
            h.update(b"\0");
            h.update(e.blake3.as_bytes());
            h.update(b"\n");
        }
        let version = h.finalize().to_hex()[..16].to_string();
        Ok(Self {
            format: 1,
            version,
            wit: WIT_PACKAGE.into(),
            runner,
            plugins,
        })
    }

    /// Writes `DIR/manifest.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<(), ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let tmp = dir.join(".manifest.json.tmp");
        let werr = |source| ManifestError::Write {
            path: path.clone(),
            source,
        };
        let body = serde_json::to_vec_pretty(self).map_err(|e| werr(std::io::Error::other(e)))?;
        let mut f = fs::File::create(&tmp).map_err(werr)?;
        f.write_all(&body)
            .and_then(|_| f.sync_all())
            .map_err(werr)?;
        fs::rename(&tmp, &path).map_err(werr)
    }

    /// The entry of plugin `name`.
    pub fn plugin(&self, name: &str) -> Result<&PluginEntry, ManifestError> {
        self.plugins
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| ManifestError::UnknownPlugin {
                name: name.into(),
                known: self
                    .plugins
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Reads plugin `name` from the container at `dir` and returns its bytes
    /// only if they match the manifest.
    pub fn read_verified(&self, dir: &Path, name: &str) -> Result<Vec<u8>, ManifestError> {
        verified(dir, name, &self.plugin(name)?.entry)
    }

    /// Reads plugin `name`'s precompiled form for `engine`, if the container
    /// has one, only if it matches the manifest.
    pub fn read_verified_precompiled(
        &self,
        dir: &Path,
        name: &str,
        engine: &str,
    ) -> Result<Option<Vec<u8>>, ManifestError> {
        match &self.plugin(name)?.precompiled {
            Some(c) if c.engine == engine => verified(dir, name, &c.entry).map(Some),
            _ => Ok(None),
        }
    }

    /// Reads the runner from the container at `dir`, only if it matches.
    pub fn read_verified_runner(&self, dir: &Path) -> Result<Vec<u8>, ManifestError> {
        verified(dir, RUNNER_FILE, &self.runner)
    }
}

/// The bytes of `entry` in the container at `dir`, if they hash to what
/// the manifest says.
fn verified(dir: &Path, name: &str, entry: &Entry) -> Result<Vec<u8>, ManifestError> {
    let path = dir.join(&entry.file);
    let bytes = fs::read(&path).map_err(|source| ManifestError::Read { path, source })?;
    let found = blake3::hash(&bytes).to_hex().to_string();
    if found != entry.blake3 {
        return Err(ManifestError::HashMismatch {
            name: name.into(),
            file: entry.file.clone(),
            expected: entry.blake3.clone(),
            found,
        });
    }
    Ok(bytes)
}

/// Where plugin `name` lives inside a container.
pub fn plugin_file(name: &str) -> String {
    format!("plugins/{name}.wasm")
}

/// Where plugin `name`'s precompiled form lives inside a container.
pub fn precompiled_file(name: &str) -> String {
    format!("plugins/{name}.cwasm")
}

/// Plugin names become file names: keep them plain.
pub fn check_name(name: &str) -> Result<(), ManifestError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ManifestError::BadName(name.into()))
    }
}

fn entry(dir: &Path, file: &str) -> Result<Entry, ManifestError> {
    let path = dir.join(file);
    let bytes = fs::read(&path).map_err(|source| ManifestError::Read { path, source })?;
    Ok(Entry {
        file: file.into(),
        blake3: blake3::hash(&bytes).to_hex().to_string(),
        size: bytes.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("plugins")).unwrap();
        fs::write(d.path().join(RUNNER_FILE), b"runner").unwrap();
        fs::write(d.path().join("plugins/fs.wasm"), b"plugin").unwrap();
        d
    }

    #[test]
    fn verifies_and_refuses_changed_plugins() {
        let d = container();
        let m = Manifest::for_dir(d.path(), &["fs".into()], None).unwrap();
        m.write(d.path()).unwrap();
        let m = Manifest::load(d.path()).unwrap();
        assert_eq!(m.read_verified(d.path(), "fs").unwrap(), b"plugin");
        fs::write(d.path().join("plugins/fs.wasm"), b"plugin!").unwrap();
        let err = m.read_verified(d.path(), "fs").unwrap_err();
        assert!(matches!(err, ManifestError::HashMismatch { .. }), "{err}");
        assert!(matches!(
            m.read_verified(d.path(), "sql"),
            Err(ManifestError::UnknownPlugin { .. })
        ));
    }

    #[test]
    fn version_follows_content() {
        let d = container();
        let a = Manifest::for_dir(d.path(), &["fs".into()], None).unwrap();
        assert_eq!(
            a.version,
            Manifest::for_dir(d.path(), &["fs".into()], None)
                .unwrap()
                .version
        );
        fs::write(d.path().join("plugins/fs.wasm"), b"other").unwrap();
        assert_ne!(
            a.version,
            Manifest::for_dir(d.path(), &["fs".into()], None)
                .unwrap()
                .version
        );
    }

    #[test]
    fn precompiled_forms_are_verified_and_versioned() {
        let d = container();
        let plain = Manifest::for_dir(d.path(), &["fs".into()], Some("e1")).unwrap();
        assert!(plain.plugins[0].precompiled.is_none());
        fs::write(d.path().join("plugins/fs.cwasm"), b"code").unwrap();
        let m = Manifest::for_dir(d.path(), &["fs".into()], Some("e1")).unwrap();
        assert_ne!(m.version, plain.version);
        assert_eq!(
            m.read_verified_precompiled(d.path(), "fs", "e1").unwrap(),
            Some(b"code".to_vec())
        );
        assert_eq!(
            m.read_verified_precompiled(d.path(), "fs", "e2").unwrap(),
            None
        );
        fs::write(d.path().join("plugins/fs.cwasm"), b"c0de").unwrap();
        assert!(matches!(
            m.read_verified_precompiled(d.path(), "fs", "e1"),
            Err(ManifestError::HashMismatch { .. })
        ));
    }

    #[test]
    fn names_are_plain() {
        for bad in ["", "../x", "A", "a/b", "a.wasm"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("sql-2_x").is_ok());
    }
}
