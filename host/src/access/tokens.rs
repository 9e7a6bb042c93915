//! The token store: `tokens.json` in the state directory, with a magic and
//! a version, written atomically under a lock. It holds only the BLAKE3
//! hash of each token (256 random bits, so a fast hash is as good as a
//! slow one); a token is shown once, when it is created. A token reads
//! `att_ID_SECRET`: the id finds its entry, the hash of the whole token is
//! compared in constant time.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::scope::check_prefix;
use super::{Principal, Role};
use crate::audit::Audit;

/// The store file's `magic`.
const MAGIC: &str = "attache-tokens";
/// Its format version.
const VERSION: u32 = 1;

/// What can go wrong with tokens, by kind (the server maps them to
/// statuses).
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("{0}")]
    Invalid(String),
    #[error("no token {0:?}")]
    NotFound(String),
    #[error("token store {path}: {why}")]
    Store { path: PathBuf, why: String },
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

/// A stored token: everything but the token itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Entry {
    pub id: String,
    /// BLAKE3 of the token, hex.
    pub hash: String,
    pub role: Role,
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub restore_to: Vec<String>,
    /// RFC 3339.
    pub created: String,
    /// Who created it.
    pub created_by: String,
}

impl Entry {
    pub(crate) fn principal(&self) -> Principal {
        Principal {
            id: self.id.clone(),
            role: self.role,
            targets: self.targets.clone(),
            restore_to: self.restore_to.clone(),
        }
    }

