//! A backup: the agent runs the plugin, its stream goes into the repository.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context as _};

use super::plugin::{checked_plan, RunnerAccess};
use super::watchdog;
use super::{BackupRequest, Context, Control};
use crate::agent::StderrTail;
use crate::hypervisor::session::{RunOptions, Session};
use crate::repo::ingest_rules::Refused;
use crate::repo::Repository;
use crate::repo::{ingest, send_lines, Origin, Parent};
use crate::store::lock::Lock;
use crate::store::snapshot::SnapshotInfo;
use crate::target::{self, BackupTarget};

/// Runs a backup, recorded in the audit log.
pub(crate) fn run(
    ctx: &Context,
    a: &BackupRequest,
    ctl: &Control<'_>,
) -> anyhow::Result<SnapshotInfo> {
    let mut shown = a.clone();
    super::redact(&mut shown.app_password, &mut shown.options);
    super::audited(ctx, "backup", serde_json::to_value(&shown)?, |ctx| {
        run_audited(ctx, a, ctl)
    })
}

fn run_audited(
    ctx: &Context,
    a: &BackupRequest,
    ctl: &Control<'_>,
) -> anyhow::Result<SnapshotInfo> {
    // Inside the server's job span when there is one: its lines, the
    // runner's and the repository's, all carry the target and plugin.
    let _span = tracing::info_span!("backup", target = %a.target, plugin = %a.plugin).entered();
    let limits = guest_runner::policy::JobLimits {
        memory_mib: a.memory_limit_mib,
        deadline_secs: a.deadline_secs,
    };
    ctx.audit
        .defer("plugin.grants", super::grants(ctx, &a.plugin, &limits))?;
    // To disk while the repository opens; the runner waits for it.
    ctx.audit.sync_ahead();
    let target = target::backup_target(&a.target)?;
    let source = target.source();
    let repo = ctx.repository(true)?;
    // Shared: backups run side by side; prune waits for them.
    let _lock = Lock::acquire(&repo.store, false, "backup")?;
    let includes = match &target {
        BackupTarget::Local => selection(&a.include)?,
        BackupTarget::Vm(_) => guest_selection(&a.include)?,
    };
    let password = super::app_password(&a.app_password, &a.app_password_file)?;
    let access = RunnerAccess::new(ctx, &a.options, password.as_deref(), limits)?;
    let parent_snap = parent(&repo, &source, &a.plugin, &includes)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut origin = Origin {
        source,
        includes: includes.clone(),
        plugin: a.plugin.clone(),
        time: now.as_secs() as i64,
        nanos: now.subsec_nanos(),
        parent: None,
        container: None,
        policy: a.policy.clone(),
    };
    // Application-consistent: the plugin quiesces the application first
    // (where it can; the runner skips it for plugins that cannot).
    let mut args: Vec<String> = vec![
        "backup".into(),
        "--plugin".into(),
        a.plugin.clone(),
        "--quiesce".into(),
    ];
    for i in &includes {
        args.extend(["--select".into(), i.clone()]);
    }
    args.extend(access.args.iter().cloned());
    // The job's start and grants are on disk before the runner starts.
    ctx.audit.sync()?;
    match &target {
        // The runner checks the plan against the policy before the plugin
        // does anything.
        BackupTarget::Local => {
            let timeout = a.timeout_secs.map(std::time::Duration::from_secs);
            local(ctx, &repo, origin, parent_snap, args, &access, timeout, ctl)
        }
        BackupTarget::Vm(vm) => {
            // The plan is checked here, before anything is attached; the
            // runner in the guest checks it again.
            let mut plan_args = vec!["--operation".to_owned(), "backup".to_owned()];
            for i in &includes {
                plan_args.extend(["--select".into(), i.clone()]);
            }
            let plan = checked_plan(ctx, &a.plugin, &access, &plan_args)
                .with_context(|| format!("backup of {vm} refused"))?;
            let (parent, previous) = parent_items(&repo, parent_snap.as_ref())?;
            origin.parent = parent;
            ctx.audit.defer(
                "plugin.plan",
                serde_json::json!({ "plugin": a.plugin, "vm": vm.to_string(), "plan": plan }),
            )?;
            let mut session = Session::open(ctx, vm)?;
            origin.container = Some(session.container.clone());
            let opts = RunOptions {
                fsfreeze: a
                    .fsfreeze
                    .then(|| std::time::Duration::from_secs(a.freeze_limit_secs)),
                timeout: a.timeout_secs.map(std::time::Duration::from_secs),
                env: access.env_assignments(),
            };
            if opts.fsfreeze.is_some() {
                args.extend([
                    "--fsfreeze".into(),
                    "--freeze-limit-secs".into(),
                    a.freeze_limit_secs.to_string(),
                ]);
            }
            let staged = session.backup(&args, previous, &opts, ctl.cancel, |r| {
                ingest(&repo, r, &mut origin, ctl)
            });
            let closed = session.close();
            let (staged, outcome) = staged.with_context(|| format!("backup of {vm} failed"))?;
            let snap = staged.publish(&repo)?;
            for note in outcome.notes {
                tracing::warn!("{vm}: {note}");
            }
            closed.with_context(|| format!("snapshot {} is stored", snap.short_id()))?;
            Ok(snap)
        }
    }
}

