//! A restore: the selected items of a snapshot go to the agent, which
//! recreates them through the plugin.

use std::io::{BufWriter, Read};
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{bail, Context as _};
use serde::Serialize;

use super::plugin::{checked_plan, RunnerAccess};
use super::{Context, Control, RestoreRequest};
use crate::hypervisor::session::Session;
use crate::repo::{write_restore_stream, Sent};
use crate::store::lock::Lock;
use crate::store::snapshot::{SnapshotInfo, StoredItem};
use crate::target::{self, RestoreTo};

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Restored {
    pub snapshot: String,
    pub items: u64,
    pub to: PathBuf,
    /// Items the snapshot could not restore (a dangling hard link), each
    /// with why; the rest was restored.
    pub warnings: Vec<String>,
    /// The agent's report (items, refused and warnings), as it printed it.
    pub report: serde_json::Value,
}

/// Runs a restore, recorded in the audit log with its destination.
pub(crate) fn run(
    ctx: &Context,
    a: &RestoreRequest,
    ctl: &Control<'_>,
) -> anyhow::Result<Restored> {
    let mut shown = a.clone();
    super::redact(&mut shown.app_password, &mut shown.options);
    super::audited(ctx, "restore", serde_json::to_value(&shown)?, |ctx| {
        run_audited(ctx, a, ctl)
    })
}