    /// The entry as listings show it: no hash.
    pub(crate) fn listed(&self) -> serde_json::Value {
        json!({
            "id": self.id, "role": self.role, "targets": self.targets,
            "restore_to": self.restore_to, "created": self.created, "created_by": self.created_by,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct File {
    magic: String,
    version: u32,
    tokens: Vec<Entry>,
}

/// What a new token may do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    pub role: Role,
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub restore_to: Vec<String>,
}

impl NewToken {
    fn check(&self) -> Result<(), TokenError> {
        let inv = |m: String| Err(TokenError::Invalid(m));
        match self.role {
            Role::Operator => {
                if self.targets.is_empty() {
                    return inv(
                        "an operator token needs at least one --targets GLOB (`local`, `hv1/*`)"
                            .into(),
                    );
                }
                for t in &self.targets {
                    if t.is_empty() || t.chars().any(|c| c.is_control() || c == ':') {
                        return inv(format!(
                            "target glob {t:?}: a glob over target names, without ':'"
                        ));
                    }
                }
                for p in &self.restore_to {
                    check_prefix(p).map_err(|e| TokenError::Invalid(e.0))?;
                }
                Ok(())
            }
            r if !self.targets.is_empty() || !self.restore_to.is_empty() => inv(format!(
                "--targets and --restore-to scope operator tokens; an {r} token has no scope"
            )),
            _ => Ok(()),
        }
    }
}

/// The tokens as last read, with the file's modification time and length.
type Cached = Option<(Option<SystemTime>, u64, Vec<Entry>)>;

/// The token store of a state directory, cached until the file changes.
pub(crate) struct Store {
    path: PathBuf,
    cache: Mutex<Cached>,
}

fn hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// Compares in time independent of where the first difference is.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Store {
    pub(crate) fn new(state: &Path) -> Self {
        Self {
            path: state.join("tokens.json"),
            cache: Mutex::new(None),
        }
    }

    fn err(&self, why: impl std::fmt::Display) -> TokenError {
        TokenError::Store {
            path: self.path.clone(),
            why: why.to_string(),
        }
    }

    /// Every token, read from the file (none when it does not exist).
    pub(crate) fn list(&self) -> Result<Vec<Entry>, TokenError> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err(e)),
        };
        let key = (meta.modified().ok(), meta.len());
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((m, l, entries)) = cache.as_ref() {
            if (*m, *l) == key {
                return Ok(entries.clone());
            }
        }
        let text = std::fs::read_to_string(&self.path).map_err(|e| self.err(e))?;
        let f: File =
            serde_json::from_str(&text).map_err(|e| self.err(format!("does not parse: {e}")))?;
        if f.magic != MAGIC {
            return Err(self.err(format!("not a token store (magic {:?})", f.magic)));
        }
        if f.version != VERSION {
            return Err(self.err(format!(
                "format version {} is not one this attache reads ({VERSION})",
                f.version
            )));
        }
        *cache = Some((key.0, key.1, f.tokens.clone()));
        Ok(f.tokens)
    }

    fn save(&self, tokens: Vec<Entry>) -> Result<(), TokenError> {
        let f = File {
            magic: MAGIC.into(),
            version: VERSION,
            tokens,
        };
        let bytes = serde_json::to_vec_pretty(&f).map_err(|e| self.err(e))?;
        crate::store::fsutil::write_atomic(&self.path, &bytes).map_err(|e| self.err(e))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| self.err(e))
    }

    fn lock(&self) -> Result<crate::hypervisor::lockfile::FileLock, TokenError> {
        crate::hypervisor::lockfile::FileLock::exclusive(&self.path.with_extension("lock"))
            .map_err(|e| self.err(format!("{e:#}")))
    }

    /// Makes a token; returns it (the only time it is seen) and its entry.
    pub(crate) fn create(
        &self,
        new: &NewToken,
        audit: &Audit,
    ) -> Result<(String, Entry), TokenError> {
        new.check()?;
        let mut id = [0u8; 6];
        let mut secret = [0u8; 32];
        crate::store::crypto::random(&mut id).map_err(|e| self.err(e))?;
        crate::store::crypto::random(&mut secret).map_err(|e| self.err(e))?;
        let id = hex::encode(id);
        let token = format!("att_{id}_{}", hex::encode(secret));
        let entry = Entry {
            id: id.clone(),
            hash: hash(&token),
            role: new.role,
            targets: new.targets.clone(),
            restore_to: new.restore_to.clone(),
            created: crate::audit::log::now(),
            created_by: audit.actor().to_owned(),
        };
        let _lock = self.lock()?;
        let mut all = self.list()?;
        audit.record(
            "token.create",
            json!({ "id": id, "role": new.role, "targets": new.targets, "restore_to": new.restore_to }),
        )?;
        all.push(entry.clone());
        self.save(all)?;
        Ok((token, entry))
    }

    /// Revokes token `id`.
    pub(crate) fn revoke(&self, id: &str, audit: &Audit) -> Result<Entry, TokenError> {
        let _lock = self.lock()?;
        let mut all = self.list()?;
        let at = all
            .iter()
            .position(|e| e.id == id)
            .ok_or_else(|| TokenError::NotFound(id.to_owned()))?;
        let gone = all.remove(at);
        audit.record("token.revoke", json!({ "id": id, "role": gone.role }))?;
        self.save(all)?;
        Ok(gone)
    }

    /// The principal a presented token names, if any.
    pub(crate) fn authenticate(&self, token: &str) -> Result<Option<Principal>, TokenError> {
        let Some(id) = token
            .strip_prefix("att_")
            .and_then(|r| r.split_once('_'))
            .map(|(id, _)| id)
        else {
            return Ok(None);
        };
        let want = hash(token);
        Ok(self
            .list()?
            .into_iter()
            .find(|e| e.id == id && same(e.hash.as_bytes(), want.as_bytes()))
            .map(|e| e.principal()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hashes_are_stored_and_revoked_tokens_fail() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::new(t.path());
        let audit = Audit::new(t.path(), "test");
        let (token, e) = store
            .create(
                &NewToken {
                    role: Role::Auditor,
                    targets: vec![],
                    restore_to: vec![],
                },
                &audit,
            )
            .unwrap();
        let text = std::fs::read_to_string(t.path().join("tokens.json")).unwrap();
        assert!(!text.contains(&token[8..]), "the token itself is stored");
        assert!(text.contains(MAGIC));
        let p = store.authenticate(&token).unwrap().unwrap();
        assert_eq!(p.role, Role::Auditor);
        assert!(store.authenticate(&format!("{token}x")).unwrap().is_none());
        store.revoke(&e.id, &audit).unwrap();
        assert!(store.authenticate(&token).unwrap().is_none());
        assert!(matches!(
            store.revoke(&e.id, &audit),
            Err(TokenError::NotFound(_))
        ));
    }

    #[test]
    fn scopes_are_checked_at_creation() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::new(t.path());
        let audit = Audit::new(t.path(), "test");
        let bad = [
            NewToken {
                role: Role::Operator,
                targets: vec![],
                restore_to: vec![],
            },
            NewToken {
                role: Role::Operator,
                targets: vec!["local".into()],
                restore_to: vec!["rel".into()],
            },
            NewToken {
                role: Role::Admin,
                targets: vec!["local".into()],
                restore_to: vec![],
            },
        ];
        for b in bad {
            assert!(
                matches!(store.create(&b, &audit), Err(TokenError::Invalid(_))),
                "{b:?}"
            );
        }
    }
}
