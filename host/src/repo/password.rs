//! Where the repository password comes from: `--password-file` or
//! `ATTACHE_PASSWORD`, never the command line itself.

use std::path::PathBuf;

use anyhow::Context;

/// A password source.
#[derive(Debug, Clone, Default)]
pub(crate) struct Password {
    pub file: Option<PathBuf>,
}

impl Password {
    /// The password, if one is given.
    pub(crate) fn get(&self) -> anyhow::Result<Option<String>> {
        if let Some(f) = &self.file {
            let s = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read password file {}", f.display()))?;
            let s = s.strip_suffix('\n').unwrap_or(&s).to_owned();
            anyhow::ensure!(!s.is_empty(), "password file {} is empty", f.display());
            return Ok(Some(s));
        }
        Ok(std::env::var("ATTACHE_PASSWORD")
            .ok()
            .filter(|s| !s.is_empty()))
    }
}