fn run_audited(ctx: &Context, a: &RestoreRequest, ctl: &Control<'_>) -> anyhow::Result<Restored> {
    ctx.audit.defer(
        "restore.destination",
        serde_json::json!({
            "snapshot": a.snapshot,
            "items": a.items,
            "to": a.to,
            "as": a.rename_to,
            "overwrite": a.overwrite,
        }),
    )?;
    // To disk while the repository opens.
    ctx.audit.sync_ahead();
    // Inside the server's job span when there is one; the plugin is the
    // snapshot's, recorded once it is read.
    let span = tracing::info_span!(
        "restore",
        snapshot = %a.snapshot,
        to = %a.to,
        plugin = tracing::field::Empty
    );
    let _span = span.enter();
    let to = target::restore_to(&a.to)?;
    let rename = match (&a.rename_to, a.items.as_slice()) {
        (None, _) => None,
        (Some(new), [old]) => Some(format!("{old}={new}")),
        (Some(_), _) => bail!("restoring under another id (`as`) takes exactly one item"),
    };
    let password = super::app_password(&a.app_password, &a.app_password_file)?;
    let limits = guest_runner::policy::JobLimits {
        memory_mib: a.memory_limit_mib,
        deadline_secs: a.deadline_secs,
    };
    let access = RunnerAccess::new(ctx, &a.options, password.as_deref(), limits)?;
    // The runner's command, the same here and in a VM but for the target.
    let runner_args = |plugin: &str, select_args: &[String], target: &str| {
        let mut args: Vec<String> = vec![
            "restore".into(),
            "--plugin".into(),
            plugin.into(),
            "--target".into(),
            target.into(),
        ];
        if a.overwrite {
            args.push("--overwrite".into());
        }
        args.extend(select_args.iter().cloned());
        args.extend(access.args.iter().cloned());
        args
    };
    // A local restore's directory, when it is there already: the runner
    // can start in it before the repository is open.
    let local_dir = match &to {
        RestoreTo::LocalOriginal => Some(PathBuf::from("/")),
        RestoreTo::LocalDir(d) if d.is_dir() => std::path::absolute(d).ok(),
        _ => None,
    };
    // The selection's top items are read from the catalog while the key is
    // derived, and for a local restore the runner starts from them (see
    // `start_early`).
    let (repo, ahead, early) = std::thread::scope(|s| {
        let ahead = s.spawn(|| {
            let found = crate::repo::find_ahead(&ctx.repo, &ctx.cache, &a.snapshot)?;
            let plugin = found.plugin().to_owned();
            let tops = found.tops(&a.items)?;
            let early = local_dir.as_deref().and_then(|dir| {
                let chosen = select_args(tops.tops(), rename.as_deref());
                let args = runner_args(&plugin, &chosen, dir.to_str()?);
                start_early(ctx, &plugin, &limits, args, &access, &span)
            });
            Some((tops, early))
        });
        let repo = ctx.repository(false);
        let (ahead, early) = ahead.join().ok().flatten().unzip();
        (repo, ahead, early.flatten())
    });
    // A runner started early stops if anything below fails.
    let mut early = EarlyGuard(early);
    let repo = repo?;
    let snap = repo.find_snapshot(&a.snapshot)?;
    span.record("plugin", snap.plugin.as_str());
    // Shared: prune waits until the restore has read what it needs.
    let _lock = Lock::acquire(&repo.store, false, "restore")?;
    // What was started from the catalog is kept only for this snapshot.
    if !ahead.as_ref().is_some_and(|h| h.is_for(&repo, &snap)) {
        early.stop();
    }
    let tops = repo.tops_with(&snap, &a.items, ahead)?;
    if early.0.is_none() {
        record_grants(ctx, &snap.plugin, &limits)?;
    }
    let select_args = select_args(&tops, rename.as_deref());
    let runner_args = |target: &str| runner_args(&snap.plugin, &select_args, target);
    let (dir, status_ok, status, sent, report) = match &to {
        RestoreTo::Vm { vm, dir } => {
            let guest_dir = dir.clone().unwrap_or_else(|| "/".into());
            // The plan is checked here, before anything is attached; the
            // runner in the guest checks it again.
            let mut plan_args = vec![
                "--operation".to_owned(),
                "restore".to_owned(),
                "--target".to_owned(),
                guest_dir.clone(),
            ];
            plan_args.extend(select_args.iter().cloned());
            let plan = checked_plan(ctx, &snap.plugin, &access, &plan_args)
                .with_context(|| format!("restore into {vm} refused"))?;
            ctx.audit.defer(
                "plugin.plan",
                serde_json::json!({ "plugin": snap.plugin, "vm": vm.to_string(), "plan": plan }),
            )?;
            let mut session = Session::open(ctx, vm)?;
            if guest_dir != "/" {
                session.make_dir(&guest_dir)?;
            }
            let opts = crate::hypervisor::session::RunOptions {
                fsfreeze: None,
                timeout: a.timeout_secs.map(std::time::Duration::from_secs),
                env: access.env_assignments(),
            };
            let r = session.restore(&runner_args(&guest_dir), &opts, ctl.cancel, |w| {
                // The items are read as they are sent, by a reader of their own.
                let items = repo.catalog.reader()?;
                write_restore_stream(&repo.store, items, &snap, &a.items, w, ctl)
            });
            let closed = session.close();
            let (sent, outcome) = r.with_context(|| format!("restore into {vm} failed"))?;
            closed?;
            (
                PathBuf::from(format!("{vm}:{guest_dir}")),
                outcome.exited.success(),
                format!("exit {}", outcome.exited.code),
                Ok(sent),
                String::from_utf8_lossy(&outcome.exited.stdout).into_owned(),
            )
        }
        RestoreTo::LocalOriginal | RestoreTo::LocalDir(_) => {
            let dir: PathBuf = match &to {
                RestoreTo::LocalDir(d) => {
                    std::fs::create_dir_all(d)
                        .with_context(|| format!("cannot create {}", d.display()))?;
                    std::path::absolute(d)?
                }
                _ => "/".into(),
            };
            let target = dir
                .to_str()
                .with_context(|| format!("{} is not valid UTF-8", dir.display()))?;
            let args = runner_args(target);
            let started = match early.take() {
                Some(e) if e.args == args => e,
                other => {
                    if let Some(e) = other {
                        tracing::debug!(
                            "the runner started early had other arguments; started again"
                        );
                        e.stop();
                        record_grants(ctx, &snap.plugin, &limits)?;
                    }
                    Started::spawn(ctx, args, &access)?
                }
            };
            let (ok, status, sent, report) = local(
                started,
                &repo,
                &snap,
                &a.items,
                a.timeout_secs.map(std::time::Duration::from_secs),
                ctl,
            )?;
            (dir, ok, status, sent, report)
        }
    };
    let report: serde_json::Value =
        serde_json::from_str(&report).unwrap_or(serde_json::Value::Null);
    let problems = problems(&sent, &report);
    if ctl.cancelled() {
        bail!("cancelled");
    }
    if !status_ok || !problems.is_empty() {
        // A runner that stopped says why; the stream it no longer read
        // (a broken pipe) is a consequence, not a second cause.
        let sent_err = match &sent {
            Err(e) if status_ok => format!("{e:#}\n"),
            _ => String::new(),
        };
        bail!("restore failed (runner: {status}):\n{sent_err}{problems}");
    }
    let sent = sent.context("sending the restore stream")?;
    let warnings: Vec<String> = sent
        .skipped
        .iter()
        .map(|(id, why)| format!("not restored: {id}: {why}"))
        .collect();
    for w in &warnings {
        tracing::warn!("{w}");
    }
    Ok(Restored {
        snapshot: snap.id,
        items: sent.items,
        warnings,
        to: dir,
        report,
    })
}

/// The size asked for the pipe to the runner.
const PIPE_SIZE: usize = 1 << 20;

/// The runner's selection arguments: what the plugin plans for are the top
/// items (those below no other selected item, see
/// [`crate::repo::selection::tops`]), with their kinds from the catalog, and
/// the rename if there is one.
fn select_args(tops: &[StoredItem], rename: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    for t in tops {
        args.extend([
            "--select".into(),
            t.record.id.clone(),
            "--select-kind".into(),
            format!("{}={}", t.record.id, t.record.kind.as_str()),
        ]);
    }
    if let Some(r) = rename {
        args.extend(["--rename".into(), r.to_owned()]);
    }
    args
}

