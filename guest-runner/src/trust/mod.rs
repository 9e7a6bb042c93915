//! Who may have written the code a container runs: publishers' Ed25519
//! signatures on the container's manifest ([`sigfile`]), and the trust
//! file that says which publisher keys ([`key`]) may vouch for the runner
//! and for each plugin by name.
//!
//! The trust file is TOML:
//!
//! ```toml
//! format = 1
//! # Accept unsigned or wrongly signed containers anyway (loudly).
//! allow_unsigned = false
//!
//! [[publisher]]
//! name = "vendor"
//! key = "ed25519:<64 hex digits>"
//! runner = true
//! plugins = ["filesystem", "sql"]     # "*": any plugin
//!
//! [[publisher]]
//! name = "site"
//! key = "ed25519:..."
//! plugins = ["inventory"]
//! ```
//!
//! A container is accepted when every signature in `manifest.sig` is valid
//! for the exact bytes of `manifest.json`, the runner is vouched for by a
//! signer the trust file allows for the runner, and each plugin used by a
//! signer allowed for that plugin's name. The file hashes the manifest
//! lists are checked as each file is read (see [`crate::manifest`]), so a
//! changed plugin whose hash was updated to match breaks the signature,
//! and one whose hash was not breaks the hash.
//!
//! The server checks before it places or attaches a container or runs a
//! local runner, and hands the trust file's text to the runner, which
//! checks again before it loads a plugin.

pub mod key;
pub mod sigfile;
pub mod stamp;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::manifest::{Manifest, ManifestError, MANIFEST_FILE};
use key::PublicKey;
use sigfile::{Signature, SIGNATURE_FILE};

/// Largest manifest read for verification.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Why keys, signatures or a container's trust are refused.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A file could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// read, write, create...
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The trust file is not valid.
    #[error("trust file {origin}: {message}")]
    Invalid {
        /// Where it came from.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A key is not written as a key.
    #[error("bad key {text:?}: {message}")]
    BadKey {
        /// The text (its start).
        text: String,
        /// What is wrong.
        message: String,
    },
    /// A key file does not start with its magic line.
    #[error("not an Attaché key file of this version (the first line must be {expected:?})")]
    BadKeyFile {
        /// The magic line expected.
        expected: &'static str,
    },
    /// The signature file is malformed.
    #[error("{SIGNATURE_FILE} line {line}: {message}")]
    BadSignatureFile {
        /// Its line number, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The manifest or a file it lists.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The container has no signature.
    #[error("the container at {dir} is not signed (no {SIGNATURE_FILE}); refusing it without --allow-unsigned")]
    Unsigned {
        /// The container directory.
        dir: PathBuf,
    },
    /// A signature does not verify: the manifest changed after signing, or
    /// the signature was not made by the key it names.
    #[error("the container at {dir} is wrongly signed: key {key}'s signature does not match its manifest (changed after it was signed?); refusing it")]
    BadSignature {
        /// The container directory.
        dir: PathBuf,
        /// The key's id.
        key: String,
    },
    /// No signer is allowed to vouch for the runner.
    #[error("the runner is signed by {signers}, which is not allowed for the runner (trust in force: {origin}); refusing the container")]
    RunnerNotAllowed {
        /// The signers: key ids, with publisher names where known.
        signers: String,
        /// The trust in force: the trust file, or why there is none.
        origin: String,
    },
    /// No signer is allowed to vouch for this plugin.
    #[error("plugin {plugin:?} is signed by {signers}, which is not allowed for plugin {plugin:?} (trust in force: {origin}); refusing it")]
    PluginNotAllowed {
        /// The plugin's name.
        plugin: String,
        /// The signers: key ids, with publisher names where known.
        signers: String,
        /// The trust in force: the trust file, or why there is none.
        origin: String,
    },
}

impl TrustError {
    /// Whether this is a refusal that `--allow-unsigned` overrides (no,
    /// bad or untrusted signatures), rather than a broken file or hash.
    pub fn is_signature_refusal(&self) -> bool {
        matches!(
            self,
            Self::Unsigned { .. }
                | Self::BadSignature { .. }
                | Self::BadSignatureFile { .. }
                | Self::RunnerNotAllowed { .. }
                | Self::PluginNotAllowed { .. }
        )
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrust {
    format: u32,
    #[serde(default)]
    allow_unsigned: bool,
    #[serde(default, rename = "publisher")]
    publishers: Vec<RawPublisher>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPublisher {
    name: String,
    key: String,
    #[serde(default)]
    runner: bool,
    #[serde(default)]
    plugins: Vec<String>,
}

/// A publisher the trust file names.
#[derive(Debug, Clone)]
pub struct Publisher {
    /// Its name, for people.
    pub name: String,
    /// Its key.
    pub key: PublicKey,
    /// Whether it may vouch for the runner.
    pub runner: bool,
    /// The plugins it may vouch for (`*`: any).
    pub plugins: Vec<String>,
}

impl Publisher {
    fn allows_plugin(&self, name: &str) -> bool {
        self.plugins.iter().any(|p| p == "*" || p == name)
    }
}

/// The trust in force.
#[derive(Debug, Clone)]
pub struct Trust {
    /// Where it came from (a file, or why there is none).
    pub origin: String,
    /// Its text, handed to runners.
    pub text: String,
    /// The publishers.
    pub publishers: Vec<Publisher>,
    /// Why unsigned containers are allowed, when they are.
    pub allow_unsigned: Option<AllowUnsigned>,
}

/// Who allowed unsigned containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowUnsigned {
    /// `allow_unsigned = true` in this trust file.
    TrustFile(String),
    /// `--allow-unsigned` on the command line.
    Flag,
}

impl std::fmt::Display for AllowUnsigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TrustFile(origin) => write!(f, "allow_unsigned = true in {origin}"),
            Self::Flag => f.write_str("--allow-unsigned"),
        }
    }
}

