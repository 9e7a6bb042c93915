//! A backup: the agent runs the plugin, its stream goes into the repository.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context as _};

use super::{BackupRequest, Context, Control};
use crate::repo::{ingest, Origin};
use crate::store::lock::Lock;
use crate::store::snapshot::SnapshotInfo;
use crate::store::snapshot::StoredItem;
use crate::target;
use std::collections::HashMap;

pub fn run(ctx: &Context, a: &BackupRequest, ctl: &Control<'_>) -> anyhow::Result<SnapshotInfo> {
    let source = target::backup_target(&a.target)?;
    let runner = ctx.runner()?;
    let (includes, grants) = selection(&a.include)?;
    let repo = ctx.repository(true)?;
    // Shared: backups run side by side; prune waits for them.
    let _lock = Lock::acquire(repo.store.root(), false, "backup")?;

    let parent = parent(&repo, source, &a.plugin, &includes)?;
    // The parent's catalog for the runner: files whose change token still
    // matches are referenced, not read again.
    let previous = tempfile::NamedTempFile::new().context("cannot create a temporary file")?;
    if let Some((_, items)) = &parent {
        let mut w = std::io::BufWriter::new(previous.as_file());
        for it in items.values().filter(|i| i.record.change_token.is_some()) {
            serde_json::to_writer(&mut w, &it.record)?;
            std::io::Write::write_all(&mut w, b"\n")?;
        }
        std::io::Write::flush(&mut w)?;
    }

    let mut cmd = runner.command();
    cmd.args(["backup", "--plugin", &a.plugin, "--output", "-"])
        .stdout(Stdio::piped());
    for g in &grants {
        cmd.arg("--grant-read").arg(g);
    }
    for i in &includes {
        cmd.arg("--select").arg(i);
    }
    if parent.is_some() {
        cmd.arg("--previous").arg(previous.path());
    }
    tracing::debug!(?cmd, "starting the runner");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", runner.dir.join("guest-runner").display()))?;
    let stdout = child.stdout.take().context("runner has no stdout")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let origin = Origin {
        source: source.into(),
        includes: includes.clone(),
        plugin: a.plugin.clone(),
        time: now.as_secs() as i64,
        nanos: now.subsec_nanos(),
        parent,
    };
    // Dropping the pipe when ingest fails stops a runner that is still writing.
    let staged = ingest(
        &repo,
        BufReader::with_capacity(1 << 20, stdout),
        &origin,
        ctl,
    );
    if staged.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().context("waiting for the runner")?;
    // Data already committed by a failed run stays unreferenced until prune.
    let snap = match (staged, status.success()) {
        (Ok(staged), true) => staged.publish(&repo)?,
        (Ok(_), false) => bail!("backup failed: the runner exited with {status}"),
        (Err(e), _) => bail!("backup failed: {e:#} (runner exited with {status})"),
    };
    Ok(snap)
}

/// The newest snapshot of the same source, plugin and selection, with its
/// items by id.
fn parent(
    repo: &crate::repo::Repository,
    source: &str,
    plugin: &str,
    includes: &[String],
) -> anyhow::Result<Option<(String, HashMap<String, StoredItem>)>> {
    let mut want = includes.to_vec();
    want.sort();
    let snaps = repo.store.snapshots()?;
    let found = snaps.iter().rev().find(|s| {
        let mut inc = s.includes.clone();
        inc.sort();
        s.source == source && s.plugin == plugin && inc == want
    });
    let Some(s) = found else { return Ok(None) };
    let items = repo.catalog.items(&s.id, None)?;
    Ok(Some((
        s.id.clone(),
        items
            .into_iter()
            .map(|i| (i.record.id.clone(), i))
            .collect(),
    )))
}

/// The selection as the plugin sees it, and the directories to grant.
/// Path includes are made absolute (not resolving symlinks, so a link is
/// backed up as a link); a directory is granted itself, anything else its
/// parent. Other ids (`postgresql://…`) are passed as they are.
fn selection(include: &[String]) -> anyhow::Result<(Vec<String>, Vec<PathBuf>)> {
    let mut ids = Vec::new();
    let mut grants = Vec::new();
    for inc in include {
        if inc.contains("://") {
            ids.push(inc.clone());
            continue;
        }
        let abs = normalize(&std::path::absolute(inc).with_context(|| format!("include {inc:?}"))?);
        let md = std::fs::symlink_metadata(&abs)
            .with_context(|| format!("include {}", abs.display()))?;
        let grant = if md.is_dir() {
            abs.clone()
        } else {
            abs.parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| "/".into())
        };
        let id = abs
            .to_str()
            .with_context(|| format!("include {} is not valid UTF-8", abs.display()))?;
        ids.push(id.to_owned());
        grants.push(grant);
    }
    grants.sort();
    grants.dedup();
    Ok((ids, grants))
}

/// Removes `.` and `..` lexically.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn normalizes() {
        assert_eq!(
            normalize("/a/./b/../c".as_ref()),
            std::path::PathBuf::from("/a/c")
        );
        assert_eq!(normalize("/..".as_ref()), std::path::PathBuf::from("/"));
    }
}