/// A backup on this machine: the container's runner runs here, with `args`
/// (its command, selection, options and limits) and `access`'s environment.
/// Past `timeout`, or when the job is cancelled, the runner is killed, even
/// when it stalls without writing, and the job fails. The parent's items
/// go to the runner on its standard input as the runner reads them, from
/// a catalog connection of their own, while the stream comes in.
#[allow(
    clippy::too_many_arguments,
    reason = "each is one part of the job; see issue 16 item 5"
)]
fn local(
    ctx: &Context,
    repo: &Repository,
    mut origin: Origin,
    parent_snap: Option<SnapshotInfo>,
    args: Vec<String>,
    access: &RunnerAccess,
    timeout: Option<std::time::Duration>,
    ctl: &Control<'_>,
) -> anyhow::Result<SnapshotInfo> {
    let runner = ctx.runner()?;
    origin.parent = parent_snap.as_ref().map(|s| repo.parent(s)).transpose()?;
    let mut cmd = runner.command();
    cmd.args(args)
        .args(["--output", "-"])
        .envs(access.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped());
    if parent_snap.is_some() {
        // The runner reads the previous catalog as its walk needs it.
        cmd.args(["--previous", "/dev/stdin"]).stdin(Stdio::piped());
    }
    tracing::debug!(?cmd, "starting the runner");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", runner.dir.join("guest-runner").display()))?;
    let stdout = child.stdout.take().context("runner has no stdout")?;
    let stdin = child.stdin.take();
    let tail = StderrTail::capture(&mut child);
    let child = std::sync::Mutex::new(child);
    let (staged, fed, status, stopped) = std::thread::scope(|s| -> anyhow::Result<_> {
        // Meanwhile, the parent's items go to the runner on a thread of
        // their own, held back by the pipe when the runner has not read
        // them yet, so that neither side holds the whole catalog. A runner
        // that stopped reading has failed, and says why. A runner that
        // cannot have them is stopped.
        let feeder = match (stdin, parent_snap.as_ref()) {
            (Some(stdin), Some(snap)) => {
                let catalog = repo.catalog.reader()?;
                let (store, child) = (&repo.store, &child);
                Some(s.spawn(move || feed(&catalog, store, snap, stdin, child)))
            }
            _ => None,
        };
        let origin = &mut origin;
        // The watchdog runs until the runner has exited: it may also stall
        // after the stream's end.
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let dog = s.spawn(|| watchdog::watch(&child, timeout, ctl.cancel, wait));
        let staged = ingest(repo, BufReader::with_capacity(1 << 20, stdout), origin, ctl);
        // Dropping the pipe when ingest fails stops a runner that is still
        // writing.
        if staged.is_err() {
            let _ = watchdog::lock(&child).kill();
        }
        let status = watchdog::wait(&child);
        drop(done);
        let fed = match feeder {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("sending the parent's items panicked"))),
            None => Ok(()),
        };
        Ok((staged, fed, status, dog.join().unwrap_or(None)))
    })?;
    // The runner was stopped because its catalog could not be read: that
    // is the cause.
    fed.context("reading the parent snapshot's items")?;
    let status = status.context("waiting for the runner")?;
    let tail = tail.finish();
    if let Some(why) = stopped {
        bail!("backup failed: {why}");
    }
    // Data already committed by a failed run stays unreferenced until prune.
    // A failed runner's own words say why, once: the stream it left broken
    // is a consequence, not a second cause. A stream the host refused is
    // the cause, and the runner's failure to write the rest its consequence.
    let snap = match (staged, status.success()) {
        (Ok(staged), true) => staged.publish(repo)?,
        (Err(e), _) if e.is::<Refused>() => bail!("backup failed: {e}"),
        (_, false) => bail!(
            "backup failed: {} ({status})",
            super::plugin::runner_error(tail.as_bytes())
        ),
        (Err(e), true) => bail!("backup failed: {e:#}"),
    };
    Ok(snap)
}