/// What a container is checked for.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// The runner and every plugin.
    All,
    /// The runner and this plugin.
    Plugin(&'a str),
}

/// A container whose manifest has been checked.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The manifest, parsed from the very bytes that were verified.
    pub manifest: Manifest,
    /// Key ids (with publisher names) of the valid signatures.
    pub signers: Vec<String>,
    /// Set when the container was accepted only because unsigned
    /// containers are allowed: why it would have been refused.
    pub unsigned_allowed: Option<String>,
}

/// The text of a trust file that trusts nobody.
pub const EMPTY: &str = "format = 1\n";

impl Trust {
    /// Reads a trust file's text.
    pub fn parse(text: &str, origin: &str) -> Result<Self, TrustError> {
        let invalid = |message: String| TrustError::Invalid {
            origin: origin.into(),
            message,
        };
        let raw: RawTrust = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if raw.format != 1 {
            return Err(invalid(format!(
                "format {} is not one this version reads (1)",
                raw.format
            )));
        }
        let mut publishers = Vec::new();
        for p in raw.publishers {
            let key = PublicKey::parse(&p.key)
                .map_err(|e| invalid(format!("publisher {:?}: {e}", p.name)))?;
            for name in &p.plugins {
                if name != "*" {
                    crate::manifest::check_name(name)
                        .map_err(|e| invalid(format!("publisher {:?}: {e}", p.name)))?;
                }
            }
            publishers.push(Publisher {
                name: p.name,
                key,
                runner: p.runner,
                plugins: p.plugins,
            });
        }
        Ok(Self {
            origin: origin.into(),
            text: text.into(),
            publishers,
            allow_unsigned: raw
                .allow_unsigned
                .then(|| AllowUnsigned::TrustFile(origin.into())),
        })
    }

    /// Trust in nobody: every container is refused unless unsigned ones
    /// are allowed.
    pub fn none(why: &str) -> Self {
        Self {
            origin: why.into(),
            text: EMPTY.into(),
            publishers: Vec::new(),
            allow_unsigned: None,
        }
    }

    /// Also allows unsigned containers (`--allow-unsigned`).
    pub fn allowing_unsigned(mut self) -> Self {
        if self.allow_unsigned.is_none() {
            self.allow_unsigned = Some(AllowUnsigned::Flag);
        }
        self
    }

    /// How a signer is named in messages: its key id, and its publisher's
    /// name where the trust file knows the key.
    fn signer(&self, key: &PublicKey) -> String {
        match self.publishers.iter().find(|p| p.key == *key) {
            Some(p) => format!("key {} (publisher {:?})", key.id(), p.name),
            None => format!("key {} (not in the trust file)", key.id()),
        }
    }

