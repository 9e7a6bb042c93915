//! Where a job runs: `local` is this machine, acting as the guest.

use std::path::PathBuf;

use anyhow::bail;

/// A restore destination.
#[derive(Debug, PartialEq)]
pub enum RestoreTo {
    /// Back to the original place on this machine.
    LocalOriginal,
    /// Below a directory on this machine.
    LocalDir(PathBuf),
}

/// Checks a backup target; only `local` exists so far.
pub fn backup_target(s: &str) -> anyhow::Result<&'static str> {
    match s {
        "local" => Ok("local"),
        _ => bail!("unknown backup target {s:?}: use `local`"),
    }
}

pub fn restore_to(s: &str) -> anyhow::Result<RestoreTo> {
    match s.split_once(':') {
        None if s == "local" => Ok(RestoreTo::LocalOriginal),
        Some(("local", dir)) if !dir.is_empty() => Ok(RestoreTo::LocalDir(PathBuf::from(dir))),
        _ => bail!("unknown restore destination {s:?}: use `local` or `local:DIR`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_destinations() {
        assert_eq!(restore_to("local").unwrap(), RestoreTo::LocalOriginal);
        assert_eq!(
            restore_to("local:/tmp/x").unwrap(),
            RestoreTo::LocalDir("/tmp/x".into())
        );
        assert!(restore_to("local:").is_err());
        assert!(restore_to("hv/vm").is_err());
        assert!(backup_target("local").is_ok());
        assert!(backup_target("elsewhere").is_err());
    }
}