/// What went wrong with items: those the stream could not send, and those
/// the runner's report refused or warned about.
fn problems(sent: &anyhow::Result<Sent>, report: &serde_json::Value) -> Problems {
    let mut p = Problems::default();
    if let Ok(sent) = sent {
        for (id, why) in &sent.failed {
            p.push(|| format!("not restored: {id}: {why}"));
        }
    }
    for kind in ["refused", "warnings"] {
        for n in report[kind].as_array().into_iter().flatten() {
            p.push(|| {
                format!(
                    "{}: {}: {}",
                    kind.trim_end_matches('s'),
                    n["id"].as_str().unwrap_or("?"),
                    n["message"].as_str().unwrap_or("?")
                )
            });
        }
        // Those the runner counted past its report's bounds (added with
        // saturation: in a VM, the report comes from the guest).
        p.total = p
            .total
            .saturating_add(report[format!("{kind}_unlisted")].as_u64().unwrap_or(0));
    }
    p
}

/// Problems a failed restore's error names: the first
/// [`Problems::LISTED`], and how many there were in all (a restore onto a
/// full disk fails for every item, and its error once held a line for each
/// of a million: 41 MB).
#[derive(Default)]
struct Problems {
    listed: Vec<String>,
    total: u64,
}

impl Problems {
    const LISTED: usize = 20;

    fn push(&mut self, line: impl FnOnce() -> String) {
        if self.listed.len() < Self::LISTED {
            self.listed.push(line());
        }
        self.total = self.total.saturating_add(1);
    }

    fn is_empty(&self) -> bool {
        self.total == 0
    }
}

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.listed.join("\n"))?;
        let more = self.total.saturating_sub(self.listed.len() as u64);
        if more > 0 {
            write!(f, "\n... and {more} more ({} in all)", self.total)?;
        }
        Ok(())
    }
}

/// A restore on this machine: the container's runner runs here with
/// `args` (its command) and `access`. Past `timeout`, or when the job is
/// cancelled, the runner is killed, even when it stalls, and the job fails.
fn local(
    started: Started,
    repo: &crate::repo::Repository,
    snap: &SnapshotInfo,
    wanted: &[String],
    timeout: Option<std::time::Duration>,
    ctl: &Control<'_>,
) -> anyhow::Result<(bool, String, anyhow::Result<Sent>, String)> {
    let Started {
        child,
        stdin,
        report,
        tail,
        ..
    } = started;
    let child = std::sync::Mutex::new(child);
    let (sent, status, stopped) = std::thread::scope(|s| {
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let dog = s.spawn(|| super::watchdog::watch(&child, timeout, ctl.cancel, wait));
        let sent = repo.catalog.reader().and_then(|items| {
            write_restore_stream(
                &repo.store,
                items,
                snap,
                wanted,
                BufWriter::with_capacity(1 << 20, stdin),
                ctl,
            )
        });
        if sent.is_err() {
            let _ = super::watchdog::lock(&child).kill();
        }
        let status = super::watchdog::wait(&child);
        drop(done);
        (sent, status, dog.join().unwrap_or(None))
    });
    let status = status?;
    let tail = tail.finish();
    if let Some(why) = stopped {
        anyhow::bail!("restore failed: {why}");
    }
    let report = report
        .join()
        .map_err(|_| anyhow::anyhow!("report reader panicked"))??;
    // A failed runner's own words say why.
    let described = if status.success() {
        status.to_string()
    } else {
        format!("{status}: {}", super::plugin::runner_error(tail.as_bytes()))
    };
    Ok((status.success(), described, sent, report))
}

/// A local runner, started and waiting for its restore stream.
struct Started {
    /// Its command line (after the runner's own path).
    args: Vec<String>,
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    /// Reads its report (stdout) to the end.
    report: std::thread::JoinHandle<std::io::Result<String>>,
    tail: crate::agent::StderrTail,
}