    /// Checks the container at `dir`: its signatures, and that the runner
    /// and the plugins of `scope` are vouched for by signers allowed for
    /// them. When unsigned containers are allowed, a refusal becomes a
    /// warning and [`Verified::unsigned_allowed`] says what it was.
    pub fn verify(&self, dir: &Path, scope: Scope<'_>) -> Result<Verified, TrustError> {
        let bytes = read_bounded(&dir.join(MANIFEST_FILE), MAX_MANIFEST_BYTES)?;
        let manifest = Manifest::parse(&bytes, &dir.join(MANIFEST_FILE))?;
        let signatures = match read_bounded(&dir.join(SIGNATURE_FILE), sigfile::MAX_BYTES) {
            Ok(b) => Some(
                String::from_utf8(b).map_err(|_| TrustError::BadSignatureFile {
                    line: 1,
                    message: "not UTF-8 text".into(),
                }),
            ),
            Err(TrustError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                None
            }
            Err(e) => return Err(e),
        };
        let checked = match signatures {
            None => Err(TrustError::Unsigned { dir: dir.into() }),
            Some(text) => text
                .and_then(|t| sigfile::parse(&t))
                .and_then(|sigs| self.check(dir, &bytes, &sigs, &manifest, scope)),
        };
        match checked {
            Ok(signers) => Ok(Verified {
                manifest,
                signers,
                unsigned_allowed: None,
            }),
            Err(e) if e.is_signature_refusal() && self.allow_unsigned.is_some() => {
                let why = self
                    .allow_unsigned
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                tracing::warn!(
                    container = %dir.display(),
                    refusal = %e,
                    allowed_by = why.as_str(),
                    "unsigned allowed: running a container its signatures do not vouch for"
                );
                Ok(Verified {
                    manifest,
                    signers: Vec::new(),
                    unsigned_allowed: Some(e.to_string()),
                })
            }
            Err(e) => Err(e),
        }
    }