/// A VM's selection: ids the guest resolves itself. Paths must be absolute
/// (there is no working directory in a guest) and are normalized.
fn guest_selection(include: &[String]) -> anyhow::Result<Vec<String>> {
    include
        .iter()
        .map(|inc| {
            if inc.contains("://") {
                return Ok(inc.clone());
            }
            if !inc.starts_with('/') {
                bail!("include {inc:?}: paths in a VM must be absolute");
            }
            normalize(Path::new(inc))
                .to_str()
                .map(str::to_owned)
                .with_context(|| format!("include {inc:?}"))
        })
        .collect()
}

/// The newest snapshot of the same source, plugin and selection.
fn parent(
    repo: &Repository,
    source: &str,
    plugin: &str,
    includes: &[String],
) -> anyhow::Result<Option<SnapshotInfo>> {
    let mut want = includes.to_vec();
    want.sort();
    let snaps = repo.store.snapshots()?;
    Ok(snaps.into_iter().rev().find(|s| {
        let mut inc = s.includes.clone();
        inc.sort();
        s.source == source && s.plugin == plugin && inc == want
    }))
}

/// Sends the parent's items (see [`send_lines`]) to the runner's standard
/// input. A runner that stops reading has failed and says why itself; a
/// catalog that cannot be read stops the runner, and is the error.
fn feed(
    catalog: &crate::repo::Catalog,
    store: &crate::store::Store,
    snap: &SnapshotInfo,
    mut stdin: std::process::ChildStdin,
    child: &std::sync::Mutex<std::process::Child>,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut gone = None;
    let r = send_lines(catalog, store, snap, &mut |batch| {
        stdin.write_all(&batch).map_err(|e| {
            let e = anyhow::Error::from(e);
            gone = Some(format!("{e}"));
            e
        })
    });
    match (r, gone) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(why)) => {
            tracing::debug!("the runner did not read the previous catalog: {why}");
            Ok(())
        }
        (Err(e), None) => {
            let _ = watchdog::lock(child).kill();
            Err(e)
        }
    }
}

/// The parent (for checking what the runner reports unchanged) and its
/// catalog for the runner, whole: files whose change token still matches
/// are referenced, not read again. Items whose data is known to be lost
/// are left out: the runner then reads them again instead of pointing the
/// new snapshot at lost chunks.
fn parent_items(
    repo: &Repository,
    snap: Option<&SnapshotInfo>,
) -> anyhow::Result<(Option<Parent>, Vec<u8>)> {
    let Some(s) = snap else {
        return Ok((None, Vec::new()));
    };
    let parent = repo.parent(s)?;
    let mut previous = Vec::new();
    send_lines(&repo.catalog, &repo.store, s, &mut |batch| {
        previous.extend(batch);
        Ok(())
    })?;
    Ok((Some(parent), previous))
}

/// The selection as the plugin sees it. Ids with a scheme (`SCHEME://…`)
/// are the plugin's own and pass as they are; anything else is a path,
/// made absolute (not resolving symlinks, so a link is backed up as a link)
/// and checked to exist, for a clear error before the runner starts.
fn selection(include: &[String]) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for inc in include {
        if inc.contains("://") {
            ids.push(inc.clone());
            continue;
        }
        let abs = normalize(&std::path::absolute(inc).with_context(|| format!("include {inc:?}"))?);
        std::fs::symlink_metadata(&abs).with_context(|| format!("include {}", abs.display()))?;
        let id = abs
            .to_str()
            .with_context(|| format!("include {} is not valid UTF-8", abs.display()))?;
        ids.push(id.to_owned());
    }
    Ok(ids)
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