impl Started {
    /// Starts the container's runner here with `args` and `access`.
    fn spawn(ctx: &Context, args: Vec<String>, access: &RunnerAccess) -> anyhow::Result<Self> {
        let runner = ctx.runner()?;
        let mut cmd = runner.command();
        cmd.args(&args)
            .args(["--input", "-"])
            .envs(access.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().context("cannot start the runner")?;
        let mut stdout = child.stdout.take().context("runner has no stdout")?;
        let tail = crate::agent::StderrTail::capture(&mut child);
        let report = std::thread::spawn(move || {
            let mut s = String::new();
            stdout.read_to_string(&mut s).map(|_| s)
        });
        let stdin = child.stdin.take().context("runner has no stdin")?;
        // A pipe of 1 MiB (Linux's default limit for a user) instead of 64
        // KiB: the runner then reads in large pieces, and one of our writes
        // holds several chunks, so that decoding here overlaps with its work
        // there. A smaller pipe only costs speed.
        if let Err(e) = rustix::pipe::fcntl_setpipe_size(&stdin, PIPE_SIZE) {
            tracing::debug!("the runner's input pipe keeps its size: {e}");
        }
        Ok(Self {
            args,
            child,
            stdin,
            report,
            tail,
        })
    }

    /// Stops a runner that was given nothing: it has read no stream, so
    /// it has restored nothing.
    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        drop(self.stdin);
        let _ = self.report.join();
        let _ = self.tail.finish();
    }
}

/// A runner started early, stopped when dropped unless taken.
struct EarlyGuard(Option<Started>);

impl EarlyGuard {
    fn take(&mut self) -> Option<Started> {
        self.0.take()
    }

    fn stop(&mut self) {
        if let Some(e) = self.0.take() {
            e.stop();
            tracing::debug!("stopped the runner started early; nothing was sent to it");
        }
    }
}

impl Drop for EarlyGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The grants of `plugin` in the audit log, on disk: before any runner
/// starts.
fn record_grants(
    ctx: &Context,
    plugin: &str,
    limits: &guest_runner::policy::JobLimits,
) -> anyhow::Result<()> {
    ctx.audit
        .defer("plugin.grants", super::grants(ctx, plugin, limits))?;
    ctx.audit.sync()?;
    Ok(())
}

/// A local restore's runner, started while the repository opens (deriving
/// its key takes a tenth of a second), from the item list and plugin the
/// catalog names for the snapshot: the runner loads its plugin meanwhile.
/// It reads nothing until the stream comes, and the stream is sent only
/// once the repository, open, resolves the same snapshot with the same
/// plugin and the same arguments; otherwise this runner is stopped, having
/// done nothing, and another starts. The grants are in the audit log, on
/// disk, before it starts, as for any runner. `None` when anything fails:
/// the usual path then runs and reports it.
fn start_early(
    ctx: &Context,
    plugin: &str,
    limits: &guest_runner::policy::JobLimits,
    args: Vec<String>,
    access: &RunnerAccess,
    span: &tracing::Span,
) -> Option<Started> {
    let _in = span.enter();
    record_grants(ctx, plugin, limits).ok()?;
    match Started::spawn(ctx, args, access) {
        Ok(s) => {
            tracing::debug!("runner started early, while the repository opens");
            Some(s)
        }
        Err(e) => {
            tracing::debug!("the runner did not start early: {e:#}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(warnings: usize, unlisted: u64) -> serde_json::Value {
        let w: Vec<_> = (0..warnings)
            .map(|i| serde_json::json!({ "id": format!("/f{i}"), "message": "No space left on device" }))
            .collect();
        serde_json::json!({ "refused": [], "warnings": w, "warnings_unlisted": unlisted })
    }

    #[test]
    fn a_failed_restore_names_the_first_problems_and_counts_all() {
        let sent: anyhow::Result<Sent> = Ok(Sent {
            items: 10,
            failed: vec![("/damaged".into(), "chunk missing".into())],
            skipped: Vec::new(),
        });
        let p = problems(&sent, &report(10_000, 312_592));
        assert_eq!(p.total, 1 + 10_000 + 312_592);
        let text = p.to_string();
        assert_eq!(text.lines().count(), Problems::LISTED + 1, "{text}");
        assert!(text.starts_with("not restored: /damaged: chunk missing\nwarning: /f0: "));
        assert!(
            text.ends_with("... and 322573 more (322593 in all)"),
            "{}",
            text.lines().last().unwrap_or_default()
        );
    }

    #[test]
    fn counts_from_a_guest_cannot_overflow() {
        let sent: anyhow::Result<Sent> = Err(anyhow::anyhow!("broken pipe"));
        let r = serde_json::json!({
            "refused_unlisted": u64::MAX, "warnings": [{ "id": "/a", "message": "m" }],
            "warnings_unlisted": u64::MAX,
        });
        let p = problems(&sent, &r);
        assert_eq!(p.total, u64::MAX);
        assert!(p.to_string().ends_with(&format!("({} in all)", u64::MAX)));
    }

    #[test]
    fn a_few_problems_are_all_named() {
        let sent: anyhow::Result<Sent> = Err(anyhow::anyhow!("broken pipe"));
        let p = problems(&sent, &report(2, 0));
        assert_eq!(p.total, 2);
        assert_eq!(
            p.to_string(),
            "warning: /f0: No space left on device\nwarning: /f1: No space left on device"
        );
        assert!(problems(&sent, &report(0, 0)).is_empty());
    }
}