    fn check(
        &self,
        dir: &Path,
        manifest_bytes: &[u8],
        signatures: &[Signature],
        manifest: &Manifest,
        scope: Scope<'_>,
    ) -> Result<Vec<String>, TrustError> {
        if signatures.is_empty() {
            return Err(TrustError::Unsigned { dir: dir.into() });
        }
        for s in signatures {
            if !s.verifies(manifest_bytes) {
                return Err(TrustError::BadSignature {
                    dir: dir.into(),
                    key: s.key.id(),
                });
            }
        }
        let signers = || {
            signatures
                .iter()
                .map(|s| self.signer(&s.key))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let vouched = |allowed: &dyn Fn(&Publisher) -> bool| {
            signatures
                .iter()
                .any(|s| self.publishers.iter().any(|p| p.key == s.key && allowed(p)))
        };
        if !vouched(&|p| p.runner) {
            return Err(TrustError::RunnerNotAllowed {
                signers: signers(),
                origin: self.origin.clone(),
            });
        }
        let names: Vec<&str> = match scope {
            Scope::All => manifest.plugins.iter().map(|p| p.name.as_str()).collect(),
            // A plugin the manifest lacks is refused when it is loaded.
            Scope::Plugin(name) => vec![name],
        };
        for name in names {
            if !vouched(&|p| p.allows_plugin(name)) {
                return Err(TrustError::PluginNotAllowed {
                    plugin: name.into(),
                    signers: signers(),
                    origin: self.origin.clone(),
                });
            }
        }
        Ok(signatures.iter().map(|s| self.signer(&s.key)).collect())
    }

    /// The trust as a security team reads it (`attache policy show`).
    pub fn describe(&self) -> String {
        let mut out = format!("trust in force: {}\n", self.origin);
        match &self.allow_unsigned {
            Some(why) => {
                let _ = writeln!(
                    out,
                    "  UNSIGNED ALLOWED: unsigned or wrongly signed containers run ({why})"
                );
            }
            None => {
                let _ = writeln!(out, "  unsigned or wrongly signed containers are refused");
            }
        }
        if self.publishers.is_empty() {
            let _ = writeln!(out, "  no publisher is trusted");
        }
        for p in &self.publishers {
            let mut signs: Vec<String> = Vec::new();
            if p.runner {
                signs.push("the runner".into());
            }
            signs.extend(p.plugins.iter().map(|n| {
                if n == "*" {
                    "any plugin".to_owned()
                } else {
                    format!("plugin {n}")
                }
            }));
            let signs = if signs.is_empty() {
                "nothing".to_owned()
            } else {
                signs.join(", ")
            };
            let _ = writeln!(
                out,
                "  publisher {:?}: key {} may sign {signs}",
                p.name,
                p.key.id()
            );
        }
        out
    }
}

/// A file's bytes, refusing more than `max`.
fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, TrustError> {
    use std::io::Read;
    let io = |source| TrustError::Io {
        action: "read",
        path: path.into(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    f.take(max + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > max {
        return Err(io(std::io::Error::other(format!(
            "larger than {max} bytes"
        ))));
    }
    Ok(bytes)
}

/// Signs the container at `dir` with `key` at `signed_at`: its
/// `manifest.sig` gains (or replaces) this key's signature. The files are
/// checked against the manifest first: only what the manifest vouches for
/// is signed. Signatures by other keys that no longer verify are dropped.
pub fn sign_container(
    dir: &Path,
    key: &key::PrivateKey,
    signed_at: u64,
) -> Result<Signature, TrustError> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = read_bounded(&path, MAX_MANIFEST_BYTES)?;
    let manifest = Manifest::parse(&bytes, &path)?;
    manifest.read_verified_runner(dir)?;
    for p in &manifest.plugins {
        manifest.read_verified(dir, &p.name)?;
        if let Some(c) = &p.precompiled {
            manifest.read_verified_precompiled(dir, &p.name, &c.engine)?;
        }
    }
    let sig_path = dir.join(SIGNATURE_FILE);
    let mut signatures = match std::fs::read_to_string(&sig_path) {
        Ok(text) => sigfile::parse(&text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(TrustError::Io {
                action: "read",
                path: sig_path,
                source,
            })
        }
    };
    let public = key.public();
    signatures.retain(|s| s.key != public && s.verifies(&bytes));
    let signature = Signature::sign(key, signed_at, &bytes);
    signatures.push(signature.clone());
    let tmp = dir.join(".manifest.sig.tmp");
    let write = |source| TrustError::Io {
        action: "write",
        path: sig_path.clone(),
        source,
    };
    std::fs::write(&tmp, sigfile::render(&signatures)).map_err(write)?;
    std::fs::rename(&tmp, &sig_path).map_err(write)?;
    Ok(signature)
}

#[cfg(test)]
mod tests {
    use super::key::PrivateKey;
    use super::*;
    use crate::manifest::RUNNER_FILE;
    use std::fs;

    fn container() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("plugins")).unwrap();
        fs::write(d.path().join(RUNNER_FILE), b"runner").unwrap();
        fs::write(d.path().join("plugins/fs.wasm"), b"plugin").unwrap();
        fs::write(d.path().join("plugins/site.wasm"), b"site").unwrap();
        Manifest::for_dir(d.path(), &["fs".into(), "site".into()], None)
            .unwrap()
            .write(d.path())
            .unwrap();
        d
    }

    fn trust(vendor: &PrivateKey, site: &PrivateKey) -> Trust {
        let text = format!(
            "format = 1\n\
             [[publisher]]\nname = \"vendor\"\nkey = \"{}\"\nrunner = true\nplugins = [\"fs\"]\n\
             [[publisher]]\nname = \"site\"\nkey = \"{}\"\nplugins = [\"site\"]\n",
            vendor.public(),
            site.public()
        );
        Trust::parse(&text, "test trust").unwrap()
    }

    #[test]
    fn each_part_needs_a_signer_allowed_for_it() {
        let d = container();
        let (vendor, site) = (
            PrivateKey::from_seed(&[1; 32]),
            PrivateKey::from_seed(&[2; 32]),
        );
        let t = trust(&vendor, &site);
        assert!(matches!(
            t.verify(d.path(), Scope::All),
            Err(TrustError::Unsigned { .. })
        ));
        sign_container(d.path(), &vendor, 10).unwrap();
        // The vendor vouches for the runner and fs, not for the site's plugin.
        assert!(t.verify(d.path(), Scope::Plugin("fs")).is_ok());
        match t.verify(d.path(), Scope::Plugin("site")) {
            Err(TrustError::PluginNotAllowed {
                plugin, signers, ..
            }) => {
                assert_eq!(plugin, "site");
                assert!(signers.contains(&vendor.public().id()), "{signers}");
            }
            other => panic!("{other:?}"),
        }
        sign_container(d.path(), &site, 11).unwrap();
        let v = t.verify(d.path(), Scope::All).unwrap();
        assert_eq!(v.signers.len(), 2);
        assert!(v.unsigned_allowed.is_none());
        // Signing again with a key replaces its line.
        sign_container(d.path(), &site, 12).unwrap();
        let text = fs::read_to_string(d.path().join(SIGNATURE_FILE)).unwrap();
        assert_eq!(sigfile::parse(&text).unwrap().len(), 2);
    }

    #[test]
    fn a_site_key_alone_does_not_vouch_for_the_runner() {
        let d = container();
        let (vendor, site) = (
            PrivateKey::from_seed(&[1; 32]),
            PrivateKey::from_seed(&[2; 32]),
        );
        sign_container(d.path(), &site, 10).unwrap();
        match trust(&vendor, &site).verify(d.path(), Scope::Plugin("site")) {
            Err(TrustError::RunnerNotAllowed { signers, .. }) => {
                assert!(signers.contains(&site.public().id()), "{signers}")
            }
            other => panic!("{other:?}"),
        }
    }

    /// With no trust file, the refusal says so in words that read: the
    /// reason stands as the trust in force, not as a file's name.
    #[test]
    fn a_refusal_without_a_trust_file_says_why() {
        let d = container();
        sign_container(d.path(), &PrivateKey::from_seed(&[1; 32]), 10).unwrap();
        let none = Trust::none("no trust file (--trust): no publisher is trusted");
        let e = none
            .verify(d.path(), Scope::Plugin("fs"))
            .expect_err("nothing is trusted");
        let msg = e.to_string();
        assert!(matches!(e, TrustError::RunnerNotAllowed { .. }), "{msg}");
        assert!(
            msg.contains("which is not allowed for the runner (trust in force: no trust file (--trust): no publisher is trusted); refusing the container"),
            "{msg}"
        );
    }

    #[test]
    fn a_changed_manifest_breaks_the_signature_unless_unsigned_is_allowed() {
        let d = container();
        let (vendor, site) = (
            PrivateKey::from_seed(&[1; 32]),
            PrivateKey::from_seed(&[2; 32]),
        );
        sign_container(d.path(), &vendor, 10).unwrap();
        sign_container(d.path(), &site, 10).unwrap();
        // A changed plugin, with its hash updated to match.
        fs::write(d.path().join("plugins/fs.wasm"), b"evil").unwrap();
        Manifest::for_dir(d.path(), &["fs".into(), "site".into()], None)
            .unwrap()
            .write(d.path())
            .unwrap();
        let t = trust(&vendor, &site);
        assert!(matches!(
            t.verify(d.path(), Scope::Plugin("fs")),
            Err(TrustError::BadSignature { .. })
        ));
        let lax = t.allowing_unsigned();
        let v = lax.verify(d.path(), Scope::Plugin("fs")).unwrap();
        assert!(v.unsigned_allowed.is_some());
        assert!(v.signers.is_empty());
    }

    #[test]
    fn signing_refuses_files_that_do_not_match_the_manifest() {
        let d = container();
        fs::write(d.path().join("plugins/fs.wasm"), b"evil").unwrap();
        let e = sign_container(d.path(), &PrivateKey::from_seed(&[1; 32]), 1).unwrap_err();
        assert!(
            matches!(e, TrustError::Manifest(ManifestError::HashMismatch { .. })),
            "{e}"
        );
        assert!(!d.path().join(SIGNATURE_FILE).exists());
    }

    #[test]
    fn trust_files_are_checked() {
        for (text, why) in [
            ("", "no format"),
            ("format = 2\n", "newer format"),
            ("format = 1\nallow = true\n", "unknown key"),
            (
                "format = 1\n[[publisher]]\nname = \"x\"\nkey = \"ed25519:00\"\n",
                "bad key",
            ),
        ] {
            assert!(
                matches!(Trust::parse(text, "t"), Err(TrustError::Invalid { .. })),
                "{why}"
            );
        }
        let t = Trust::parse("format = 1\nallow_unsigned = true\n", "t").unwrap();
        assert!(t.allow_unsigned.is_some());
        assert!(t.describe().contains("UNSIGNED ALLOWED"));
        assert!(Trust::none("none").describe().contains("refused"));
    }
}
