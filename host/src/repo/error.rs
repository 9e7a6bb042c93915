//! Typed errors at the repository boundary: callers (the server) map
//! [`RepoError::kind`] to a status instead of reading messages.

use crate::store::{ErrorKind, StoreError};

/// What can go wrong asking the repository for something.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RepoError {
    /// No snapshot id starts with the prefix.
    #[error("no snapshot matches {0:?}")]
    NoSnapshot(String),
    /// Several do (no single snapshot matches: not found).
    #[error("{prefix:?} matches several snapshots: {matches}")]
    Ambiguous { prefix: String, matches: String },
    /// The snapshot exists but its file cannot be read.
    #[error("snapshot {id} is damaged: {why}; `attache repair snapshots` removes it")]
    DamagedSnapshot { id: String, why: String },
    /// A snapshot lacks the item asked for.
    #[error("snapshot {snapshot} has no item {item:?}")]
    NoItem { snapshot: String, item: String },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RepoError {
    /// The kind of failure.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            Self::NoSnapshot(_) | Self::NoItem { .. } => ErrorKind::NotFound,
            Self::Ambiguous { .. } => ErrorKind::NotFound,
            Self::DamagedSnapshot { .. } => ErrorKind::Corrupt,
            Self::Store(e) => e.kind(),
        }
    }
}

/// The kind of the first typed repository error in an error's chain.
pub(crate) fn kind_of(e: &anyhow::Error) -> Option<ErrorKind> {
    e.chain().find_map(|c| {
        c.downcast_ref::<RepoError>()
            .map(RepoError::kind)
            .or_else(|| c.downcast_ref::<StoreError>().map(StoreError::kind))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn kinds_survive_context() {
        let e =
            anyhow::Error::from(RepoError::NoSnapshot("ab".into())).context("GET /snapshots/ab");
        assert_eq!(kind_of(&e), Some(ErrorKind::NotFound));
        let e: anyhow::Result<()> = Err(StoreError::WrongPassword).context("opening");
        assert_eq!(kind_of(&e.unwrap_err()), Some(ErrorKind::Crypto));
        let e = anyhow::Error::from(RepoError::DamagedSnapshot {
            id: "x".into(),
            why: "y".into(),
        });
        assert_eq!(kind_of(&e), Some(ErrorKind::Corrupt));
        assert_eq!(kind_of(&anyhow::anyhow!("plain")), None);
    }
}
